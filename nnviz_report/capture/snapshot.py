"""Parameter snapshots, and how a saved state lines up with a model's names.

Checkpoint files and folders are read by :mod:`.checkpoints`; a snapshot can also be
written to disk (``snapshot(model, path=...)``) and then holds no copy in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import _compat
from .._text import listed
from ..errors import NNVizError
from .checkpoints import (
    PREFIXES,
    WRAPPER_KEYS,
    StoredTensors,
    load_checkpoint,
    shown,
    unwrap_state,
)

__all__ = [
    "PREFIXES",
    "WRAPPER_KEYS",
    "Snapshot",
    "StateMatch",
    "Weights",
    "align",
    "load_checkpoint",
    "load_into",
    "match_state",
    "normalise_state",
    "snapshot",
    "unwrap_model",
    "weights_of",
]

READ_BUDGET = 256 * 2**20  # bytes of checkpoint tensors load_into reads at once


@dataclass(frozen=True)
class Snapshot:
    """A model's parameters and buffers, by qualified name: CPU copies, or tensors in a
    file that are read when the comparison needs them."""

    tensors: Mapping[str, torch.Tensor]
    label: str = "before"
    source: str = "snapshot()"

    def __repr__(self) -> str:
        return f"Snapshot(label={self.label!r}, source={self.source!r}, tensors={len(self.tensors)})"


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module that holds the weights: DataParallel/DDP ``.module``, torch.compile's
    ``._orig_mod`` (whose names carry no prefix). FSDP is not a wrapper to take off: its
    forward pass gathers the sharded parameters."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif (inner := _compat.compiled_module(model)) is not None:
            model = inner
        else:
            return model


def snapshot(
    model: nn.Module, label: str = "before", *, path: str | os.PathLike | None = None, dist_timeout: float = 300.0
) -> Snapshot | None:
    """Copy every parameter and buffer of ``model`` to the CPU, by name.

    Take one before training (``snap = nnviz_report.snapshot(model)``) and pass it as
    ``build_report(..., before=snap)``; the copy does not follow later updates. With
    ``path``, the tensors are written to that safetensors file one at a time instead of
    being kept in memory, and the snapshot reads them back when the report compares.

    In a ``torch.distributed`` job call it on every rank: rank 0 gets the snapshot (under
    FSDP, of the full parameters gathered from all ranks), the other ranks get None.
    """
    if not isinstance(model, nn.Module):
        raise NNVizError(f"snapshot() needs an nn.Module, not {type(model).__name__}")
    if not isinstance(label, str):
        raise NNVizError(f"label must be a string, not {type(label).__name__}")
    model = unwrap_model(model)
    from . import distributed

    job = distributed.job_for(model, dist_timeout)
    if job is not None and job.sharded:
        job.step("snapshot()", lambda: _check_target(Path(path)) if path is not None and job.rank == 0 else None)
        state = distributed.gather_state(model)
        return _snapshot_of(state, label, path) if job.rank == 0 else None
    if job is not None and job.rank != 0:
        return None  # every rank holds the whole model: rank 0's copy is the snapshot
    with torch.no_grad():
        state = {
            name: t.detach() for name, t in model.state_dict(keep_vars=True).items() if isinstance(t, torch.Tensor)
        }
        if path is None:
            state = {name: t.to("cpu", copy=True) for name, t in state.items()}
    return _snapshot_of(state, label, path)


def _snapshot_of(state: dict[str, torch.Tensor], label: str, path: str | os.PathLike | None) -> Snapshot:
    if path is None:
        return Snapshot(state, label=label, source="snapshot()")
    target = Path(path)
    write_safetensors(state, target)
    snap = load_checkpoint(target, label=label)
    return Snapshot(snap.tensors, label=label, source=f"snapshot({shown(target)})")


SAFETENSORS_NAMES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors(state: dict[str, torch.Tensor], target: Path) -> None:
    """Write ``state`` as one safetensors file, one tensor at a time (each copied to the CPU
    only while it is written), atomically: a temporary file beside ``target``, then a rename.

    The safetensors package's writers take every tensor at once (on the CPU, for a GPU
    model: a full copy); the format is a JSON header of dtypes, shapes and byte offsets,
    then the bytes, so it can be written as a stream. It is read back with the package.
    Tensors that share memory (tied weights) are written once, under their first name.
    """
    _check_target(target)
    header: dict[str, Any] = {}
    written: dict[tuple, str] = {}
    tied: dict[str, str] = {}
    order: list[tuple[str, torch.Tensor]] = []
    offset = 0
    for name, t in state.items():
        if t.dtype not in SAFETENSORS_NAMES:
            raise NNVizError(
                f"cannot write {name} ({t.dtype}) to a snapshot file; take snapshot(model) without path= for this model"
            )
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) if t.numel() else None
        if key is not None and key in written:
            tied[name] = written[key]
            continue
        if key is not None:
            written[key] = name
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": SAFETENSORS_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        order.append((name, t))
        offset += size
    header["__metadata__"] = {"format": "pt", "nnviz_report_tied": json.dumps(tied)}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            with torch.no_grad():
                for _, t in order:
                    if t.numel():
                        cpu = t.detach().to("cpu").contiguous().reshape(-1)
                        f.write(cpu.view(torch.uint8).numpy().data)
                        del cpu
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _check_target(target: Path) -> None:
    if target.is_dir():
        raise NNVizError(
            f"snapshot path {shown(target)} is a folder; give a file name such as "
            f"{shown(target / 'before.safetensors')}"
        )
    if not target.parent.is_dir():
        raise NNVizError(f"snapshot folder {shown(target.parent)} does not exist; create it first")


def normalise_state(obj: Any, source: str) -> Mapping[str, torch.Tensor]:
    """A flat ``name -> tensor`` mapping from a Snapshot, a bare state_dict or a
    ``{"state_dict" | "model_state_dict" | "model": ...}`` wrapper, with ``module.`` (DDP)
    and ``_orig_mod.`` (torch.compile) prefixes removed. Tensors in a file stay there."""
    if isinstance(obj, Snapshot):
        obj = obj.tensors
    if isinstance(obj, StoredTensors):
        return obj
    if isinstance(obj, nn.Module):
        return unwrap_state(obj.state_dict(), source)
    return unwrap_state(obj, source)


# -- lining a saved state up with the model -----------------------------------------------------


@dataclass
class Weights:
    """What a model holds, by name: its parameters (tied ones once, in
    ``named_parameters`` order), the shape of every parameter and buffer its state_dict
    names, every name of each parameter (tied weights have several) and whether it trains.
    Built from the live model, or under FSDP from the full state gathered on rank 0."""

    named: list[tuple[str, torch.Tensor]]
    shapes: dict[str, tuple[int, ...]]
    aliases: dict[str, list[str]] = field(default_factory=dict)
    trainable: dict[str, bool] = field(default_factory=dict)


def weights_of(model: nn.Module) -> Weights:
    state = {k: v for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    by_tensor: dict[int, list[str]] = {}
    for k, v in state.items():
        by_tensor.setdefault(id(v), []).append(k)
    named = list(model.named_parameters())
    return Weights(
        named=named,
        shapes={k: tuple(v.shape) for k, v in state.items()},
        aliases={n: by_tensor.get(id(p), [n]) for n, p in named},
        trainable={n: p.requires_grad for n, p in named},
    )


def _shape(state: Mapping[str, torch.Tensor], name: str) -> tuple[int, ...]:
    if isinstance(state, StoredTensors):
        return state.specs[name].shape
    return tuple(state[name].shape)


def align(weights: Weights, state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """``state`` with the prefix that stands between its names and the model's removed,
    when one does: Lightning keeps a module's weights under ``model.`` (the attribute's
    name), a checkpoint of a wrapper under the wrapper's. Names without it are kept."""
    names = list(state)
    direct = sum(n in weights.shapes for n in names)
    prefixes: Counter[str] = Counter()
    for n in names:
        parts = n.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in weights.shapes:
                prefixes[".".join(parts[:i]) + "."] += 1
    if not prefixes:
        return state
    prefix, hits = prefixes.most_common(1)[0]
    if hits <= direct:
        return state
    mapping = {n: n for n in names if not n.startswith(prefix)}
    mapping.update({n[len(prefix) :]: n for n in names if n.startswith(prefix)})
    if isinstance(state, StoredTensors):
        return state.renamed(mapping)
    return {new: state[old] for new, old in mapping.items()}


