# make demo: set up (Graphviz + .venv) and write report.html from the built-in demo.
# make test: set up (Graphviz, Chromium + .venv) and run the whole test suite.
.PHONY: demo test setup bench bench-cuda bench-memory clean

demo:
	scripts/setup.sh
	.venv/bin/nnviz-report demo -o report.html

test:
	scripts/setup.sh --browser
	.venv/bin/python -m pytest

bench:
	.venv/bin/python benchmarks/bench_build.py
	.venv/bin/python benchmarks/bench_open.py

bench-cuda:
	.venv/bin/python benchmarks/bench_cuda.py

bench-memory:
	.venv/bin/python benchmarks/bench_memory.py

clean:
	rm -rf .venv build dist .pytest_cache report.html examples/*.html benchmarks/out
