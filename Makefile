# make demo: set up (Graphviz + .venv) and write report.html from the built-in demo.
# make test: set up (Graphviz, Chromium + .venv), check lint, format and types, and run the whole test suite.
.PHONY: demo test lint setup bench bench-graph bench-cuda bench-memory clean

PYTHON_SOURCES = nnviz_report tests benchmarks examples scripts

demo:
	scripts/setup.sh
	.venv/bin/nnviz-report demo -o report.html

test:
	scripts/setup.sh --browser
	$(MAKE) lint
	.venv/bin/python -m pytest

# ruff (lint and format) on every Python file, mypy on the package (settings in pyproject.toml).
lint:
	.venv/bin/ruff check $(PYTHON_SOURCES)
	.venv/bin/ruff format --check $(PYTHON_SOURCES)
	.venv/bin/mypy

bench:
	.venv/bin/python benchmarks/bench_build.py
	.venv/bin/python benchmarks/bench_open.py

# the graph on the zoo (examples/zoo.py and, when installed, transformers' models), with the
# 10^5- and 10^6-node chains and torchviz's make_dot + dot as the baseline: about a minute.
bench-graph:
	.venv/bin/python benchmarks/bench_graph.py --huge --torchviz

bench-cuda:
	.venv/bin/python benchmarks/bench_cuda.py

bench-memory:
	.venv/bin/python benchmarks/bench_memory.py

clean:
	rm -rf .venv build dist .pytest_cache .mypy_cache .ruff_cache report.html examples/*.html benchmarks/out
