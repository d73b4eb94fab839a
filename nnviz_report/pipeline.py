"""From a captured run to the page: the sections, built in lanes that each return their result.

After the forward pass (``capture.run.capture``), two lane threads and this thread share
the work; every arrow is a value handed on, never a field filled in:

    lane 1        run ──▶ graph section (mostly waiting for Graphviz's processes)
    lane 2        run ──▶ CountedHistograms; then counts, run ──▶ pictures ──▶ feature-map section
    this thread   run ──▶ activation measures; model + snapshots ──▶ parameter comparison;
                  + counts ──▶ activations and parameters sections

The histograms and the maps are two tasks, queued in that order for the pool's second
thread; the maps task and this thread wait for the histograms task's future where they
need the counts. Run in another order, the maps would wait for the counts (the graph lane
never waits for anything, so a thread is always free for them), never read them half done.
Two lane threads, not three: each thread's allocations take memory of their own, and a
third raised the build's peak (docs/performance.md). Each section is rendered (its HTML and packed
browser payload) in the lane that built it. Numpy, PIL, zlib and most torch kernels let go
of the GIL, so the lanes overlap.
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch
from markupsafe import Markup
from torch import nn

from . import __version__, dot
from ._environment import BuildEnvironment
from .capture import layers
from .capture import run as capture_run
from .capture.activations.summary import summarise_activations
from .capture.histograms import CountedHistograms
from .capture.matching import Weights
from .capture.parameters import compare
from .capture.run import CapturedRun
from .capture.snapshot import Snapshot
from .render import PLOTLY_VERSION, pack_payload, render_page, render_section
from .sections import Notice, Section, SectionModule, activations, feature_maps, parameters
from .sections import graph as graph_section

SCHEMA_VERSION = 1
# The page's sections, in order. A new section: one module with ID, TITLE, TEMPLATE and
# build(...), one template, an entry here and a place in build_sections.
SECTIONS: tuple[SectionModule, ...] = (activations, feature_maps, parameters, graph_section)


@dataclass(frozen=True)
class RenderedSection:
    """A section with its HTML and its packed browser payload."""

    section: Section
    body: Markup
    payload: Markup | None
    timings: dict[str, float]  # "section <id>" (building it) and "render <id>"


def rendered(section: Section, built_in: float | None = None) -> RenderedSection:
    t = time.perf_counter()
    body, payload = render_section(section), pack_payload(section)
    timings = {f"section {section.id}": built_in} if built_in is not None else {}
    timings[f"render {section.id}"] = time.perf_counter() - t
    return RenderedSection(section, body, payload, timings)


def _built(build: Callable[[], Section]) -> RenderedSection:
    t = time.perf_counter()
    section = build()
    return rendered(section, time.perf_counter() - t)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t


# -- the lanes ----------------------------------------------------------------------------------


def graph_lane(run: CapturedRun) -> RenderedSection:
    """The graph section; if building it fails, a section that says why (the graph section
    can fail, the report cannot)."""
    try:
        return _built(lambda: graph_section.build(run))
    except Exception as exc:  # noqa: BLE001 - any failure of the graph section: the report goes on
        return rendered(graph_section.failed(exc))


def histograms_lane(run: CapturedRun) -> tuple[CountedHistograms, float]:
    return _timed(capture_run.count_histograms, run)


def maps_lane(run: CapturedRun, counting: Future[tuple[CountedHistograms, float]]) -> tuple[RenderedSection, float]:
    """The feature-map section; returns it and the seconds the pictures took."""
    counted, _ = counting.result()
    pictures, seconds = _timed(layers.draw_layer_pictures, run.forward.layers)
    finished = layers.finish_layers(run.forward.layers, pictures, counted)
    return _built(lambda: feature_maps.build(run, finished)), seconds


@dataclass(frozen=True)
class Built:
    """Every section, rendered, in page order, and the seconds each step took."""

    sections: list[RenderedSection]
    timings: dict[str, float]


def build_sections(
    env: BuildEnvironment,
    model: nn.Module,
    run: CapturedRun,
    snapshots: Sequence[Snapshot],
    weights: Weights | None,
) -> Built:
    """Every section of the page, built in lanes (see the module's docstring)."""
    with env.lanes(2) as pool:
        try:
            graph_done = pool.submit(graph_lane, run)
            counting = pool.submit(histograms_lane, run)
            maps_done = pool.submit(maps_lane, run, counting)
            measured, curves_seconds = _timed(capture_run.measure_activations, run)
            comparison, comparison_seconds = _timed(compare, model, list(snapshots), weights)
            counted, histogram_seconds = counting.result()
            # Graphviz is usually still at work: build and render what can be meanwhile.
            t = time.perf_counter()
            summary = summarise_activations(measured, counted)
            curves_seconds += time.perf_counter() - t
            acts = _built(lambda: activations.build(run.model, summary))
            params = _built(lambda: parameters.build(run.model, comparison))
            maps, picture_seconds = maps_done.result()
            graph = graph_done.result()
        except BaseException:
            dot.stop_all()  # an interrupt must not wait for Graphviz's layouts
            raise
    timings = {
        **run.timings,
        "activation curves": curves_seconds,
        "parameters": comparison_seconds,
        "histograms": histogram_seconds,
        "pictures": picture_seconds,
    }
    sections = [acts, maps, params, graph]
    if [s.section.id for s in sections] != [m.ID for m in SECTIONS]:
        raise RuntimeError("build_sections builds the sections of SECTIONS, in its order")
    for s in sections:
        timings.update(s.timings)
    layouts = graph.section.context.get("timings", {})
    timings.update({f"layout {k}": v for k, v in layouts.items()})
    return Built(sections, timings)


# -- the page -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    data: dict[str, Any]  # what Report.data holds
    html: str
    notices: list[Notice]  # every section's, warnings first


def page(run: CapturedRun, sections: Sequence[RenderedSection], title: str | None) -> Page:
    """``Report.data`` and the HTML page of the rendered sections."""
    info = run.model
    title = title if title is not None else f"{info.class_name} report"
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    data = _data(run, title, created)
    for s in sections:
        data[s.section.id] = s.section.data
    notices = [n for s in sections for n in s.section.notices]
    notices.sort(key=lambda n: n.level != "warning")
    data["findings"] = [{"level": n.level, "section": n.section, "text": n.text} for n in notices]
    html = render_page(
        title=title,
        data=data,
        sections=[s.section for s in sections],
        notices=notices,
        meta={
            "version": __version__,
            "torch": torch.__version__,
            "created": created.isoformat(),
            "created_text": created.strftime("%Y-%m-%d %H:%M UTC"),
            "plotly_version": PLOTLY_VERSION,
        },
        bodies={s.section.id: s.body for s in sections},
        payloads={s.section.id: s.payload for s in sections},
    )
    return Page(data, html, notices)


def _data(run: CapturedRun, title: str, created: _dt.datetime) -> dict[str, Any]:
    info = run.model
    shapes = [i["shape"] for i in info.inputs]
    return {
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


def device_name(device: str) -> str | None:
    """The GPU's name for a CUDA device (``NVIDIA H100 80GB HBM3``), else None."""
    d = torch.device(device)
    if d.type != "cuda":
        return None
    try:
        return torch.cuda.get_device_name(d)
    except (RuntimeError, AssertionError):
        return None


def console_warnings(notices: Sequence[Notice]) -> tuple[str, ...]:
    """What a command line or a training log prints besides the page: the graph section's
    warnings, which are about this machine (no Graphviz, a layout that timed out), and the
    warnings about the input (a checkpoint that fits the model only partly). The other
    notices are findings about the model, which the page shows."""
    return tuple(n.text for n in notices if n.level == "warning" and (n.section == graph_section.ID or n.about_input))
