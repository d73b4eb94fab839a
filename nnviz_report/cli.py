"""Command line: ``nnviz-report demo`` and ``nnviz-report build MODULE:CALLABLE ...``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .errors import NNVizError
from .output import check_output_path

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
        print(f"nnviz-report: error: {exc}", file=sys.stderr)
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
        print(f"nnviz-report: warning: {w}", file=sys.stderr)
    size = len(report.html.encode("utf-8")) / 1e6
    print(f"wrote {path} ({size:.1f} MB) in {time.perf_counter() - started:.1f} s", file=_status_stream(output))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import train_demo
    from .report import build_report

    started = time.perf_counter()
    output = Path(args.output)
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
    output = Path(args.output)
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
    example = _load_input(Path(args.input_file)) if args.input_file else _random_inputs(args)

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


def parse_device(text: str) -> Any:
    """``--device``: a device this torch can allocate on, checked before anything is loaded."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise NNVizError(f"--device {text!r} is not a device; write it like cpu, cuda or cuda:1") from None
    if device.type == "meta":
        raise NNVizError("--device meta holds no values to draw; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NNVizError(
            f"--device {text}: this torch build ({torch.__version__}) sees no CUDA GPU; drop --device to run on the CPU"
        )
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        reason = str(exc).splitlines()[0].split(". ")[0][:120]
        raise NNVizError(f"--device {text} cannot be used here ({reason}); drop --device to run on the CPU") from None
    return device


def parse_shape(text: str) -> tuple[int, ...]:
    parts = [p for p in re.split(r"[,x× ]+", text.strip().strip("()[]")) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(s < 0 for s in shape):
        raise NNVizError(f"--input-shape {text!r} is not a shape; write it like 1,3,224,224")
    return shape


def _random_inputs(args: argparse.Namespace) -> Any:
    import torch

    dtype = getattr(torch, DTYPES[args.input_dtype])
    gen = torch.Generator().manual_seed(args.seed)
    tensors = []
    for text in args.input_shape:
        shape = parse_shape(text)
        if dtype.is_floating_point:
            tensors.append(torch.randn(shape, generator=gen).to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, shape, generator=gen).bool())
        else:
            if args.input_high < 1:
                raise NNVizError("--input-high must be at least 1")
            tensors.append(torch.randint(0, args.input_high, shape, generator=gen, dtype=dtype))
    return tensors[0] if len(tensors) == 1 else tuple(tensors)


def _load_input(path: Path) -> Any:
    import pickle

    import torch

    if not path.is_file():
        raise NNVizError(f"--input file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise NNVizError(
            f"refused to load {path}: it needs code to unpickle; save plain tensors with torch.save"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise NNVizError(f"{path} is not a torch.save file or is corrupt ({str(exc).splitlines()[0][:160]})") from exc
    if isinstance(obj, (torch.Tensor, tuple, list, dict)):
        return obj
    raise NNVizError(f"{path} holds a {type(obj).__name__}; expected a tensor, a tuple/list or a dict of tensors")


def load_model(spec: str, kwargs: dict[str, Any]) -> Any:
    """Import ``MODULE:CALLABLE`` and call it; the result must be an ``nn.Module``."""
    from torch import nn

    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise NNVizError(
            f"{spec!r} is not MODULE:CALLABLE; write it like examples/models.py:ResNet18 or mypkg.models:Net"
        )
    module = _import(module_part)
    if not hasattr(module, attr):
        classes = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, nn.Module) and getattr(v, "__module__", None) == module.__name__
        )
        hint = f" (it defines {', '.join(classes)})" if classes else ""
        raise NNVizError(f"{module_part} has no attribute {attr!r}{hint}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise NNVizError(f"{spec} is a {type(factory).__name__}, not a class or function")
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise NNVizError(
            f"calling {spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
            "pass its arguments with --model-kwargs"
        ) from exc
    if not isinstance(model, nn.Module):
        raise NNVizError(f"{spec} returned {type(model).__name__!r}, not a torch.nn.Module")
    return model


def _import(module_part: str) -> Any:
    is_file = module_part.endswith(".py") or os.sep in module_part or "/" in module_part
    try:
        if is_file:
            path = Path(module_part)
            if not path.is_file():
                raise NNVizError(f"model file not found: {module_part}")
            name = "nnviz_user_" + re.sub(r"\W", "_", path.stem)
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise NNVizError(f"cannot import {module_part}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.resolve().parent))
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_part)
    except NNVizError:
        raise
    except ModuleNotFoundError as exc:
        raise NNVizError(
            f"cannot import {module_part}: {exc}; run from the folder that contains it, "
            "or give the path to the .py file"
        ) from exc
    except Exception as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise NNVizError(
            f"importing {module_part} failed: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}{where}"
        ) from exc
