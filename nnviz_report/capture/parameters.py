"""Compare the model's parameters with earlier snapshots.

Each comparison runs on the parameter's device and reduces to summary numbers, histograms
over a shared range, strided samples for scatter plots, and, for biases, the full value
lists. Parameters go through in groups: what a group makes the comparison hold besides
the model (snapshot tensors read from a file or moved to the model's device, float32
copies of half-precision or integer tensors) takes at most MOVE_BUDGET bytes, or one
parameter's worth where a single one takes more. Within a group every parameter goes
through each stage together, so that a stage's numbers are read back at once; a model
whose snapshot is a CPU copy on the CPU, in float32, is one group. A tensor of more than
SLICE values (an LLM's embedding) is reduced slice by slice as it is stored: no float32 copy
of it and no difference tensor are made, so that what the comparison holds for it is the
snapshot's tensor (read from a file, or moved to the model's device) and one slice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import NNVizError
from .checkpoints import StoredTensors
from .histograms import Histogram, bin_counts_many
from .numbers import float32_lists, round_sig
from .snapshot import Snapshot, StateMatch, Weights, align, match_state, normalise_state, pick, weights_of
from .stats import as_float, finite_or_none, read_scalars, stats_many, to_numpy

BINS = 40
PARAMETER_SAMPLE = 16384  # values a parameter's histogram counts, at most (as for layer outputs)
MOVE_BUDGET = 256 * 2**20  # bytes a group of parameters makes the comparison hold (see above)
SLICE = 2**24  # a tensor with more values is reduced this many at a time (64 MB as float32)
SCATTER_POINTS = 400  # sampled (before, after) pairs per weight tensor
HISTORY_BIAS_VALUES = 256  # bias values kept per point of a trajectory
EXPLODED_RELATIVE = 10.0  # moved by more than 10x its own initial norm
EXPLODED_ABS = 1e4


@dataclass(frozen=True)
class Summary:
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    norm: float | None
    nan_count: int
    inf_count: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def summarise(t: torch.Tensor) -> Summary:
    return summarise_many([t])[0]


def summarise_many(tensors: list[torch.Tensor]) -> list[Summary]:
    """A :class:`Summary` of each tensor, their reductions read back together."""
    out = []
    for t, s in zip(tensors, stats_many(tensors, zeros=False)):
        n = s.numel
        if n == 0:
            norm = 0.0
        elif s.mean is not None and (s.std is not None or n == 1):
            # ||x||^2 = (n - 1) var + n mean^2: no extra pass over the tensor.
            norm = math.sqrt(max((n - 1) * (s.std or 0.0) ** 2 + n * s.mean**2, 0.0))
        else:
            norm = float(torch.linalg.vector_norm(as_float(t)))
        out.append(Summary(s.mean, s.std, s.min, s.max, finite_or_none(norm), s.nan_count, s.inf_count))
    return out


def _large(t: torch.Tensor) -> bool:
    return t.numel() > SLICE and t.is_contiguous()


def _slices(t: torch.Tensor) -> Iterator[torch.Tensor]:
    flat = t.detach().reshape(-1)
    return (flat[i : i + SLICE] for i in range(0, flat.numel(), SLICE))


def _summary_large(t: torch.Tensor) -> Summary:
    """:func:`summarise` of a large tensor, from the statistics of its slices (each made
    float32 on its own): counts and sums add up, the variance by Chan et al.'s merge."""
    parts = [stats_many([x], zeros=False)[0] for x in _slices(t)]
    n = sum(p.numel for p in parts)
    nan, inf = sum(p.nan_count for p in parts), sum(p.inf_count for p in parts)
    lo = None if any(p.min is None for p in parts) else min(p.min for p in parts)
    hi = None if any(p.max is None for p in parts) else max(p.max for p in parts)
    if all(p.mean is not None and p.std is not None for p in parts):
        mean = math.fsum(p.numel * p.mean for p in parts) / n
        m2 = math.fsum((p.numel - 1) * p.std**2 + p.numel * (p.mean - mean) ** 2 for p in parts)
        std = math.sqrt(m2 / (n - 1))
        norm = math.sqrt(max(m2 + n * mean**2, 0.0))
        return Summary(mean, std, lo, hi, finite_or_none(norm), nan, inf)
    norm = math.sqrt(math.fsum(v**2 for v in read_scalars([torch.linalg.vector_norm(as_float(x)) for x in _slices(t)])))
    return Summary(None, None, lo, hi, finite_or_none(norm), nan, inf)


