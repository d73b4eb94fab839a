"""Two checkouts' build times compared on ResNet-50 (224x224), each against the unavoidable work.

    python benchmarks/ab_build.py A_DIR B_DIR [--processes 4] [--rounds 3]

A_DIR and B_DIR are source checkouts (their ``nnviz_report`` and ``examples`` are used).
Processes alternate A, B, A, B, ...: each builds the model, warms up, then times
``--rounds`` interleaved rounds of the unavoidable work (forward with autograd,
torchviz.make_dot, dot -Tsvg), ``build_report(model, x)`` and ``build_report(model, x,
before=snap)``. Per checkout it prints the ratio of the minimums (noise only adds time) and
the median of the per-round ratios to the unavoidable work measured in the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import gc, json, subprocess, sys, time
import torch
sys.path.insert(0, {examples!r})
import nnviz_report
from models import ResNet50
from torchviz import make_dot

assert nnviz_report.__file__.startswith({root!r}), nnviz_report.__file__

def unavoidable(model, x):
    out = model(x.clone().requires_grad_(True))
    dot = make_dot(out, params=dict(model.named_parameters()))
    subprocess.run(["dot", "-Tsvg"], input=dot.source.encode(), capture_output=True, check=True)

torch.manual_seed(0)
model = ResNet50()
snap = nnviz_report.snapshot(model)
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.01)
model.eval()
x = torch.randn(1, 3, 224, 224)
unavoidable(model, x)
nnviz_report.build_report(model, x, before=snap)
fns = {{"base": lambda: unavoidable(model, x), "plain": lambda: nnviz_report.build_report(model, x),
       "before": lambda: nnviz_report.build_report(model, x, before=snap)}}
times = {{k: [] for k in fns}}
for _ in range({rounds}):
    for key, fn in fns.items():
        gc.collect()
        t = time.perf_counter()
        fn()
        times[key].append(time.perf_counter() - t)
print(json.dumps(times))
"""


def run(root: str, rounds: int) -> dict[str, list[float]]:
    root = os.path.abspath(root)
    code = CHILD.format(examples=os.path.join(root, "examples"), root=root, rounds=rounds)
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--processes", type=int, default=4, help="processes per checkout")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per process")
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {args.a: {}, args.b: {}}
    for i in range(args.processes):
        for root in (args.a, args.b) if i % 2 == 0 else (args.b, args.a):
            for key, values in run(root, args.rounds).items():
                times[root].setdefault(key, []).extend(values)
            print(f"process {i + 1}/{args.processes} of {root} done", file=sys.stderr)
    print(f"ResNet-50 224x224, {args.processes} processes x {args.rounds} rounds per checkout, alternating")
    for root, t in times.items():
        print(f"{root}:")
        print(f"  unavoidable work      min {min(t['base']):.3f} s, median {statistics.median(t['base']):.3f} s")
        for key in ("plain", "before"):
            ratios = [a / b for a, b in zip(t[key], t["base"])]
            print(
                f"  build_report {key:7s}  min {min(t[key]):.3f} s, median {statistics.median(t[key]):.3f} s; "
                f"ratio of minimums {min(t[key]) / min(t['base']):.3f}x, median ratio {statistics.median(ratios):.3f}x"
            )


if __name__ == "__main__":
    main()
