"""Checkpoints that are pickles: ``torch.save`` files and ``torch.distributed.checkpoint``
folders, read as data.

A ``torch.save`` file is opened with ``torch.load(weights_only=True)`` and never retried
without it; a file that needs code to unpickle is refused with what it wanted to import.
Zip files are memory-mapped and opened again for each group of tensors read; legacy (pre-1.6,
non-zip) pickles are read whole. A ``torch.distributed.checkpoint`` folder's ``.metadata``
is a plain pickle, read only when the caller says it trusts the folder; then each group of
tensors comes through ``dcp.load``.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from .._text import typed_line
from ..errors import NNVizError
from .names import strip_prefixes, unwrap_state
from .stored import StoredTensors, TensorSpec, native_path, shown

MAX_PICKLE_BYTES = 64 * 2**20  # a Lightning checkpoint's data.pkl read for its strings, at most
TRUST_HINT = "--trust-checkpoint-metadata (Python: trust_metadata=True)"


_CODE = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL)\s+([\w.]+)|Unsupported class ([\w.]+)", re.I)


def _needs_code(exc: Exception) -> str | None:
    """What a refused pickle wanted to import or call, when that is why it was refused."""
    m = _CODE.search(str(exc))
    return (m.group(1) or m.group(2)) if m else None


def _torch_load(p: Path) -> Any:
    """``torch.load(weights_only=True)`` on the CPU; zip files memory-mapped."""
    mmap = zipfile.is_zipfile(p)
    with native_path(p) as native:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. legacy-format notes: the errors below say what matters
            return torch.load(native, map_location="cpu", weights_only=True, mmap=mmap)


def _load_pickle(p: Path) -> Any:
    where = shown(p)
    try:
        return _torch_load(p)
    except pickle.UnpicklingError as exc:
        culprit = _needs_code(exc)
        if culprit:
            raise NNVizError(_refusal(p, culprit)) from exc
        detail = re.search(r"Unsupported operand \d+|invalid load key[^.]*", str(exc))
        raise NNVizError(
            f"checkpoint {where} is not a PyTorch checkpoint or is corrupt "
            f"({detail.group(0) if detail else 'unreadable pickle'})"
        ) from exc
    except NNVizError:
        raise
    except Exception as exc:  # whatever a damaged file makes the reader raise: no code ran
        raise NNVizError(f"checkpoint {where} is not a PyTorch checkpoint or is corrupt ({typed_line(exc)})") from exc


def _refusal(p: Path, culprit: str) -> str:
    where = shown(p)
    if _is_lightning(p):
        return (
            f"refused to load Lightning checkpoint {where}: its hyper-parameters (or other extras) reference "
            f"{culprit}, and unpickling that would run code; checkpoints are read with weights_only=True. "
            "Keep such objects out of it (save_hyperparameters(ignore=[...]) or plain values), or extract the "
            "weights from a copy you trust: torch.save(torch.load(path, weights_only=False)['state_dict'], "
            "'weights.pt')"
        )
    return (
        f"refused to load checkpoint {where}: unpickling it would run code (it references "
        f"{culprit}); checkpoints are read with weights_only=True, which accepts only tensors "
        "and plain containers. Re-save it with torch.save(model.state_dict(), path)"
    )


def _is_lightning(p: Path) -> bool:
    """Whether a torch.save zip is a Lightning checkpoint, from the strings in its pickle
    (read as opcodes: nothing is executed)."""
    try:
        with zipfile.ZipFile(p) as z:
            name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None or z.getinfo(name).file_size > MAX_PICKLE_BYTES:
                return False
            data = z.read(name)
        for _, arg, _ in pickletools.genops(data):
            if isinstance(arg, str) and arg in ("pytorch-lightning_version", "hparams_name", "hyper_parameters"):
                return True
    except Exception:  # noqa: BLE001 - whatever a damaged zip or pickle raises: not known as Lightning's
        return False
    return False


def open_pickle(p: Path, strip: bool = True) -> StoredTensors:
    """A torch.save file's tensors, read on demand; ``strip``: with ``module.`` /
    ``_orig_mod.`` prefixes removed (not for one shard of many: its keys may all start with
    a prefix that the other shards' keys do not)."""
    source = f"checkpoint {shown(p)}"
    state = unwrap_state(_load_pickle(p), source, strip)
    specs = {k: TensorSpec(tuple(v.shape), v.dtype) for k, v in state.items()}
    if not zipfile.is_zipfile(p):  # a legacy pickle: read whole, kept in memory
        whole = state
        return StoredTensors(specs, lambda names: {n: whole[n] for n in names}, source)
    del state  # memory-mapped tensors: opened again, and let go, for each group that is read

    def read(names: list[str]) -> dict[str, torch.Tensor]:
        again = unwrap_state(_load_pickle(p), source, strip)
        return {n: again[n] for n in names}

    return StoredTensors(specs, read, source)


def open_dcp(folder: Path, trust_metadata: bool) -> StoredTensors:
    where = shown(folder)
    if not trust_metadata:
        raise NNVizError(
            f"{where} is a torch.distributed.checkpoint folder, whose .metadata file is a plain pickle that can "
            f"run code when read; if you trust where it came from, pass {TRUST_HINT}, or convert it with "
            "torch.distributed.checkpoint.format_utils.dcp_to_torch_save"
        )
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    try:
        with native_path(folder) as native:
            metadata = FileSystemReader(native).read_metadata()
        entries = metadata.state_dict_metadata.items()
        specs = {
            str(k): TensorSpec(tuple(int(s) for s in m.size), m.properties.dtype)
            for k, m in entries
            if isinstance(m, TensorStorageMetadata)
        }
    except Exception as exc:
        raise NNVizError(f"{where} is not a readable torch.distributed.checkpoint folder ({typed_line(exc)})") from exc

    def read(names: list[str]) -> dict[str, torch.Tensor]:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.api import CheckpointException

        state = {n: torch.empty(specs[n].shape, dtype=specs[n].dtype) for n in names}
        with native_path(folder) as native, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "assuming the intent is to load in a single process": it is
            try:
                dcp.load(state, storage_reader=FileSystemReader(native), no_dist=True)
            except CheckpointException as exc:  # a BaseException: past every `except Exception`
                failures = [f[0] if isinstance(f, tuple) else f for f in getattr(exc, "failures", {}).values()]
                cause = failures[0] if failures and isinstance(failures[0], BaseException) else exc
                raise NNVizError(
                    f"reading {where} failed ({typed_line(cause)}); a file of the checkpoint is missing or corrupt"
                ) from None
        return state

    stored = StoredTensors(specs, read, f"checkpoint {where}")
    return stored.renamed(strip_prefixes(list(specs)))