@dataclass(frozen=True)
class StateMatch:
    missing: list[str]  # in the model, not in the state (tied names whose twin is there excluded)
    unexpected: list[str]  # in the state, not in the model
    mismatched: list[str]  # "name: state (a, b) vs model (c, d)"
    matched: int  # parameters and buffers with the same name and shape
    tied: list[str] = field(default_factory=list)  # "name = twin": saved once, under the twin's name
    comparable: int = 0  # parameters found (under a name of theirs) with the same shape
    parameters: int = 0  # parameters of the model (tied ones once)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing {len(self.missing)} ({listed(self.missing, 6)})")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)} ({listed(self.unexpected, 6)})")
        if self.mismatched:
            parts.append(f"shape mismatch {len(self.mismatched)} ({listed(self.mismatched, 3)})")
        return "; ".join(parts)

    @property
    def partial(self) -> bool:
        """Some of the model's parameters have nothing to be compared with."""
        return self.comparable < self.parameters


def match_state(model: nn.Module | Weights, state: Mapping[str, torch.Tensor]) -> StateMatch:
    weights = model if isinstance(model, Weights) else weights_of(model)
    expected = weights.shapes
    twins = {a: names for names in weights.aliases.values() for a in names if len(names) > 1}
    missing, tied = [], []
    for k in expected:
        if k in state:
            continue
        twin = next((t for t in twins.get(k, ()) if t in state), None)
        if twin is None:
            missing.append(k)
        else:
            tied.append(f"{k} = {twin}")
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {_shape(state, k)} vs model {expected[k]}"
        for k in expected
        if k in state and _shape(state, k) != expected[k]
    ]
    comparable = sum(1 for n, _ in weights.named if pick(weights, state, n) is not None)
    return StateMatch(
        missing,
        unexpected,
        mismatched,
        len(expected) - len(missing) - len(tied) - len(mismatched),
        tied,
        comparable,
        len(weights.named),
    )


