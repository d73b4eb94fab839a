"""Parameter snapshots: a model's parameters and buffers by name, in memory or in a file.

Checkpoint files and folders are read by :mod:`.checkpoints`; a snapshot can also be
written to disk (``snapshot(model, path=...)``) and then holds no copy in memory. How a
saved state lines up with a model is :mod:`.matching`'s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from .. import _compat
from ..errors import NNVizError
from .checkpoints import load_checkpoint
from .matching import align, match_state, weights_of
from .names import unwrap_state
from .stored import StoredTensors, shown

__all__ = ["Snapshot", "load_checkpoint", "load_into", "normalise_state", "snapshot", "unwrap_model"]

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
            break
    lazy = has_lazy_parameters(model)
    if lazy is not None:
        raise NNVizError(
            f"the model has lazy parameters not made yet ({lazy}: a LazyLinear or other Lazy module before its "
            "first call); run it once first, model(example_input), so that they get their shapes and values"
        )
    return model


def has_lazy_parameters(model: nn.Module) -> str | None:
    """The name of a parameter or buffer of a Lazy module not called yet (no shape, no
    values), or None."""
    return next((n for n, t in (*model.named_parameters(), *model.named_buffers()) if is_lazy(t)), None)


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

    def write(f: BinaryIO) -> None:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        with torch.no_grad():
            for _, t in order:
                if t.numel():
                    cpu = t.detach().to("cpu").contiguous().reshape(-1)
                    f.write(cpu.view(torch.uint8).numpy().data)
                    del cpu

    from ..output import replace_file

    replace_file(target, write, Path(shown(target)))


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
                got = {n: t if t.layout == torch.strided else t.to_dense() for n, t in got.items()}  # sparse
                model.load_state_dict(got, strict=False)
                group, size = [], 0
