"""The comparison of one group of parameters with the snapshots, stage by stage: each stage
runs on every parameter of the group, so that its numbers are read back together (a model
has hundreds of small tensors: BatchNorm weights and biases); the records are made once,
at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .histograms import Histogram
from .numbers import float32_lists, round_sig
from .parameter_stats import (
    ParameterStats,
    finite_range,
    histograms,
    is_large,
    large_change,
    large_stats,
    norm_of,
    parameter_stats,
    parameter_stats_many,
)
from .snapshot import Snapshot
from .stats import as_float, finite_or_none, read_scalars, to_numpy

PARAMETER_SAMPLE = 16384  # values a parameter's histogram counts, at most (as for layer outputs)
SCATTER_POINTS = 400  # sampled (before, after) pairs per weight tensor
HISTORY_BIAS_VALUES = 256  # bias values kept per point of a trajectory
EXPLODED_RELATIVE = 10.0  # moved by more than 10x its own initial norm
EXPLODED_ABS = 1e4


@dataclass(frozen=True)
class HistoryPoint:
    label: str
    norm: float | None
    mean: float | None
    std: float | None
    relative_change: float | None  # against the first snapshot


@dataclass(frozen=True)
class ParamRecord:
    name: str
    module: str
    shape: list[int]
    dtype: str  # "float32", "complex64", ...: complex values are summarised by their magnitude
    numel: int
    requires_grad: bool
    is_bias: bool
    after: ParameterStats
    before: ParameterStats | None = None
    abs_change: float | None = None  # ||after - before||
    relative_change: float | None = None  # ||after - before|| / ||before||
    max_abs_change: float | None = None
    hist_before: Histogram | None = None
    hist_after: Histogram | None = None
    bias_before: list[float | None] | None = None
    bias_after: list[float | None] | None = None
    scatter_before: list[float | None] | None = None  # strided sample, weights only
    scatter_after: list[float | None] | None = None
    scatter_every: int = 1
    history: list[HistoryPoint] = field(default_factory=list)
    bias_history: list[list[float | None]] | None = None
    bias_history_index: list[int] | None = None
    flags: list[str] = field(default_factory=list)


def records_of(
    named: list[tuple[str, torch.Tensor]],
    snapshots: Sequence[Snapshot],
    states: list[dict[str, torch.Tensor]],
    trainable: dict[str, bool],
) -> list[ParamRecord]:
    """All parameters at once, stage by stage, so that each stage's numbers are read back
    together (a model has hundreds of small tensors: BatchNorm weights and biases)."""
    n = len(named)
    large = [is_large(p) for _, p in named]
    afters = [p.detach() if big else as_float(p) for (_, p), big in zip(named, large)]
    points_of, befores = _snapshot_points(named, afters, large, snapshots, states)
    paired = [i for i, b in enumerate(befores) if b is not None]
    stats = _stats(afters + [befores[i] for i in paired], large + [large[i] for i in paired])  # type: ignore[misc]
    after_stats = stats[:n]
    before_stats: list[ParameterStats | None] = [None] * n
    for i, s in zip(paired, stats[n:]):
        before_stats[i] = s
    is_bias = [name.rpartition(".")[2].endswith("bias") and p.dim() == 1 for name, p in named]
    changes = _changes(afters, befores, large, paired, before_stats)
    values = _Values.of(afters, befores, after_stats, before_stats, is_bias)
    records = []
    for i, (name, p) in enumerate(named):
        requires_grad = trainable.get(name, p.requires_grad)
        abs_change, max_abs_change, relative_change = changes[i]
        trajectory = _Trajectory()
        before = befores[i]
        if len(points_of[i]) > 1 and before is not None:
            trajectory = _trajectory(is_bias[i], p.numel(), points_of[i], afters[i], before)
        records.append(
            ParamRecord(
                name=name,
                module=name.rpartition(".")[0],
                shape=list(p.shape),
                dtype=str(p.dtype).replace("torch.", ""),
                numel=p.numel(),
                requires_grad=requires_grad,
                is_bias=is_bias[i],
                after=after_stats[i],
                before=before_stats[i],
                abs_change=abs_change,
                relative_change=relative_change,
                max_abs_change=max_abs_change,
                hist_before=values.hist_before[i],
                hist_after=values.hist_after[i],
                bias_before=values.bias_before[i],
                bias_after=values.bias_after[i],
                scatter_before=values.scatter_before[i],
                scatter_after=values.scatter_after[i],
                scatter_every=values.scatter_every[i],
                history=trajectory.points,
                bias_history=trajectory.bias_values,
                bias_history_index=trajectory.bias_index,
                flags=_flags(after_stats[i], before_stats[i], requires_grad, abs_change, relative_change),
            )
        )
    return records


def _snapshot_points(
    named: list[tuple[str, torch.Tensor]],
    afters: list[torch.Tensor],
    large: list[bool],
    snapshots: Sequence[Snapshot],
    states: list[dict[str, torch.Tensor]],
) -> tuple[list[list[tuple[str, torch.Tensor] | None]], list[torch.Tensor | None]]:
    """Per parameter: each snapshot's (label, tensor) where it has one of the parameter's
    shape, and the first snapshot's, on the parameter's device, as statistics read it."""
    points_of, befores = [], []
    for (name, p), after, big in zip(named, afters, large):
        points: list[tuple[str, torch.Tensor] | None] = []
        for snap, state in zip(snapshots, states):
            t = state.get(name)
            points.append(None if t is None or tuple(t.shape) != tuple(p.shape) else (snap.label, t))
        points_of.append(points)
        first = points[0][1] if points and points[0] else None
        if first is not None:
            first = first.to(after.device, non_blocking=True)
            if big and not first.is_contiguous():
                first = first.contiguous()
        befores.append(first if first is None or big else as_float(first))
    return points_of, befores


def _changes(
    afters: list[torch.Tensor],
    befores: list[torch.Tensor | None],
    large: list[bool],
    paired: list[int],
    before_stats: list[ParameterStats | None],
) -> list[tuple[float | None, float | None, float | None]]:
    """How far each parameter moved: ||after - before||, max |after - before| and the first
    relative to ||before|| (through the difference: torch.dist with p=inf is slower than
    aminmax on CPU); Nones without a before."""
    moved = []
    for i in paired:
        if afters[i].numel() and not large[i]:
            diff = afters[i] - befores[i]  # type: ignore[operator]
            moved += [torch.linalg.vector_norm(diff), *torch.aminmax(diff)]
            del diff
    moved_v = iter(read_scalars(moved))
    out: list[tuple[float | None, float | None, float | None]] = [(None, None, None)] * len(afters)
    for i in paired:
        abs_change: float | None
        max_abs_change: float | None
        if large[i]:
            norm, lo, hi = large_change(afters[i], befores[i])  # type: ignore[arg-type]
            abs_change, max_abs_change = finite_or_none(norm), finite_or_none(max(-lo, hi))
        elif afters[i].numel():
            norm, lo, hi = next(moved_v), next(moved_v), next(moved_v)
            abs_change, max_abs_change = finite_or_none(norm), finite_or_none(max(-lo, hi))
        else:
            abs_change = max_abs_change = 0.0
        before_norm = before_stats[i].norm  # type: ignore[union-attr]
        relative = abs_change / before_norm if before_norm and abs_change is not None else None
        out[i] = (abs_change, max_abs_change, relative)
    return out


@dataclass(frozen=True)
class _Values:
    """Per parameter: histograms over a range shared by before and after, scatter samples
    (weights), value lists (biases)."""

    hist_before: list[Histogram | None]
    hist_after: list[Histogram | None]
    bias_before: list[list[float | None] | None]
    bias_after: list[list[float | None] | None]
    scatter_before: list[list[float | None] | None]
    scatter_after: list[list[float | None] | None]
    scatter_every: list[int]

    @classmethod
    def of(
        cls,
        afters: list[torch.Tensor],
        befores: list[torch.Tensor | None],
        after_stats: list[ParameterStats],
        before_stats: list[ParameterStats | None],
        is_bias: list[bool],
    ) -> _Values:
        n = len(afters)
        v = cls([None] * n, [None] * n, [None] * n, [None] * n, [None] * n, [None] * n, [1] * n)
        wanted: list[tuple[torch.Tensor, float, float, int, bool]] = []
        where: list[tuple[list[Histogram | None], int]] = []
        scatter: list[torch.Tensor] = []
        scattered: list[int] = []
        biases: list[tuple[list[list[float | None] | None], int, torch.Tensor]] = []
        for i, (after, before) in enumerate(zip(afters, befores)):
            numel = after.numel()
            every = max(1, -(-numel // PARAMETER_SAMPLE))
            if before is not None:
                lo, hi, finite = finite_range([(before, before_stats[i]), (after, after_stats[i])])  # type: ignore[list-item]
                wanted += [(before, lo, hi, every, finite), (after, lo, hi, every, finite)]
                where += [(v.hist_before, i), (v.hist_after, i)]
                if is_bias[i]:
                    biases.append((v.bias_before, i, before))
                else:
                    step = max(1, -(-numel // SCATTER_POINTS))
                    scatter += [before.reshape(-1)[::step], after.reshape(-1)[::step]]
                    scattered.append(i)
                    v.scatter_every[i] = step
            else:
                lo, hi, finite = finite_range([(after, after_stats[i])])
                wanted.append((after, lo, hi, every, finite))
                where.append((v.hist_after, i))
            if is_bias[i]:
                biases.append((v.bias_after, i, after))
        for (hist_column, i), hist in zip(where, histograms(wanted)):
            hist_column[i] = hist
        if scatter:
            rounded, at = round_sig(np.concatenate(to_numpy(scatter)), 3), 0
            for i, k in zip(scattered, range(0, len(scatter), 2)):
                n_before, n_after = scatter[k].numel(), scatter[k + 1].numel()
                v.scatter_before[i] = rounded[at : at + n_before]
                v.scatter_after[i] = rounded[at + n_before : at + n_before + n_after]
                at += n_before + n_after
        for (bias_column, i, _), exact in zip(biases, float32_lists([as_float(t) for _, _, t in biases])):
            bias_column[i] = exact
        return v


def _stats(tensors: list[torch.Tensor], large: list[bool]) -> list[ParameterStats]:
    """:func:`parameter_stats_many` of the tensors, large ones slice by slice."""
    small = iter(parameter_stats_many([t for t, big in zip(tensors, large) if not big]))
    return [large_stats(t) if big else next(small) for t, big in zip(tensors, large)]


@dataclass(frozen=True)
class _Trajectory:
    points: list[HistoryPoint] = field(default_factory=list)
    bias_values: list[list[float | None]] | None = None  # per point, the (sampled) bias values
    bias_index: list[int] | None = None  # which values, when sampled


def _trajectory(
    is_bias: bool,
    numel: int,
    points: list[tuple[str, torch.Tensor] | None],
    after: torch.Tensor,
    first: torch.Tensor,
) -> _Trajectory:
    """The parameter at each snapshot and after training, against the first snapshot."""
    base = norm_of(first)
    index = None
    if is_bias and numel > HISTORY_BIAS_VALUES:
        index = torch.linspace(0, numel - 1, HISTORY_BIAS_VALUES).round().long()
    history = []
    bias_values: list[list[float | None]] | None = [] if is_bias else None
    for label, t in [pt for pt in points if pt is not None] + [("after", after)]:
        t = t.to(after.device)
        if is_large(first):
            s = large_stats(t.contiguous())
            change = large_change(t.contiguous(), first)[0]
            x = t
        else:
            x = as_float(t)
            s = parameter_stats(x)
            change = float(torch.linalg.vector_norm(x - first))
        history.append(HistoryPoint(label, s.norm, s.mean, s.std, finite_or_none(change / base) if base else None))
        if bias_values is not None:
            bias_values.append(float32_lists([as_float(x if index is None else x[index.to(x.device)])])[0])
    return _Trajectory(history, bias_values, index.tolist() if index is not None else None)


def _flags(
    after: ParameterStats,
    before: ParameterStats | None,
    requires_grad: bool,
    abs_change: float | None,
    relative_change: float | None,
) -> list[str]:
    flags = []
    for when, s in (("after", after), ("before", before)):
        if s is not None and (s.nan_count or s.inf_count):
            what = " and ".join(w for w, n in (("NaN", s.nan_count), ("Inf", s.inf_count)) if n)
            flags.append(f"{what} {'in the trained values' if when == 'after' else 'before training'}")
    if not requires_grad:
        flags.append("frozen (requires_grad=False)")
    if before is not None and abs_change == 0.0:
        flags.append("unchanged" + ("" if not requires_grad else ": it got no updates (dead or unused?)"))
    rel = relative_change
    big = max(abs(after.min or 0.0), abs(after.max or 0.0))
    if (rel is not None and rel > EXPLODED_RELATIVE) or big > EXPLODED_ABS:
        flags.append(
            "exploded"
            + (
                f": moved {rel:.3g}x its initial norm"
                if rel and rel > EXPLODED_RELATIVE
                else f": |value| up to {big:.3g}"
            )
        )
    return flags
