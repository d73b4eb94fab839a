"""``build_report``: capture -> sections -> one HTML page; ``Report.save`` writes it atomically."""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import os
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, _compat, dot
from .capture import distributed
from .capture.forward import MODES, CaptureOptions
from .capture.parameters import compare
from .capture.run import (
    capture,
    check_model,
    count_histograms,
    finish_activations,
    finish_images,
    resolve_before,
)
from .errors import NNVizError
from .output import write_output
from .render import PLOTLY_VERSION, pack_view, render_page, render_section
from .sections import activations, feature_maps, parameters
from .sections import graph as graph_section

SCHEMA_VERSION = 1
# The page's sections, in order. A new section: one module with build(run), one template.
SECTIONS = (activations, feature_maps, parameters, graph_section)


@dataclass(frozen=True)
class Report:
    """A finished report: ``data`` (what the page embeds as JSON), ``html`` (the page)."""

    data: dict[str, Any]
    html: str
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path``. A regular file is written atomically (a temporary file
        beside it, then a rename): an earlier file at ``path`` stays intact if anything
        fails or an interrupt arrives. A symbolic link is followed (the file it names is
        replaced, the link stays). A device, a FIFO or /dev/stdout is written into, in
        place. Any failure is an :class:`NNVizError`."""
        target = Path(path)
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

    def show(self, path: str | os.PathLike | None = None, *, height: int | str | None = None) -> Path | None:
        """Display the report in a notebook; with ``path``, save it there too and link it."""
        from .notebook import show

        return show(self, path, height=height)


def device_name(device: str) -> str | None:
    """The GPU's name for a CUDA device (``NVIDIA H100 80GB HBM3``), else None."""
    d = torch.device(device)
    if d.type != "cuda":
        return None
    try:
        return torch.cuda.get_device_name(d)
    except (RuntimeError, AssertionError):
        return None


