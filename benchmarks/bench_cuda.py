"""A report of a model on a CUDA GPU: build time and GPU memory, each against a baseline
measured in the same run. Needs a CUDA GPU (and Graphviz for the graph).

    python benchmarks/bench_cuda.py            # ResNet-50 at 224x224, batch 1 and 32
    python benchmarks/bench_cuda.py --quick    # fewer repeats

Baselines:
- "unavoidable": one forward pass with autograd, torchviz.make_dot and dot -Tsvg, as in
  bench_build.py; also the plain forward pass with autograd alone.
- GPU memory: the peak growth of one training step's forward and backward pass (the memory
  a user already pays), from torch.cuda's allocator statistics.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_build import summary, timed_rounds, unavoidable  # noqa: E402


def synced(fn):
    import torch

    def run():
        fn()
        torch.cuda.synchronize()

    return run


def peak_growth(fn) -> int:
    """Bytes the CUDA allocator held at its peak while ``fn`` ran, beyond what it held before."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 11

    import torch

    import nnviz_report
    from models import ResNet50

    if not torch.cuda.is_available():
        sys.exit("bench_cuda.py: this torch sees no CUDA GPU")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    torch.manual_seed(0)
    model = ResNet50().cuda().eval()
    snap = nnviz_report.snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)

    for batch in (1, 32):
        measure(model, snap, torch.randn(batch, 3, 224, 224, device="cuda"), repeats)


def measure(model, snap, x, repeats: int) -> None:
    """The timings and GPU memory of one batch size."""
    import nnviz_report

    batch = x.shape[0]

    def forward_with_grad():
        model(x.clone().requires_grad_(True))

    fns = {
        "base": synced(lambda: unavoidable(model, x)),
        "forward": synced(forward_with_grad),
        "plain": synced(lambda: nnviz_report.build_report(model, x)),
        "no-graph": synced(lambda: nnviz_report.build_report(model, x, graph=False)),
        "before": synced(lambda: nnviz_report.build_report(model, x, before=snap)),
    }
    for fn in fns.values():  # warm-up: cuDNN algorithms, lazy initialisation
        fn()
    times = timed_rounds(fns, repeats)
    report = nnviz_report.build_report(model, x, before=snap)
    print(f"\nResNet-50 on the GPU, batch {batch}, 224x224 (min / median of {repeats} interleaved rounds)")
    print(
        f"  unavoidable work (forward with grad + make_dot + dot -Tsvg): "
        f"{min(times['base']):5.3f} / {statistics.median(times['base']):5.3f} s"
    )
    print(f"  forward with grad alone:                                    {summary(times['forward'], times['base'])}")
    print(f"  nnviz build_report, no before-state:                        {summary(times['plain'], times['base'])}")
    print(f"  nnviz build_report, no graph:                               {summary(times['no-graph'], times['base'])}")
    print(f"  nnviz build_report, with before-state:                      {summary(times['before'], times['base'])}")
    print("  stages of the last build (s): " + ", ".join(f"{k} {v:.3f}" for k, v in report.timings.items()))
    del report

    def train_step():
        model(x).sum().backward()
        for p in model.parameters():
            p.grad = None

    fb = peak_growth(train_step)
    rep = peak_growth(lambda: nnviz_report.build_report(model, x, before=snap))
    print(
        f"  GPU memory, peak growth: forward+backward {fb / 2**20:7.1f} MiB, report {rep / 2**20:7.1f} MiB "
        f"({rep / fb:.2f}x)"
    )
    assert {p.device.type for p in model.parameters()} == {"cuda"}


if __name__ == "__main__":
    main()
