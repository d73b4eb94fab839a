"""Shared by the example scripts: a few SGD steps on synthetic data, then the report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout

import nnviz_report


def run_example(
    name: str,
    model: nn.Module,
    batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    steps: int = 30,
    lr: float = 0.05,
) -> Path:
    """Snapshot ``model``, train it ``steps`` SGD steps on ``batch()``, write its report."""
    parser = argparse.ArgumentParser(description=f"Train the {name} example briefly and write its report.")
    parser.add_argument("-o", "--output", default=str(Path(__file__).parent / f"{name}.html"))
    parser.add_argument("--steps", type=int, default=steps)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    before = nnviz_report.snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(args.steps):
        x, y = batch(gen)
        value = loss(model(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
    model.eval()
    example, _ = batch(gen)
    started = time.perf_counter()
    report = nnviz_report.build_report(model, example, before=before, title=f"{name} after {args.steps} steps")
    path = report.save(args.output)
    print(
        f"{name}: final loss {value.item():.3f}; wrote {path} ({path.stat().st_size / 1e6:.1f} MB) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return path
