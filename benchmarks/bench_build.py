"""Build time, memory and size of reports, each against a baseline measured in the same run.

    python benchmarks/bench_build.py            # ResNet-50 at 224x224, the demo, ResNet-152's graph
    python benchmarks/bench_build.py --quick    # fewer repeats

Baselines:
- "unavoidable": the work any report with a graph must do: one forward pass with autograd,
  torchviz.make_dot, and dot -Tsvg on its output.
- "forward+backward": peak RSS of a process that runs one training step's forward and
  backward pass (the memory a user already pays).
- TensorBoard writing the same content (graph, histograms of every parameter and layer
  output, a 16-channel grid per conv map), when the tensorboard package is installed
  (pip install -r benchmarks/requirements.txt).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))


def timed_rounds(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Wall times of each function, ``repeats`` rounds, the functions interleaved within a
    round: a shared VM's speed drifts by tens of percent over a minute, and interleaving
    makes every ratio compare runs taken moments apart. A ``gc.collect()`` runs before each
    run, outside its time."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            gc.collect()
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    return times


def summary(times: list[float], base: list[float]) -> str:
    """min / median seconds, and the ratios to ``base``: of the minimums (noise only ever
    adds time), and the median of the per-round ratios."""
    ratios = [t / b for t, b in zip(times, base)]
    return (
        f"{min(times):5.2f} / {statistics.median(times):5.2f} s   ratio {min(times) / min(base):.2f}x "
        f"(of the minimums) / {statistics.median(ratios):.2f}x (median per round)"
    )


def unavoidable(model, x) -> None:
    """One forward pass with autograd, make_dot, dot -Tsvg: nothing else. (Freeing the
    graph make_dot leaves in a reference cycle takes a gc.collect(), ~0.08 s more; it is
    not counted here, and timed_rounds() collects between runs, outside the timing.)"""
    from torchviz import make_dot

    out = model(x.clone().requires_grad_(True))
    dot = make_dot(out, params=dict(model.named_parameters()))
    subprocess.run(["dot", "-Tsvg"], input=dot.source.encode(), capture_output=True, check=True)


def trained_resnet50():
    import torch

    import nnviz_report
    from models import ResNet50

    torch.manual_seed(0)
    model = ResNet50()
    snap = nnviz_report.snapshot(model)
    with torch.no_grad():  # stand-in for training: every parameter moves a little
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model, snap


def tensorboard_same_content(model, x, out_dir: str) -> float:
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from torchvision_free_grid import make_grid

    started = time.perf_counter()
    writer = SummaryWriter(out_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer.add_graph(model, x)
    for name, p in model.named_parameters():
        writer.add_histogram(f"param/{name}", p.detach(), 0)
    outputs = []
    hooks = [
        m.register_forward_hook(lambda m, i, o, n=n: outputs.append((n, o.detach())))
        for n, m in model.named_modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for i, (name, o) in enumerate(outputs):
        writer.add_histogram(f"act/{i}_{name}", o, 0)
        if o.dim() == 4:
            writer.add_image(f"map/{i}_{name}", make_grid(o[0, :16]), 0)
    writer.close()
    return time.perf_counter() - started


def folder_size(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


PEAK_SCRIPT = r"""
import resource, sys, json, torch
sys.path.insert(0, {examples!r}); sys.path.insert(0, {root!r})
from models import ResNet50
torch.manual_seed(0)
model = ResNet50()
x = torch.randn(1, 3, 224, 224)
what = {what!r}
if what == "report":
    import nnviz_report  # imported before the baseline: its import is not the report's work
import gc; gc.collect()
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
setup_peak = status("VmHWM")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
base = status("VmRSS")
if what == "forward+backward":
    model(x).sum().backward()
elif what == "forward":
    with torch.no_grad():
        model.eval()(x)
else:
    import nnviz_report
    nnviz_report.build_report(model, x).save({out!r})