def _patterns(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    items = tuple(value)
    if not all(isinstance(v, str) for v in items):
        raise NNVizError(f"{what} must be a string or a list of strings")
    return items


def _collector_paused(fn: Any) -> Any:
    """Python's cyclic garbage collector is paused while ``fn`` runs and resumed after, if
    it was on. A build allocates ~10^5 short-lived objects (hook records, JSON, SVG text)
    and no garbage cycles to speak of: the collector would run ~50 times per ResNet-50
    build, stop every thread each time and free ~200 objects in all (10-25 ms of a 0.4 s
    build on a CPU; on a GPU, where the forward pass is the Python overhead, more). What
    the build leaves for it is collected at its next run."""

    @functools.wraps(fn)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused


def _one_kernel_thread() -> tuple[int, int] | None:
    """This thread's torch CPU kernels run on one thread from now on; returns the settings
    before (None: unchanged). ``torch.set_num_threads`` would do it for the whole process:
    threads started meanwhile would keep 1 for their whole life, and it clears oneDNN's
    primitive cache under other threads' convolutions. OpenMP's setting belongs to the
    calling thread, and so does MKL's local one (BLAS calls such as torch.dot follow it,
    not OpenMP's, once torch.set_num_threads has been called in the thread)."""
    settings = _compat.thread_controls()
    if settings is None:
        return None
    get, set_, mkl = settings
    torch.get_num_threads()  # torch sets up this thread's OpenMP count once, on first use
    before = get()
    set_(1)
    return before, (mkl(1) if mkl is not None else 0)


def _kernel_threads(before: tuple[int, int] | None) -> None:
    """Undo :func:`_one_kernel_thread` in this thread."""
    if before is not None:
        _get, set_, mkl = _compat.thread_controls()
        set_(before[0])
        if mkl is not None:
            mkl(before[1])  # 0: the process-wide setting again


def _autograd_on(fn: Any) -> Any:
    """``fn`` runs with autograd on and inference mode off, whatever the caller's context
    (``torch.no_grad()``, ``torch.inference_mode()``): the example input's copy must be
    an autograd leaf for the graph to start at it. Both modes belong to the calling thread."""

    @functools.wraps(fn)
    def on(*args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode(False), torch.enable_grad():
            return fn(*args, **kwargs)

    return on


@_collector_paused
@_autograd_on
def build_report(
    model: nn.Module,
    example_input: Any,
    *,
    before: Any = None,
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
    model is left exactly as it was.

    In a ``torch.distributed`` job, call it on every rank: rank 0 gets the Report, the
    others None. A sharded model (FSDP) runs its forward pass on every rank; a rank that
    fails makes the others raise, and ranks wait for each other at most ``dist_timeout``
    seconds.
    """
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
    options = CaptureOptions(
        layers=_patterns(layers, "layers"),
        layer_types=_patterns(layer_types, "layer_types"),
        max_channels=max_channels,
        example=example_index,
        mode=mode,
        graph=graph,
        dot_timeout=float(dot_timeout),
    )
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
        snapshots = job.step("reading before=", lambda: resolve_before(before, trust_metadata) if job.rank == 0 else [])
    load_seconds = time.perf_counter() - started
    built: dict[str, Any] = {}
    bodies: dict[str, Any] = {}
    views: dict[str, Any] = {}

    def build_section(module: Any, run: Any) -> None:
        t = time.perf_counter()
        built[module.ID] = module.build(run)
        run.timings[f"section {module.ID}"] = time.perf_counter() - t

    def render_body(module: Any) -> None:
        t = time.perf_counter()
        bodies[module.ID] = render_section(built[module.ID])
        views[module.ID] = pack_view(built[module.ID])
        run.timings[f"render {module.ID}"] = time.perf_counter() - t

    def graph_lane() -> None:
        try:
            build_section(graph_section, run)
        except Exception as exc:
            built[graph_section.ID] = graph_section.failed(exc)
        render_body(graph_section)  # its view holds most of the page's bytes (the SVG)

    def timed_compare() -> tuple[Any, float]:
        t = time.perf_counter()
        return compare(model, snapshots, weights), time.perf_counter() - t

    def pictures_and_maps() -> None:
        finish_images(run)
        build_section(feature_maps, run)
        render_body(feature_maps)

    weights = None
    if job is None:
        run = capture(model, example_input, snapshots, options)
    else:
        run, weights = distributed.capture_sharded(
            job, model, lambda opts: capture(model, example_input, snapshots, opts), options
        )
        if run is None:
            return None
    run.timings["load"] = load_seconds
    # After the forward pass, three lanes that read only what they need: the graph section
    # (mostly waiting for Graphviz's own processes); the histograms, then the feature maps'
    # pictures, section and HTML (foreach ops, numpy and PIL, which let go of the GIL); this
    # thread: the activations, comparing the parameters, rendering the other sections.
    # Torch runs one thread per kernel meanwhile, in these threads only: two-thread kernels
    # on busy cores spin-wait for each other. (Measured and dropped: the comparison in a
    # lane of its own, its many small kernels then queue for the GIL; the comparison beside
    # the forward pass, which slows the convolutions down; the comparison before it, no
    # faster.)
    threads = _one_kernel_thread()
    try:
        with ThreadPoolExecutor(max_workers=2, initializer=_one_kernel_thread) as pool:
            try:
                graph_done = pool.submit(graph_lane)
                counted = pool.submit(count_histograms, run)  # then the maps, in the same lane
                maps_done = pool.submit(pictures_and_maps)
                finish_activations(run)
                run.parameters, run.timings["parameters"] = timed_compare()
                counted.result()
                # Graphviz is usually still at work: render what is built meanwhile.
                for module in SECTIONS:
                    if module not in (graph_section, feature_maps):
                        build_section(module, run)
                        render_body(module)
                maps_done.result()
                graph_done.result()
            except BaseException:
                dot.stop_all()  # an interrupt must not wait for Graphviz's layouts
                raise
    finally:
        _kernel_threads(threads)
    sections = [built[module.ID] for module in SECTIONS]
    timings = dict(run.timings)
    timings.update({f"layout {k}": v for k, v in built[graph_section.ID].view.get("timings", {}).items()})

    info = run.model
    title = title if title is not None else f"{info.class_name} report"
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    shapes = [i["shape"] for i in info.inputs]
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "model": {
            "class_name": info.class_name,
            "num_parameters": info.num_parameters,
            "trainable_parameters": info.trainable_parameters,
            "input_shape": shapes[0] if len(shapes) == 1 else shapes,
            "inputs": info.inputs,
            "device": info.device,
            "device_name": device_name(info.device),
            "dtype": info.dtype,
            "mode": info.mode,
        },
        "environment": {
            "nnviz_report": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "created": created.isoformat(),
        },
    }
    for s in sections:
        data[s.id] = s.data
    notices = [n for s in sections for n in s.notices]
    notices.sort(key=lambda n: n.level != "warning")
    data["findings"] = [{"level": n.level, "section": n.section, "text": n.text} for n in notices]
    t = time.perf_counter()
    html = render_page(
        title=title,
        data=data,
        sections=sections,
        notices=notices,
        meta={
            "version": __version__,
            "torch": torch.__version__,
            "created": created.isoformat(),
            "created_text": created.strftime("%Y-%m-%d %H:%M UTC"),
            "plotly_version": PLOTLY_VERSION,
        },
        bodies=bodies,
        views=views,
    )
    timings["render"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    # Warnings for the command line: the graph section's are about this machine (no dot, a
    # layout that timed out), and some are about the input (a checkpoint that fits only
    # partly); the others are findings, which the page shows.
    warnings = tuple(
        n.text for n in notices if n.level == "warning" and (n.section == graph_section.ID or n.about_input)
    )
    if job is not None:
        distributed.settle()
    return Report(data=data, html=html, warnings=warnings, timings=timings)
