"""The autograd graph on a zoo of architectures: build time against the forward pass, layout
time per view, nodes, skip counts against the true counts, and whether every view was drawn.

    python benchmarks/bench_graph.py                  # the zoo (examples/zoo.py), plus
                                                      # transformers' models if installed
    python benchmarks/bench_graph.py --only DenseNet  # one model (substring of its name)
    python benchmarks/bench_graph.py --huge           # also 10^5- and 10^6-node graphs
    python benchmarks/bench_graph.py --screenshots out/   # PNG of each report's first graph view

Baselines, measured in the same run: one forward pass with autograd on (what any graph
needs), and torchviz's make_dot + ``dot -Tsvg`` with the same 5 s budget (``--torchviz``).
transformers' models are built from their configs with random weights (no download):
``pip install transformers`` (benchmarks/requirements.txt).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable
    example: Callable
    residual: int
    concat: int
    branches: int = 0


def zoo_cases() -> list[Case]:
    from zoo import ZOO

    return [Case(z.name, z.build, z.example, z.residual, z.concat, z.branches) for z in ZOO]


def transformers_cases() -> list[Case]:
    """Real architectures from transformers, random weights from their configs."""
    try:
        import torch
        import transformers as tf
    except ImportError:
        return []
    ids = lambda *shape: lambda: {"input_ids": torch.randint(0, 1000, shape)}  # noqa: E731
    image = lambda: {"pixel_values": torch.randn(1, 3, 224, 224)}  # noqa: E731
    return [
        Case("BERT-base (transformers)", lambda: tf.BertModel(tf.BertConfig()), ids(1, 32), 24, 0),
        Case("GPT-2, 4 blocks (transformers)", lambda: tf.GPT2Model(tf.GPT2Config(n_layer=4)), ids(1, 32), 8, 0),
        Case(
            "Llama, 2 layers (transformers)",
            lambda: tf.LlamaModel(
                tf.LlamaConfig(
                    hidden_size=256,
                    intermediate_size=512,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    num_key_value_heads=2,
                    vocab_size=1000,
                )
            ),
            ids(1, 32),
            4,
            0,
        ),
        Case(
            "T5-small (transformers)",
            lambda: tf.T5Model(tf.T5Config()),
            lambda: {
                "input_ids": torch.randint(0, 1000, (1, 32)),
                "decoder_input_ids": torch.randint(0, 1000, (1, 16)),
            },
            30,
            0,
        ),
        Case("ViT-B/16 (transformers)", lambda: tf.ViTModel(tf.ViTConfig()), image, 24, 0),
        Case("Swin-T (transformers)", lambda: tf.SwinModel(tf.SwinConfig()), image, 24, 0),
        Case("ConvNeXt-T (transformers)", lambda: tf.ConvNextModel(tf.ConvNextConfig()), image, 18, 0),
        Case(
            "ResNet-50 (transformers)",
            lambda: tf.ResNetModel(
                tf.ResNetConfig(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048])
            ),
            image,
            16,
            0,
        ),
    ]


def huge_cases() -> list[Case]:
    import torch

    from zoo import ChainedAdds

    return [
        Case(f"{n:,} chained additions", lambda n=n: ChainedAdds(n), lambda: torch.randn(2, 4), 0, 0)
        for n in (100_000, 1_000_000)
    ]


def forward_with_grad(model, x) -> float:
    import torch

    def call():
        if isinstance(x, dict):
            return model(**x)
        return model(*x) if isinstance(x, (tuple, list)) else model(x)

    with torch.enable_grad():
        t = time.perf_counter()
        out = call()
        seconds = time.perf_counter() - t
    del out
    return seconds


def torchviz_baseline(model, x, budget: float) -> str:
    """make_dot + dot -Tsvg within the same budget: the previous way (recursive; no limits)."""
    from torchviz import make_dot

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(x, dict):
                out = model(**x)
            elif isinstance(x, (tuple, list)):
                out = model(*[t.clone().requires_grad_(t.is_floating_point()) for t in x])
            else:
                out = model(x.clone().requires_grad_(x.is_floating_point()))
            from nnviz_report.capture.nested import iter_tensors

            tensor = next(t for _, t in iter_tensors(out) if t.requires_grad)
            t = time.perf_counter()
            source = make_dot(tensor, params=dict(model.named_parameters())).source
    except RecursionError:
        return "make_dot: RecursionError"
    try:
        subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True, timeout=budget, check=True)
    except subprocess.TimeoutExpired:
        return f"dot over {budget:g} s"
    return f"{time.perf_counter() - t:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run the models whose name contains this")
    parser.add_argument("--huge", action="store_true", help="also graphs of 10^5 and 10^6 nodes")
    parser.add_argument("--torchviz", action="store_true", help="also make_dot + dot, with the same budget")
    parser.add_argument("--screenshots", metavar="DIR", help="save the first graph view of each report as PNG")
    parser.add_argument("--per-view", action="store_true", help="print every view's layout time and size")
    args = parser.parse_args()

    import torch

    import nnviz_report
    from nnviz_report import dot

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, Graphviz {dot.dot_version()}")
    cases = zoo_cases() + transformers_cases() + (huge_cases() if args.huge else [])
    if args.only:
        cases = [c for c in cases if args.only.lower() in c.name.lower()]
    out_dir = Path(tempfile.mkdtemp(prefix="nnviz-graph-bench-"))
    rows = []
    header = (
        f"{'model':34s} {'nodes':>9s} {'views':>11s} {'dot max/sum s':>14s} {'full view':>10s} "
        f"{'fwd s':>6s} {'build s':>8s} {'x fwd':>6s}  skips (found/true)"
    )
    print(header)
    for case in cases:
        torch.manual_seed(0)
        model = case.build().eval()
        x = case.example()
        fwd = min(forward_with_grad(model, x) for _ in range(2))
        gc.collect()
        t = time.perf_counter()
        report = nnviz_report.build_report(model, x)
        build = time.perf_counter() - t
        g = report.data["graph"]
        views = g["views"]
        modules = [v for v in views if v["id"] != "full"]
        drawn = sum(v["rendered"] for v in modules)
        full = next((v for v in views if v["id"] == "full"), None)
        full_text = "-" if full is None else ("drawn" if full["rendered"] else "not drawn")
        times = report.timings
        dot_times = [s for k, s in _view_times(report).items()]
        found = (g["residual_connections"], g["concat_skips"], g["branch_merges"])
        truth = (case.residual, case.concat, case.branches)
        ok = "ok " if found == truth else "BAD"
        print(
            f"{case.name:34s} {g['nodes']:9,d} {drawn:>5d}/{len(modules):<5d} "
            f"{max(dot_times, default=0):6.2f}/{sum(dot_times):<7.2f} {full_text:>10s} {fwd:6.2f} {build:8.2f} "
            f"{build / max(fwd, 1e-3):6.1f}  {ok} {found[0]}+{found[1]}c+{found[2]}b / "
            f"{truth[0]}+{truth[1]}c+{truth[2]}b",
            flush=True,
        )
        if args.per_view:
            sizes = {v["id"]: (v["nodes"], v["edges"]) for v in views}
            for key, seconds in sorted(_view_times(report).items(), key=lambda kv: -kv[1]):
                vid = key.removeprefix("layout ")
                print(f"{'':34s} {vid:24s} {sizes[vid][0]:5d} nodes {sizes[vid][1]:5d} edges {seconds:6.3f} s")
        if args.torchviz:
            print(f"{'':34s} torchviz make_dot + dot: {torchviz_baseline(model, x, report_budget(report))}")
        path = report.save(out_dir / f"{len(rows):02d}.html")
        rows.append((case, report, path, build, times))
        del report, model
        gc.collect()
    bad = [
        c.name
        for c, r, *_ in rows
        if (r.data["graph"]["residual_connections"], r.data["graph"]["concat_skips"], r.data["graph"]["branch_merges"])
        != (c.residual, c.concat, c.branches)
    ]
    undrawn = [
        c.name for c, r, *_ in rows if not all(v["rendered"] for v in r.data["graph"]["views"] if v["id"] != "full")
    ]
    print(
        f"\n{len(rows)} models; skip counts exact on {len(rows) - len(bad)}"
        + (f" (not: {', '.join(bad)})" if bad else "")
        + f"; every module view drawn on {len(rows) - len(undrawn)}"
        + (f" (not: {', '.join(undrawn)})" if undrawn else "")
    )
    worst = max(max(_view_times(r).values(), default=0) for _, r, *_ in rows)
    print(
        f"slowest single layout: {worst:.2f} s (budget {report_budget(rows[0][1]):g} s); median build "
        f"{statistics.median(b for *_, b, _ in rows):.2f} s; reports in {out_dir}"
    )
    if args.screenshots:
        shoot(rows, Path(args.screenshots))


def report_budget(report) -> float:
    return 5.0  # build_report's default dot_timeout


def _view_times(report) -> dict[str, float]:
    """Seconds per layout: a batch of module views shares its dot process, split evenly."""
    return {k: v for k, v in report.timings.items() if k.startswith("layout ")}


def shoot(rows, folder: Path) -> None:
    """The first graph view of every report, as a reader sees it (1400x900 window)."""
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        for i, (case, _, path, *_) in enumerate(rows):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(path.as_uri())
            page.wait_for_function("window.nnviz !== undefined")
            page.evaluate("document.getElementById('graph').scrollIntoView()")
            try:
                page.wait_for_selector("#graph .graph-canvas svg", timeout=20000)
            except Exception:  # noqa: BLE001 - a page whose graph is not drawn is skipped
                page.close()
                continue
            page.wait_for_timeout(300)
            name = "".join(ch if ch.isalnum() else "-" for ch in case.name).strip("-").lower()
            page.locator("#graph .graph-box").screenshot(path=str(folder / f"{i:02d}-{name}.png"))
            page.close()
        browser.close()
    print(f"screenshots in {folder}")


if __name__ == "__main__":
    main()
