"""Command line: ``nnviz-report demo`` and ``nnviz-report build MODULE:CALLABLE ...``."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from ._text import one_line
from .cli_inputs import load_input, load_model, parse_device, random_inputs
from .errors import NNVizError
from .output import check_output_path, output_path

DTYPES = {
    "float32": "float32",
    "float": "float32",
    "float64": "float64",
    "double": "float64",
    "float16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64",
    "long": "int64",
    "int32": "int32",
    "int": "int32",
    "bool": "bool",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nnviz-report",
        description="Turn a PyTorch model into one self-contained HTML report.",
    )
    p.add_argument("--version", action="version", version=f"nnviz-report {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{demo,build}")

    demo = sub.add_parser("demo", help="train a small built-in model briefly and write its report")
    demo.add_argument("-o", "--output", default="report.html", help="output file (default: report.html)")
    demo.add_argument("--steps", type=int, default=60, help="training steps (default: 60)")

    b = sub.add_parser("build", help="write the report of your model")
    b.add_argument(
        "spec",
        metavar="MODULE:CALLABLE",
        help="importable module (the current folder is on the path) or .py file, and the class "
        "or factory in it that returns the nn.Module, e.g. examples/models.py:ResNet18",
    )
    b.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="SHAPE",
        help="shape of a random example input, e.g. 1,3,64,64; repeat for models with several inputs",
    )
    b.add_argument(
        "--input-dtype", default="float32", choices=sorted(DTYPES), help="dtype of the random inputs (default: float32)"
    )
    b.add_argument("--input-high", type=int, default=10, help="integer inputs are drawn from [0, HIGH) (default: 10)")
    b.add_argument(
        "--input",
        dest="input_file",
        metavar="FILE",
        help="example input saved with torch.save: a tensor, a tuple/list or a dict of tensors",
    )
    b.add_argument(
        "--before",
        nargs="+",
        default=[],
        metavar="CKPT",
        help="checkpoint(s) from before/during training, oldest first: .pt/.pth/.bin/.ckpt/.safetensors "
        "files, Hugging Face folders or *.index.json, torch.distributed.checkpoint folders",
    )
    b.add_argument("--after", metavar="CKPT", help="trained weights to load into the model")
    b.add_argument(
        "--trust-checkpoint-metadata",
        action="store_true",
        help="read torch.distributed.checkpoint folders, whose .metadata file is a plain pickle "
        "(it can run code): only for folders you trust",
    )
    b.add_argument(
        "--model-kwargs",
        default="{}",
        metavar="JSON",
        help="keyword arguments for CALLABLE, as JSON, e.g. '{\"num_classes\": 10}'",
    )
    b.add_argument("--title", help="report title")
    b.add_argument("-o", "--output", default="report.html", help="output file (default: report.html)")
    b.add_argument(
        "--layers",
        nargs="+",
        metavar="PATTERN",
        help="feature maps only for modules whose name matches a glob, e.g. 'layer1.*'",
    )
    b.add_argument("--layer-types", nargs="+", metavar="TYPE", help="feature maps only for these classes, e.g. Conv2d")
    b.add_argument("--max-channels", type=int, default=16, help="channels drawn per conv map (default: 16)")
    b.add_argument("--example", type=int, default=0, help="which example of the batch is drawn (default: 0)")
    b.add_argument(
        "--device",
        default="cpu",
        help="device the model runs on, e.g. cuda or cuda:1 (default: cpu); checkpoints load "
        "on the CPU and are moved there",
    )
    b.add_argument(
        "--mode", default="eval", choices=["eval", "train", "as-is"], help="mode of the forward pass (default: eval)"
    )
    b.add_argument("--seed", type=int, default=0, help="seed of the random example input (default: 0)")
    b.add_argument("--no-graph", action="store_true", help="skip the autograd graph")
    b.add_argument(
        "--dot-timeout",
        type=float,
        default=5.0,
        help="seconds Graphviz may take per layout; a view that takes longer is not drawn (default: 5)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return int(exc.code or 0)
    try:
        if args.command == "demo":
            return _demo(args)
        return _build(args)
    except NNVizError as exc:
        print(f"nnviz-report: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnviz-report: interrupted; the output file was not touched", file=sys.stderr)
        return 130


def _status_stream(output: Path) -> Any:
    """Where the progress lines go: stdout, unless the page itself goes there
    (``-o /dev/stdout``, or the file stdout is redirected to)."""
    if str(output) in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"):
        return sys.stderr
    try:
        same = os.path.samestat(os.stat(output), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        same = False
    return sys.stderr if same else sys.stdout


def _finish(report: Any, output: Path, started: float) -> int:
    path = report.save(output)
    for w in report.warnings:
        print(f"nnviz-report: warning: {one_line(w)}", file=sys.stderr)
    size = len(report.html.encode("utf-8")) / 1e6
    print(f"wrote {path} ({size:.1f} MB) in {time.perf_counter() - started:.1f} s", file=_status_stream(output))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import train_demo
    from .report import build_report

    started = time.perf_counter()
    output = output_path(args.output)
    check_output_path(output)
    if args.steps < 0:
        raise NNVizError("--steps must be 0 or more")
    model, example, before, accuracy = train_demo(steps=args.steps)
    print(f"trained DemoNet for {args.steps} steps (last batch accuracy {accuracy:.0%})", file=_status_stream(output))
    report = build_report(
        model, example, before=before, title=f"nnviz-report demo: DemoNet after {args.steps} training steps"
    )
    return _finish(report, output, started)


def _build(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    output = output_path(args.output)
    from .report import build_report

    check_output_path(output)
    try:
        kwargs = json.loads(args.model_kwargs)
    except json.JSONDecodeError as exc:
        raise NNVizError(f"--model-kwargs is not valid JSON ({exc}); example: '{{\"num_classes\": 10}}'") from exc
    if not isinstance(kwargs, dict):
        raise NNVizError("--model-kwargs must be a JSON object, e.g. '{\"num_classes\": 10}'")
    if args.input_file and args.input_shape:
        raise NNVizError("give either --input FILE or --input-shape, not both")
    if not args.input_file and not args.input_shape:
        raise NNVizError("the model needs an example input: pass --input-shape (e.g. 1,3,224,224) or --input FILE")
    device = parse_device(args.device)
    example = (
        load_input(Path(args.input_file))
        if args.input_file
        else random_inputs(args.input_shape, DTYPES[args.input_dtype], args.input_high, args.seed)
    )

    from .capture.snapshot import load_checkpoint, load_into

    trust = args.trust_checkpoint_metadata
    befores = [load_checkpoint(p, trust_metadata=trust) for p in args.before]
    _warn_order(args.before)
    after = load_checkpoint(args.after, label="after", trust_metadata=trust) if args.after else None
    model = load_model(args.spec, kwargs)
    if after is not None:
        load_into(model, after)
    model.to(device)
    report = build_report(
        model,
        example,
        before=befores or None,
        title=args.title,
        layers=args.layers,
        layer_types=args.layer_types,
        max_channels=args.max_channels,
        example_index=args.example,
        mode=args.mode,
        graph=not args.no_graph,
        dot_timeout=args.dot_timeout,
    )
    return _finish(report, output, started)


def _warn_order(paths: list[str]) -> None:
    def natural(p: str) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", Path(p).name)]

    if len(paths) > 1 and sorted(paths, key=natural) != list(paths):
        print(
            "nnviz-report: warning: --before checkpoints are used in the order given ("
            + ", ".join(Path(p).name for p in paths)
            + "), which is not their numeric order; list them oldest first",
            file=sys.stderr,
        )
