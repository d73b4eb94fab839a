"""``build_report``: capture -> sections -> one HTML page; ``Report.save`` writes it atomically;
``read_report`` reads the data of a page back."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn

from . import pipeline
from ._environment import BuildEnvironment
from .capture import distributed
from .capture.options import MODES, CaptureOptions
from .capture.run import BeforeArg, capture, capture_sharded, check_model, resolve_before
from .capture.stored import shown
from .errors import NNVizError
from .output import output_path, write_output

# What build_report(example_input=...) takes: a tensor (model(x)), a tuple or list of
# positional inputs (model(*x)), or a mapping of keyword inputs (model(**x)). Tensors may
# sit in nested lists, tuples, named tuples and dicts.
ExampleInput: TypeAlias = torch.Tensor | Sequence[Any] | Mapping[str, Any]
# What build_report(before=...) takes: one state (a Snapshot, a state_dict, a checkpoint
# file or folder) or a list of them, oldest first.
Before: TypeAlias = BeforeArg | Sequence[BeforeArg]


@dataclass(frozen=True)
class Report:
    """A finished report.

    ``data``: what the page embeds as JSON (``read_report`` reads it back from a saved page).
    ``html``: the page. ``warnings``: what a command line or a training log should print
    besides the page: problems of this machine (no Graphviz, a layout that ran out of its
    time) and of the input (a checkpoint that fits the model only partly); findings about
    the model itself are in ``data["findings"]`` and at the top of the page.
    ``timings``: seconds per step of the build.
    """

    data: dict[str, Any]
    html: str
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page to ``path``. A regular file is written atomically (a temporary file
        beside it, then a rename): an earlier file at ``path`` stays intact if anything
        fails or an interrupt arrives. A symbolic link is followed (the file it names is
        replaced, the link stays). A device, a FIFO or /dev/stdout is written into, in
        place. Any failure is an :class:`NNVizError`."""
        target = output_path(path)
        write_output(target, self.html.encode("utf-8"))
        return target

    def log_to(self, target: Any) -> str:
        """Log the page and ``report.json`` (``data``) to an experiment tracker: an MLflow
        run or run id, a W&B run, a ``SummaryWriter``, a dvclive ``Live`` or a Lightning
        logger (see :mod:`nnviz_report.trackers`). Returns where they went."""
        from .trackers import log_to

        return log_to(self, target)

    def __repr__(self) -> str:
        # Not the dataclass's, which prints the whole page: megabytes in a console, and in a
        # notebook a second copy of the page as the cell's text/plain output.
        from .notebook import caption_text

        return f"<Report: {caption_text(self)}; {len(self.html) / 1e6:.1f} MB of HTML>"

    def _repr_html_(self) -> str:
        """The page in a notebook: a caption and the page in a sandboxed iframe."""
        from .notebook import frame_html

        return frame_html(self)

    def show(self, path: str | os.PathLike[str] | None = None, *, height: int | str | None = None) -> Path | None:
        """Display the report in a notebook; with ``path``, save it there too and link it."""
        from .notebook import show

        return show(self, path, height=height)