def pick(weights: Weights, state: Mapping[str, torch.Tensor], name: str) -> str | None:
    """The name under which ``state`` holds parameter ``name`` with its shape (its own, or a
    tied twin's), or None."""
    shape = weights.shapes.get(name)
    for alias in weights.aliases.get(name, [name]):
        if alias in state and (shape is None or _shape(state, alias) == shape):
            return alias
    return None


def load_into(model: nn.Module, snap: Snapshot) -> None:
    """Load trained weights into a freshly built model; every key must match (tied
    weights saved once count as present). Tensors in a file are read in groups."""
    weights = weights_of(model)
    state = align(weights, normalise_state(snap, snap.source))
    match = match_state(weights, state)
    if match.missing or match.unexpected or match.mismatched:
        raise NNVizError(
            f"{snap.source} does not fit {type(model).__name__}: {match.describe()}; check that "
            "MODULE:CALLABLE builds the architecture that was trained"
        )
    names = list(state)
    group: list[str] = []
    size = 0
    with torch.no_grad():
        for name in [*names, None]:
            if name is not None:
                spec = state.specs[name] if isinstance(state, StoredTensors) else None
                group.append(name)
                size += spec.nbytes if spec is not None else 0
            if group and (name is None or size > READ_BUDGET):
                got = state.read(group) if isinstance(state, StoredTensors) else {n: state[n] for n in group}
                model.load_state_dict(got, strict=False)
                group, size = [], 0
