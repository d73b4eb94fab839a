"""Parameter snapshots and checkpoint files, always read as data.

A checkpoint is untrusted input: pickles are opened with ``torch.load(weights_only=True)``
and never retried without it; ``.safetensors`` files go through the safetensors package.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import NNVizError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class Snapshot:
    """CPU copies of a model's parameters and buffers, by qualified name."""

    tensors: Mapping[str, torch.Tensor]
    label: str = "before"
    source: str = "snapshot()"

    def __repr__(self) -> str:
        return f"Snapshot(label={self.label!r}, source={self.source!r}, tensors={len(self.tensors)})"


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module that holds the weights: DataParallel/DDP ``.module``, torch.compile's
    ``._orig_mod`` (whose names carry no prefix)."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def snapshot(model: nn.Module, label: str = "before") -> Snapshot:
    """Copy every parameter and buffer of ``model`` to the CPU, by name.

    Take one before training (``snap = nnviz_report.snapshot(model)``) and pass it as
    ``build_report(..., before=snap)``; the copy does not follow later updates.
    """
    if not isinstance(model, nn.Module):
        raise NNVizError(f"snapshot() needs an nn.Module, not {type(model).__name__}")
    model = unwrap_model(model)
    with torch.no_grad():
        state = {
            name: t.detach().to("cpu", copy=True)
            for name, t in model.state_dict(keep_vars=True).items()
            if isinstance(t, torch.Tensor)
        }
    return Snapshot(state, label=label, source="snapshot()")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and state:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def normalise_state(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` dict from a bare state_dict, a ``{"state_dict" |
    "model_state_dict" | "model": ...}`` wrapper, with ``module.`` (DDP) and ``_orig_mod.``
    (torch.compile) prefixes removed."""
    if isinstance(obj, Snapshot):
        obj = obj.tensors
    if isinstance(obj, nn.Module):
        return _strip_prefixes({k: v for k, v in obj.state_dict().items()})
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise NNVizError(
            f"{source} holds a {type(obj).__name__}, not a state_dict; save "
            "model.state_dict() (or {'state_dict': model.state_dict()}) instead"
        )
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        keys = ", ".join(str(k) for k in list(obj)[:8]) or "none"
        raise NNVizError(
            f"{source} holds no tensors (top-level keys: {keys}); expected a state_dict or "
            f"a dict with one of {', '.join(WRAPPER_KEYS)}"
        )
    return _strip_prefixes(state)


_CODE = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL)\s+([\w.]+)|Unsupported class ([\w.]+)", re.I)


def _needs_code(exc: Exception) -> str | None:
    """What a refused pickle wanted to import or call, when that is why it was refused."""
    m = _CODE.search(str(exc))
    return (m.group(1) or m.group(2)) if m else None


def load_checkpoint(path: str | Path, label: str | None = None) -> Snapshot:
    """Read a checkpoint file (``.pt``/``.pth``/``.bin`` pickle or ``.safetensors``) as a
    Snapshot on the CPU, wherever its tensors were saved (CUDA included)."""
    p = Path(path)
    source = str(p)
    if not p.exists():
        raise NNVizError(f"checkpoint not found: {source}; check the path")
    if not p.is_file():
        raise NNVizError(f"checkpoint {source} is not a file")
    if p.stat().st_size == 0:
        raise NNVizError(f"checkpoint {source} is empty; it was not written completely")
    if p.suffix == ".safetensors" or _looks_like_safetensors(p):
        obj: Any = _load_safetensors(p)
    else:
        obj = _load_pickle(p)
    state = normalise_state(obj, f"checkpoint {source}")
    return Snapshot(state, label=label or p.stem, source=source)


def _looks_like_safetensors(p: Path) -> bool:
    with p.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < p.stat().st_size


def _load_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise NNVizError(f"checkpoint {p} is not a readable safetensors file ({exc})") from exc


def _load_pickle(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p))
    except pickle.UnpicklingError as exc:
        culprit = _needs_code(exc)
        if culprit:
            raise NNVizError(
                f"refused to load checkpoint {p}: unpickling it would run code (it references "
                f"{culprit}); checkpoints are read with weights_only=True, which accepts only tensors "
                "and plain containers. Re-save it with torch.save(model.state_dict(), path)"
            ) from exc
        detail = re.search(r"Unsupported operand \d+|invalid load key[^.]*", str(exc))
        raise NNVizError(
            f"checkpoint {p} is not a PyTorch checkpoint or is corrupt "
            f"({detail.group(0) if detail else 'unreadable pickle'})"
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise NNVizError(f"checkpoint {p} is not a PyTorch checkpoint or is corrupt ({first})") from exc


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass(frozen=True)
class StateMatch:
    missing: list[str]  # in the model, not in the state
    unexpected: list[str]  # in the state, not in the model
    mismatched: list[str]  # "name: state (a, b) vs model (c, d)"
    matched: int

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing {len(self.missing)} ({_names(self.missing)})")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)} ({_names(self.unexpected)})")
        if self.mismatched:
            parts.append(f"shape mismatch {len(self.mismatched)} ({_names(self.mismatched, 3)})")
        return "; ".join(parts)


def match_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> StateMatch:
    expected = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    return StateMatch(missing, unexpected, mismatched, len(expected) - len(missing) - len(mismatched))


def load_into(model: nn.Module, snap: Snapshot) -> None:
    """Load trained weights into a freshly built model; every key must match."""
    match = match_state(model, snap.tensors)
    if match.missing or match.unexpected or match.mismatched:
        raise NNVizError(
            f"{snap.source} does not fit {type(model).__name__}: {match.describe()}; check that "
            "MODULE:CALLABLE builds the architecture that was trained"
        )
    with torch.no_grad():
        model.load_state_dict(dict(snap.tensors), strict=True)