def build_report(
    model: nn.Module,
    example_input: ExampleInput,
    *,
    before: Before = None,
    title: str | None = None,
    layers: str | Sequence[str] | None = None,
    layer_types: str | Sequence[str] | None = None,
    max_channels: int = 16,
    example_index: int = 0,
    mode: str = "eval",
    graph: bool = True,
    dot_timeout: float = 5.0,
    trust_metadata: bool = False,
    dist_timeout: float = 300.0,
) -> Report | None:
    """Run ``model`` once on ``example_input`` and build the report.

    ``example_input``: a tensor (``model(x)``), a tuple/list (``model(*x)``) or a dict
    (``model(**x)``). ``before``: a :class:`Snapshot`, a state_dict, a checkpoint path (file
    or folder), or a list of them (oldest first) for trajectories; ``trust_metadata=True``
    lets a torch.distributed.checkpoint folder's pickled ``.metadata`` be read. ``layers``
    (glob patterns on qualified module names) and ``layer_types`` (class names) select the
    feature maps; ``max_channels`` and ``example_index`` choose what conv pictures show.
    ``mode``: ``"eval"`` (default), ``"train"`` or ``"as-is"`` for the forward pass. The
    model is left exactly as it was; what the build changes meanwhile in the process (the
    garbage collector, autograd's mode, torch's kernel threads) is listed in
    :class:`nnviz_report._environment.BuildEnvironment` and put back.

    In a ``torch.distributed`` job, call it on every rank: rank 0 gets the Report, the
    others None. A sharded model (FSDP) runs its forward pass on every rank; a rank that
    fails makes the others raise, and ranks wait for each other at most ``dist_timeout``
    seconds.
    """
    with BuildEnvironment() as env:
        options = _options(title, layers, layer_types, max_channels, example_index, mode, graph, dot_timeout)
        started = time.perf_counter()
        model = check_model(model)
        job = distributed.job_for(model, dist_timeout)
        if job is not None and not job.sharded:
            if job.rank != 0:
                return None  # every rank holds the whole model: rank 0 builds from its own, alone
            job = None
        if job is None:
            snapshots = resolve_before(before, trust_metadata)
        else:  # sharded: every rank runs the forward pass and gathers the full state; rank 0 builds
            sharded = job
            snapshots = sharded.step(
                "reading before=", lambda: resolve_before(before, trust_metadata) if sharded.rank == 0 else []
            )
        load_seconds = time.perf_counter() - started
        weights = None
        if job is None:
            run = capture(model, example_input, options)
        else:
            captured = capture_sharded(job, model, example_input, options)
            if captured is None:
                return None
            run, weights = captured
        built = pipeline.build_sections(env, model, run, snapshots, weights)
        t = time.perf_counter()
        page = pipeline.page(run, built.sections, title)
        timings = {"load": load_seconds, **built.timings, "render": time.perf_counter() - t}
        timings["total"] = time.perf_counter() - started
        if job is not None:
            distributed.settle()
        return Report(data=page.data, html=page.html, warnings=pipeline.console_warnings(page.notices), timings=timings)


def _options(
    title: str | None,
    layers: str | Sequence[str] | None,
    layer_types: str | Sequence[str] | None,
    max_channels: int,
    example_index: int,
    mode: str,
    graph: bool,
    dot_timeout: float,
) -> CaptureOptions:
    """The capture options of build_report's arguments, checked (and its title)."""
    if not isinstance(max_channels, int) or max_channels < 1:
        raise NNVizError(f"max_channels must be a positive integer, not {max_channels!r}")
    if not isinstance(example_index, int) or example_index < 0:
        raise NNVizError(f"example_index must be a non-negative integer, not {example_index!r}")
    if mode not in MODES:
        raise NNVizError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not dot_timeout > 0:
        raise NNVizError(f"dot_timeout must be a positive number of seconds, not {dot_timeout!r}")
    if title is not None and not isinstance(title, str):
        raise NNVizError(f"title must be a string, not {type(title).__name__}")
    return CaptureOptions(
        layers=_patterns(layers, "layers"),
        layer_types=_patterns(layer_types, "layer_types"),
        max_channels=max_channels,
        example=example_index,
        mode=mode,
        graph=graph,
        dot_timeout=float(dot_timeout),
    )


def _patterns(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    items = tuple(value)
    if not all(isinstance(v, str) for v in items):
        raise NNVizError(f"{what} must be a string or a list of strings")
    return items


_DATA = re.compile(r'<script type="application/json" id="nnviz-data">(.*?)</script>', re.S)


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The data a saved report page embeds: the ``Report.data`` of the build that wrote it
    (JSON: tuples are lists, non-finite numbers None). Any problem reading it (no such
    file, not a report page) is an :class:`NNVizError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NNVizError(f"report not found: {shown(p)}; check the path") from None
    except UnicodeDecodeError:
        raise NNVizError(f"{shown(p)} is not an nnviz-report page (not UTF-8 text)") from None
    except OSError as exc:
        raise NNVizError(f"cannot read {shown(p)}: {exc.strerror or exc}") from None
    m = _DATA.search(text)
    if m is None:
        raise NNVizError(f"{shown(p)} is not an nnviz-report page (it has no nnviz-data block)")
    try:
        data = json.loads(m.group(1))
    except ValueError as exc:
        raise NNVizError(f"{shown(p)}: its nnviz-data block is not valid JSON ({exc}); the page is damaged") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise NNVizError(f"{shown(p)}: its nnviz-data block is not a report's data; the page is damaged")
    return data