print(json.dumps({{"self": status("VmHWM"), "base": base,
                  "setup_peak": setup_peak,
                  "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}))
"""


def peak_rss(what: str, out: str) -> dict:
    code = PEAK_SCRIPT.format(examples=str(ROOT / "examples"), root=str(ROOT), what=what, out=out)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 1 if args.quick else 9

    import torch

    import nnviz_report
    from nnviz_report.demo import train_demo

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}")
    tmp = Path(tempfile.mkdtemp(prefix="nnviz-bench-"))

    # --- ResNet-50 build time against the unavoidable work ---------------------------------
    model, snap = trained_resnet50()
    x = torch.randn(1, 3, 224, 224)
    model.eval()
    unavoidable(model, x)  # warm up
    nnviz_report.build_report(model, x)
    reports = []
    times = timed_rounds(
        {
            "base": lambda: unavoidable(model, x),
            "plain": lambda: nnviz_report.build_report(model, x),
            "before": lambda: reports.append(nnviz_report.build_report(model, x, before=snap)),
        },
        repeats,
    )
    report = reports[-1]
    path = report.save(tmp / "resnet50.html")
    size = path.stat().st_size
    base, base_med = min(times["base"]), statistics.median(times["base"])
    print(f"\nResNet-50, 224x224 (min / median of {repeats} interleaved rounds)")
    print(f"  unavoidable work (forward with grad + make_dot + dot -Tsvg): {base:5.2f} / {base_med:5.2f} s")
    print(
        f"  nnviz build_report, no before-state:                         {summary(times['plain'], times['base'])}"
        " (goal <= 2)"
    )
    print(f"  nnviz build_report, with before-state (compares 25.6M values): {summary(times['before'], times['base'])}")
    build_med = statistics.median(times["before"])
    stages = ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items() if k != "total")
    print(f"  stages of the last build (s): {stages}")
    print(f"  file size: {size / 1e6:.2f} MB (goal <= 4 MB)")
    reports.clear()
    del report
    gc.collect()

    # --- TensorBoard writing the same content ----------------------------------------------
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        print("  TensorBoard: not installed (pip install -r benchmarks/requirements.txt); skipped")
    else:
        sys.modules.setdefault("torchvision_free_grid", _grid_module())
        tb_dir = str(tmp / "tb")
        tb = tensorboard_same_content(model, x, tb_dir)
        print(
            f"  TensorBoard, same content:                                   {tb:5.2f} s (one run)"
            f"   {tb / build_med:.1f}x nnviz's median; {folder_size(tb_dir) / 1e6:.1f} MB of event files"
        )

    # --- peak memory -----------------------------------------------------------------------
    out = str(tmp / "peak.html")
    fb = peak_rss("forward+backward", out)
    fw = peak_rss("forward", out)
    rep = peak_rss("report", out)
    print("\nPeak RSS, fresh process each (ResNet-50, 224x224, no before-state), measured from the moment")
    print(
        "torch, the model and the input exist (peak reset through /proc/self/clear_refs; setup itself "
        f"peaked at {max(r['setup_peak'] for r in (fw, fb, rep)) / 1024:.0f} MB)"
    )
    for label, r in (("forward only (no grad)", fw), ("forward + backward", fb), ("nnviz build_report", rep)):
        print(f"  {label:24s} peak {r['self'] / 1024:6.0f} MB, growth {(r['self'] - r['base']) / 1024:6.0f} MB")

    def growth(r: dict) -> int:
        return max(r["self"] - r["base"], 1)

    print(
        f"  ratio of growth, report / forward+backward: {growth(rep) / growth(fb):.2f}x (goal <= 1.3); "
        f"peak ratio {rep['self'] / fb['self']:.2f}x; the dot child process peaked at {rep['children'] / 1024:.0f} MB"
    )

    # --- demo size, ResNet-152 graph ------------------------------------------------------
    model_d, example, before, _ = train_demo(steps=60)
    demo = nnviz_report.build_report(model_d, example, before=before).save(tmp / "demo.html")
    print(f"\nDemo report: {demo.stat().st_size / 1e6:.2f} MB (goal <= 2.5 MB)")

    from models import ResNet152
    from nnviz_report.capture.options import CaptureOptions
    from nnviz_report.capture.run import capture
    from nnviz_report.sections import graph as graph_section

    for name, m in (("ResNet-50", model), ("ResNet-152", ResNet152())):
        m.eval()
        t = time.perf_counter()
        run = capture(m, x, CaptureOptions())
        t_capture = time.perf_counter() - t
        t = time.perf_counter()
        section = graph_section.build(run)
        t_layout = time.perf_counter() - t
        views = section.data["views"]
        modules = [v for v in views if v["id"] != "full"]
        full = next((v for v in views if v["id"] == "full"), None)
        timings = section.context["timings"]
        module_dot = sum(s for k, s in timings.items() if k != "full")
        print(
            f"{name} graph: capture (forward + hooks + graph walk) {t_capture:.2f} s, graph section "
            f"{t_layout:.2f} s; {len(modules)} module views ({sum(v['nodes'] for v in modules)} nodes, "
            f"dot {module_dot:.2f} s)"
            + (f", full view {full['nodes']} nodes (dot {timings['full']:.2f} s)" if full else "")
            + f"; {section.data['residual_connections']} residual connections"
        )
    print(f"\nreports written to {tmp}")


def _grid_module():
    """A 4x4 channel grid for TensorBoard's add_image (torchvision's make_grid, by hand)."""
    import types

    import torch

    def make_grid(maps: torch.Tensor) -> torch.Tensor:
        maps = (maps - maps.min()) / (maps.max() - maps.min() + 1e-12)
        k, h, w = maps.shape
        cols = 4
        rows = -(-k // cols)
        grid = torch.zeros(1, rows * h, cols * w)
        for i in range(k):
            r, c = divmod(i, cols)
            grid[0, r * h : (r + 1) * h, c * w : (c + 1) * w] = maps[i]
        return grid

    mod = types.ModuleType("torchvision_free_grid")
    mod.make_grid = make_grid
    return mod


if __name__ == "__main__":
    main()
