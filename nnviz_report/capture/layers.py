"""Layer outputs: what a hook records of each tensor a runtime-leaf module returns, and the
finished records the feature-map section shows.

A hook records a :class:`LayerRecord`: the output's statistics, its histogram (pending: the
counting waits for the pass to end) and what its picture is drawn from. After the pass,
:func:`finish_layers` turns each into a :class:`LayerCapture` with the counted histogram and
the drawn picture.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import _compat
from .histograms import CountedHistograms, Histogram, PendingHistogram, PendingHistograms, stats_and_histogram
from .nested import describe_non_tensors
from .pictures import (
    FULL_COPY_BUDGET,
    FULL_COPY_VALUES,
    FullResolution,
    GridImage,
    Picture,
    channel_parts,
    draw_pictures,
    drawn_slice,
    matrix_parts,
)
from .stats import TensorStats

if TYPE_CHECKING:
    from .calls import ModuleCall
    from .options import CaptureOptions

MULTIHEAD_NOTE = (
    "out_proj is applied functionally inside MultiheadAttention, so this is the "
    "attention block's output (out_proj has no entry of its own)"
)


@dataclass(frozen=True)
class LayerRecord:
    """One tensor returned by one call of a runtime-leaf module, as its hook recorded it."""

    name: str
    call: int
    type: str
    output: str  # where in the output: "" for a bare tensor, "[0]", "[1][0]", ".h", ...
    shape: list[int]
    dtype: str
    stats: TensorStats
    histogram: Histogram | PendingHistogram | None
    picture: Picture | None  # what the picture is drawn from
    call_id: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LayerCapture:
    """A :class:`LayerRecord` finished: its histogram counted, its picture drawn."""

    name: str
    call: int
    type: str
    output: str
    shape: list[int]
    dtype: str
    stats: TensorStats
    histogram: Histogram | None
    image: GridImage | None
    call_id: int
    notes: list[str] = field(default_factory=list)


def draw_layer_pictures(records: Sequence[LayerRecord]) -> list[GridImage]:
    """The pictures of the records that have one, in their order, all drawn at once."""
    return draw_pictures([r.picture for r in records if r.picture is not None])


def finish_layers(
    records: Sequence[LayerRecord], pictures: list[GridImage], counted: CountedHistograms
) -> list[LayerCapture]:
    """Every record with its histogram counted and its picture (from
    :func:`draw_layer_pictures`)."""
    drawn = iter(pictures)
    return [
        LayerCapture(
            name=r.name,
            call=r.call,
            type=r.type,
            output=r.output,
            shape=r.shape,
            dtype=r.dtype,
            stats=r.stats,
            histogram=counted.finished(r.histogram),
            image=next(drawn) if r.picture is not None else None,
            call_id=r.call_id,
            notes=r.notes,
        )
        for r in records
    ]


class RecentOutputs:
    """The last few recorded outputs with their statistics and histograms: an activation whose
    input or output is one of them (the same tensor, not written since) reuses them."""

    def __init__(self) -> None:
        self._recent: list[tuple[torch.Tensor, int | None, TensorStats, Histogram | PendingHistogram | None]] = []

    def remember(self, t: torch.Tensor, stats: TensorStats, hist: Histogram | PendingHistogram | None) -> None:
        self._recent.append((t, _compat.version(t), stats, hist))
        del self._recent[:-4]

    def _find(self, t: torch.Tensor) -> tuple[Any, ...] | None:
        for entry in self._recent:
            if entry[0] is t and entry[1] is not None and _compat.version(t) == entry[1]:
                return entry
        return None

    def stats(self, t: torch.Tensor) -> TensorStats | None:
        found = self._find(t)
        return found[2] if found is not None else None

    def histogram(self, t: torch.Tensor) -> Histogram | PendingHistogram | None:
        found = self._find(t)
        return found[3] if found is not None else None


class LayerRecorder:
    """Records the outputs of the selected runtime-leaf calls (``layers``) and what was not a
    tensor (``skipped``), with the pictures laid out by what the dimensions mean. A hook
    keeps full-resolution copies of the channels it draws within a budget for the whole
    pass (see :func:`channel_parts`); beyond it, hooks pool their pictures themselves."""

    def __init__(self, options: CaptureOptions, histograms: PendingHistograms, recent: RecentOutputs):
        self.options = options
        self.histograms = histograms
        self.recent = recent
        self.layers: list[LayerRecord] = []
        self.skipped: list[tuple[str, int, str, str]] = []  # (name, call, path, type) not tensors
        self.example_clamped = False  # the batch had no example options.example
        self.full_copy_budget = FULL_COPY_BUDGET

    def selected(self, call: ModuleCall, module: nn.Module) -> bool:
        o = self.options
        if not o.layers and not o.layer_types:
            return True
        if any(fnmatch.fnmatchcase(call.name, p) for p in o.layers):
            return True
        return any(c.__name__ in o.layer_types for c in type(module).__mro__)

    def record(self, call: ModuleCall, module: nn.Module, tensors: list[tuple[str, torch.Tensor]], output: Any) -> None:
        for path, kind in describe_non_tensors(output):
            self.skipped.append((call.name, call.call, path, kind))
        for path, t in tensors:
            notes: list[str] = []
            picture = None
            try:
                picture = self._picture(module, t, path)
            except RuntimeError as exc:  # an exotic layout must not break the report
                notes.append(f"no image: {exc}".split("\n")[0])
            slice_note = drawn_slice(t.shape) if picture is not None and picture.kind == "channels" else None
            if slice_note is not None:  # a tensor of more than 4 dimensions
                notes.append(slice_note)
            if isinstance(module, nn.MultiheadAttention):
                notes.append(MULTIHEAD_NOTE)
            stats, hist = stats_and_histogram(t, self.options.bins, pending=self.histograms)
            self.recent.remember(t, stats, hist)
            self.layers.append(
                LayerRecord(
                    name=call.name,
                    call=call.call,
                    type=call.type,
                    output=path,
                    shape=list(t.shape),
                    dtype=str(t.dtype).replace("torch.", ""),
                    stats=stats,
                    histogram=hist,
                    picture=picture,
                    call_id=call.id,
                    notes=notes,
                )
            )

    def _example(self, t: torch.Tensor, batch_dim: int) -> int:
        e = self.options.example
        if e < t.shape[batch_dim]:
            return e
        self.example_clamped = True
        return 0

    def _picture(self, module: nn.Module, t: torch.Tensor, path: str = "") -> Picture | None:
        o = self.options
        if t.numel() == 0 or t.dim() < 2:
            return None
        if isinstance(module, nn.RNNBase) and path.startswith("[1]") and t.dim() == 3:
            # h_n / c_n are (layers x directions, batch, hidden) whatever batch_first says.
            return matrix_parts(t[:, self._example(t, 1)], o.max_rows, o.max_cols, "layer", "feature")
        if t.dim() >= 4:
            full_copy = min(FULL_COPY_VALUES, self.full_copy_budget)
            parts = channel_parts(t, self._example(t, 0), o.max_channels, o.tile, full_copy=full_copy)
            if isinstance(parts, FullResolution):
                self.full_copy_budget -= parts.values.numel()
            return parts
        if t.dim() == 3:
            if isinstance(module, _compat.CHANNELS_FIRST):
                m = t[self._example(t, 0)]
                return matrix_parts(m, o.max_rows, o.max_cols * 2, "channel", "position")
            batch_first = getattr(module, "batch_first", True)
            if batch_first:
                m = t[self._example(t, 0)]
            else:
                m = t[:, self._example(t, 1)]
            return matrix_parts(m, o.max_rows, o.max_cols, "position", "feature")
        return matrix_parts(t, o.max_rows, o.max_cols, "example", "feature")