def _change_large(after: torch.Tensor, before: torch.Tensor) -> tuple[float, float, float]:
    """||after - before||, min and max of after - before, one slice at a time."""
    parts = []
    for a, b in zip(_slices(after), _slices(before)):
        diff = as_float(a) - as_float(b)
        parts += [torch.linalg.vector_norm(diff), *torch.aminmax(diff)]
        del diff
    v = torch.tensor(read_scalars(parts), dtype=torch.float64).view(-1, 3)
    return float(v[:, 0].square().sum().sqrt()), float(v[:, 1].min()), float(v[:, 2].max())


def _norm(t: torch.Tensor) -> float:
    if _large(t):
        return _summary_large(t).norm or 0.0
    return float(torch.linalg.vector_norm(as_float(t)))


def _histograms(items: list[tuple[torch.Tensor, float, float, int, bool]]) -> list[Histogram]:
    """Histograms of several tensors, each ``(x, lo, hi, every, finite)``: BINS bins over
    ``[lo, hi]`` of every ``every``-th value (the finite ones), binned together."""
    samples = []
    for x, _, _, every, finite in items:
        sample = as_float(x.reshape(-1)[::every])  # a large tensor is kept as stored
        samples.append(sample if finite else sample[torch.isfinite(sample)])
    binned = [(s, lo, hi) for s, (_, lo, hi, _, _) in zip(samples, items) if hi > lo]
    counts = iter(bin_counts_many(binned, BINS))
    return [
        Histogram(lo, hi, next(counts) if hi > lo else [int(s.numel())], every)
        for s, (_, lo, hi, every, _) in zip(samples, items)
    ]


@dataclass
class HistoryPoint:
    label: str
    norm: float | None
    mean: float | None
    std: float | None
    relative_change: float | None  # against the first snapshot


@dataclass
class ParamRecord:
    name: str
    module: str
    shape: list[int]
    numel: int
    requires_grad: bool
    is_bias: bool
    after: Summary
    before: Summary | None = None
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


@dataclass
class ParameterComparison:
    records: list[ParamRecord]
    labels: list[str]  # snapshot labels, oldest first
    sources: list[str]
    matches: list[StateMatch]  # one per snapshot


def _range(pairs: list[tuple[torch.Tensor, Summary]]) -> tuple[float, float, bool]:
    """The finite range of several tensors, from their summaries when those are finite."""
    los, his, all_finite = [], [], True
    for t, s in pairs:
        if s.nan_count or s.inf_count:
            all_finite = False
            finite = t[torch.isfinite(t)]
            if finite.numel():
                lo, hi = torch.aminmax(finite)
                los.append(float(lo))
                his.append(float(hi))
        elif s.min is not None:
            los.append(s.min)
            his.append(s.max)
    return (min(los), max(his), all_finite) if los else (0.0, 0.0, all_finite)


def compare(model: nn.Module, snapshots: list[Snapshot], weights: Weights | None = None) -> ParameterComparison:
    """One record per parameter tensor of ``model`` (in registration order), compared with
    the first snapshot, with a trajectory through all of them when there are several.
    ``weights``: the parameters to read, when not the model's own (under FSDP, the full
    state gathered on rank 0)."""
    weights = weights if weights is not None else weights_of(model)
    states = [align(weights, normalise_state(s, s.source)) for s in snapshots]
    live = {p.data_ptr() for _, p in weights.named if p.numel()}
    for snap, state in zip(snapshots, states):
        if not isinstance(state, StoredTensors) and any(t.numel() and t.data_ptr() in live for t in state.values()):
            raise NNVizError(
                f"{snap.source} holds the model's own parameter tensors (a live state_dict), so it "
                "changes as the model trains; take nnviz_report.snapshot(model) or "
                "copy.deepcopy(model.state_dict()) before training"
            )
    matches = [match_state(weights, st) for st in states]
    for snap, m in zip(snapshots, matches):
        if m.parameters and not m.comparable:
            raise NNVizError(
                f"{snap.source} shares no parameter with {type(model).__name__} under the same name and shape "
                f"({m.describe()}); it was saved from a different model"
            )
    # Per snapshot, the name it holds each parameter under (tied weights may be saved once).
    keys = [{n: k for n, _ in weights.named if (k := pick(weights, st, n)) is not None} for st in states]
    records: list[ParamRecord] = []
    with torch.no_grad():
        for chunk in _chunks(weights.named, states, keys):
            names = [n for n, _ in chunk]
            loaded = [_read(st, {n: ks[n] for n in names if n in ks}) for st, ks in zip(states, keys)]
            records += _records(chunk, snapshots, loaded, weights.trainable)
            del loaded
    return ParameterComparison(
        records=records,
        labels=[s.label for s in snapshots],
        sources=[s.source for s in snapshots],
        matches=matches,
    )


