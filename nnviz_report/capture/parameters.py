"""Compare the model's parameters with earlier snapshots.

Each comparison runs on the parameter's device and reduces to summary numbers, histograms
over a shared range, strided samples for scatter plots, and, for biases, the full value
lists. Parameters go through in groups: what a group makes the comparison hold besides
the model (snapshot tensors read from a file or moved to the model's device, float32
copies of half-precision or integer tensors) takes at most MOVE_BUDGET bytes, or one
parameter's worth where a single one takes more. Within a group every parameter goes
through each stage together (:mod:`.parameter_records`), so that a stage's numbers are
read back at once; a model whose snapshot is a CPU copy on the CPU, in float32, is one
group. A tensor of more than SLICE values (an LLM's embedding) is reduced slice by slice
as it is stored: no float32 copy of it and no difference tensor are made, so that what the
comparison holds for it is the snapshot's tensor (read from a file, or moved to the
model's device) and one slice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import _compat
from ..errors import NNVizError
from .matching import StateMatch, Weights, align, match_state, pick, weights_of
from .parameter_records import ParamRecord, records_of
from .parameter_stats import is_large
from .snapshot import Snapshot, normalise_state
from .stored import StoredTensors

MOVE_BUDGET = 256 * 2**20  # bytes a group of parameters makes the comparison hold (see above)


@dataclass(frozen=True)
class ParameterComparison:
    records: list[ParamRecord]
    labels: list[str]  # snapshot labels, oldest first
    sources: list[str]
    matches: list[StateMatch]  # one per snapshot
    packed: list[str] = field(default_factory=list)  # quantized modules: weights that are no parameters


def compare(model: nn.Module, snapshots: Sequence[Snapshot], weights: Weights | None = None) -> ParameterComparison:
    """One record per parameter tensor of ``model`` (in registration order), compared with
    the first snapshot, with a trajectory through all of them when there are several.
    ``weights``: the parameters to read, when not the model's own (under FSDP, the full
    state gathered on rank 0)."""
    weights = weights if weights is not None else weights_of(model)
    states = [_strided(align(weights, normalise_state(s, s.source))) for s in snapshots]
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
            records += records_of(chunk, snapshots, loaded, weights.trainable)
            del loaded
    return ParameterComparison(
        packed=[name or type(m).__name__ for name, m in model.named_modules() if _compat.holds_packed_weights(m)],
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


DENSE_MAX = 2**24  # a sparse tensor of the before-state is compared as a dense copy up to this size


def _strided(state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """``state`` with its sparse (and other non-strided) tensors dense, up to DENSE_MAX
    values each, or left out (a large graph's sparse adjacency buffer: buffers are not
    compared, and a parameter left out is listed as missing)."""
    if isinstance(state, StoredTensors) or all(t.layout == torch.strided for t in state.values()):
        return state
    return {
        k: t if t.layout == torch.strided else t.to_dense()
        for k, t in state.items()
        if t.layout == torch.strided or t.numel() <= DENSE_MAX
    }


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
        large = is_large(p)  # reduced slice by slice: no float32 copies
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