def _read(state: Any, keys: dict[str, str]) -> dict[str, torch.Tensor]:
    """Parameter name -> the snapshot's tensor for it, read from disk where it is stored."""
    if isinstance(state, StoredTensors):
        got = state.read(list(dict.fromkeys(keys.values())))
        return {n: got[k] for n, k in keys.items()}
    return {n: state[k] for n, k in keys.items()}


def _upcast(dtype: torch.dtype) -> bool:
    """Whether statistics need a float32 copy of a tensor of this dtype (see ``as_float``)."""
    return dtype not in (torch.float32, torch.float64)


def _chunks(named: list[tuple[str, torch.Tensor]], states: list[Any], keys: list[dict[str, str]]) -> Iterator[list]:
    """Parameters in groups that make the comparison hold at most MOVE_BUDGET bytes besides
    the model: tensors read from a file, the first snapshot's tensor moved to the
    parameter's device, float32 copies of other dtypes (after and first before). A
    parameter that needs more than the budget alone is a group of its own."""
    chunk: list[tuple[str, torch.Tensor]] = []
    held = 0
    for name, p in named:
        large = _large(p)  # reduced slice by slice: no float32 copies
        size = p.numel() * 4 if _upcast(p.dtype) and not large else 0
        for i, (state, ks) in enumerate(zip(states, keys)):
            k = ks.get(name)
            if k is None:
                continue
            if isinstance(state, StoredTensors):
                spec = state.specs[k]
                size += spec.nbytes
                moves, dtype, itemsize = p.device.type != "cpu", spec.dtype, spec.dtype.itemsize
            else:
                t = state[k]
                moves, dtype, itemsize = t.device != p.device, t.dtype, t.element_size()
            if i == 0 and large and moves:
                size += p.numel() * itemsize
            elif i == 0 and not large and (moves or _upcast(dtype)):
                size += p.numel() * 4
        if chunk and held + size > MOVE_BUDGET:
            yield chunk
            chunk, held = [], 0
        chunk.append((name, p))
        held += size
    if chunk:
        yield chunk


def _records(
    named: list[tuple[str, torch.Tensor]], snapshots: list[Snapshot], states: list[dict], trainable: dict[str, bool]
) -> list[ParamRecord]:
    """All parameters at once, stage by stage, so that each stage's numbers are read back
    together (a model has hundreds of small tensors: BatchNorm weights and biases)."""
    large = [_large(p) for _, p in named]
    afters = [p.detach() if big else as_float(p) for (_, p), big in zip(named, large)]
    points_of, befores = [], []
    for (name, p), after, big in zip(named, afters, large):
        points = []
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
    paired = [i for i, b in enumerate(befores) if b is not None]
    summaries = _summaries(afters + [befores[i] for i in paired], large + [large[i] for i in paired])
    records = []
    for (name, p), s in zip(named, summaries):
        records.append(
            ParamRecord(
                name=name,
                module=name.rpartition(".")[0],
                shape=list(p.shape),
                numel=p.numel(),
                requires_grad=trainable.get(name, p.requires_grad),
                is_bias=name.rpartition(".")[2].endswith("bias") and p.dim() == 1,
                after=s,
            )
        )
    for i, s in zip(paired, summaries[len(named) :]):
        records[i].before = s

    # How far each parameter moved: ||after - before|| and max |after - before|. (Through
    # the difference: torch.dist with p=inf is ~5x slower than aminmax on CPU.)
    moved = []
    for i in paired:
        if afters[i].numel() and not large[i]:
            diff = afters[i] - befores[i]
            moved += [torch.linalg.vector_norm(diff), *torch.aminmax(diff)]
            del diff
    moved_v = iter(read_scalars(moved))
    for i in paired:
        rec = records[i]
        if large[i]:
            norm, lo, hi = _change_large(afters[i], befores[i])
            rec.abs_change, rec.max_abs_change = finite_or_none(norm), finite_or_none(max(-lo, hi))
        elif afters[i].numel():
            norm, lo, hi = next(moved_v), next(moved_v), next(moved_v)
            rec.abs_change, rec.max_abs_change = finite_or_none(norm), finite_or_none(max(-lo, hi))
        else:
            rec.abs_change = rec.max_abs_change = 0.0
        if rec.before.norm and rec.abs_change is not None:
            rec.relative_change = rec.abs_change / rec.before.norm

    # Histograms over a range shared by before and after; scatter samples; bias values.
    wanted, where = [], []
    scatter: list[torch.Tensor] = []
    biases: list[tuple[ParamRecord, str, torch.Tensor]] = []
    for rec, after, before in zip(records, afters, befores):
        every = max(1, -(-rec.numel // PARAMETER_SAMPLE))
        if before is not None:
            lo, hi, finite = _range([(before, rec.before), (after, rec.after)])
            wanted += [(before, lo, hi, every, finite), (after, lo, hi, every, finite)]
            where += [(rec, "hist_before"), (rec, "hist_after")]
            if rec.is_bias:
                biases.append((rec, "bias_before", before))
            else:
                step = max(1, -(-rec.numel // SCATTER_POINTS))
                scatter += [before.reshape(-1)[::step], after.reshape(-1)[::step]]
                rec.scatter_every = step
        else:
            lo, hi, finite = _range([(after, rec.after)])
            wanted.append((after, lo, hi, every, finite))
            where.append((rec, "hist_after"))
        if rec.is_bias:
            biases.append((rec, "bias_after", after))
    for (rec, field_name), hist in zip(where, _histograms(wanted)):
        setattr(rec, field_name, hist)
    if scatter:
        values, at = round_sig(np.concatenate(to_numpy(scatter)), 3), 0
        scattered = [rec for rec, b in zip(records, befores) if b is not None and not rec.is_bias]
        for rec, k in zip(scattered, range(0, len(scatter), 2)):
            n_before, n_after = scatter[k].numel(), scatter[k + 1].numel()
            rec.scatter_before = values[at : at + n_before]
            rec.scatter_after = values[at + n_before : at + n_before + n_after]
            at += n_before + n_after
    for (rec, field_name, _), values in zip(biases, float32_lists([as_float(t) for _, _, t in biases])):
        setattr(rec, field_name, values)

    for rec, after, before, points in zip(records, afters, befores, points_of):
        if len(points) > 1 and before is not None:
            _trajectory(rec, points, after, before)
        _flag(rec)
    return records


def _summaries(tensors: list[torch.Tensor], large: list[bool]) -> list[Summary]:
    """:func:`summarise_many` of the tensors, large ones slice by slice."""
    small = iter(summarise_many([t for t, big in zip(tensors, large) if not big]))
    return [_summary_large(t) if big else next(small) for t, big in zip(tensors, large)]


def _trajectory(rec: ParamRecord, points: list, after: torch.Tensor, first: torch.Tensor) -> None:
    base = _norm(first)
    index = None
    if rec.is_bias and rec.numel > HISTORY_BIAS_VALUES:
        index = torch.linspace(0, rec.numel - 1, HISTORY_BIAS_VALUES).round().long()
        rec.bias_history_index = index.tolist()
    rec.bias_history = [] if rec.is_bias else None
    for label, t in [pt for pt in points if pt is not None] + [("after", after)]:
        t = t.to(after.device)
        if _large(first):
            s = _summary_large(t.contiguous())
            change = _change_large(t.contiguous(), first)[0]
            x = t
        else:
            x = as_float(t)
            s = summarise(x)
            change = float(torch.linalg.vector_norm(x - first))
        rec.history.append(HistoryPoint(label, s.norm, s.mean, s.std, finite_or_none(change / base) if base else None))
        if rec.bias_history is not None:
            rec.bias_history.append(float32_lists([as_float(x if index is None else x[index.to(x.device)])])[0])


def _flag(rec: ParamRecord) -> None:
    for when, s in (("after", rec.after), ("before", rec.before)):
        if s is not None and (s.nan_count or s.inf_count):
            what = " and ".join(w for w, n in (("NaN", s.nan_count), ("Inf", s.inf_count)) if n)
            rec.flags.append(f"{what} {'in the trained values' if when == 'after' else 'before training'}")
    if not rec.requires_grad:
        rec.flags.append("frozen (requires_grad=False)")
    if rec.before is not None and rec.abs_change == 0.0:
        rec.flags.append("unchanged" + ("" if not rec.requires_grad else ": it got no updates (dead or unused?)"))
    rel = rec.relative_change
    big = max(abs(rec.after.min or 0.0), abs(rec.after.max or 0.0))
    if (rel is not None and rel > EXPLODED_RELATIVE) or big > EXPLODED_ABS:
        rec.flags.append(
            "exploded"
            + (
                f": moved {rel:.3g}x its initial norm"
                if rel and rel > EXPLODED_RELATIVE
                else f": |value| up to {big:.3g}"
            )
        )
