"""Checkpoint files and folders, read as data and, where the format allows, tensor by tensor.

A checkpoint is untrusted input. Pickles are opened with ``torch.load(weights_only=True)``
and never retried without it; ``.safetensors`` files go through the safetensors package;
a ``torch.distributed.checkpoint`` folder's ``.metadata`` (a plain pickle) is read only
when the caller says it trusts the folder. Whatever a file holds, reading it ends in a
:class:`Snapshot` or an ``NNVizError``.

Formats, and what stays on disk until the comparison asks for a tensor:

- ``.safetensors``: memory-mapped; a group of tensors is mapped, compared, unmapped.
- A Hugging Face folder or ``*.index.json``: ``weight_map`` names the shard of each tensor;
  a group is read from one shard at a time. Shard names must be plain file names.
- ``torch.save`` zip files (``.pt``, ``.pth``, ``.bin``, Lightning ``.ckpt``):
  memory-mapped, reopened for each group. Legacy (pre-1.6, non-zip) pickles are read whole.
- ``torch.distributed.checkpoint`` folders: each group through ``dcp.load``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import NNVizError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
PREFIXES = ("module.", "_orig_mod.")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
MAX_INDEX_BYTES = 64 * 2**20  # an index of a few hundred thousand tensors; more is not an index
TRUST_HINT = "--trust-checkpoint-metadata (Python: trust_metadata=True)"

# safetensors dtype names -> torch dtypes (those torch has).
SAFETENSORS_DTYPES = {
    name: getattr(torch, attr)
    for name, attr in (
        ("F64", "float64"),
        ("F32", "float32"),
        ("F16", "float16"),
        ("BF16", "bfloat16"),
        ("I64", "int64"),
        ("I32", "int32"),
        ("I16", "int16"),
        ("I8", "int8"),
        ("U8", "uint8"),
        ("U16", "uint16"),
        ("U32", "uint32"),
        ("U64", "uint64"),
        ("BOOL", "bool"),
        ("F8_E4M3", "float8_e4m3fn"),
        ("F8_E5M2", "float8_e5m2"),
        ("C64", "complex64"),
    )
    if hasattr(torch, attr)
}


def shown(path: str | os.PathLike) -> str:
    """A path as one line of text that can be printed and put in a page: bytes of a name
    that is not UTF-8 (which Python keeps as lone surrogates) are written as ``\\xNN``,
    control characters (a newline in a file name) as escapes too."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * self.dtype.itemsize


class StoredTensors(Mapping):
    """A checkpoint's tensors by name, read from disk when asked for.

    Names, shapes and dtypes come from the file's index up front; :meth:`read` loads a
    group of tensors at once (one opening of each file it needs). ``self[name]`` works as
    for a dict and reads one tensor.
    """

    def __init__(
        self,
        specs: dict[str, TensorSpec],
        read: Callable[[list[str]], dict[str, torch.Tensor]],
        source: str,
        stored: dict[str, str] | None = None,
    ):
        self.specs = specs
        self.source = source
        self._read = read
        self._stored = stored or {}  # public name -> name in the file, where they differ

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.specs:
            raise KeyError(name)
        return self.read([name])[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __repr__(self) -> str:
        return f"StoredTensors({self.source!r}, {len(self.specs)} tensors)"

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        if not names:
            return {}
        wanted = [self._stored.get(n, n) for n in names]
        try:
            got = self._read(wanted)
        except NNVizError:
            raise
        except Exception as exc:
            raise NNVizError(
                f"reading {self.source} failed ({_first_line(exc)}); the file is corrupt or changed since it was opened"
            ) from exc
        out = {}
        for name, stored in zip(names, wanted):
            t = got.get(stored)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != self.specs[name].shape:
                raise NNVizError(
                    f"{self.source} changed while it was read: {name} is no longer the "
                    f"{self.specs[name].shape} tensor its index names"
                )
            out[name] = t
        return out

    def renamed(self, names: dict[str, str]) -> StoredTensors:
        """The same tensors under new names: ``names`` maps each new name to a current one."""
        return StoredTensors(
            {new: self.specs[old] for new, old in names.items()},
            self._read,
            self.source,
            {new: self._stored.get(old, old) for new, old in names.items()},
        )


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- names: wrappers and prefixes ---------------------------------------------------------------


def strip_prefixes(names: list[str]) -> dict[str, str]:
    """New name -> old name, with ``module.`` (DDP) and ``_orig_mod.`` (torch.compile)
    removed where every name carries them."""
    mapping = {n: n for n in names}
    changed = True
    while changed and mapping:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in mapping):
                mapping = {k[len(prefix) :]: v for k, v in mapping.items()}
                changed = True
    return mapping


def unwrap_state(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` dict from a bare state_dict or a ``{"state_dict" |
    "model_state_dict" | "model": ...}`` wrapper (Lightning's ``.ckpt`` is the first), with
    ``module.`` and ``_orig_mod.`` prefixes removed."""
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
    if not state and obj:
        keys = ", ".join(str(k) for k in list(obj)[:8])
        raise NNVizError(
            f"{source} holds no tensors (top-level keys: {keys}); expected a state_dict or "
            f"a dict with one of {', '.join(WRAPPER_KEYS)}"
        )
    return {new: state[old] for new, old in strip_prefixes(list(state)).items()}


# -- entry point --------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike, label: str | None = None, *, trust_metadata: bool = False) -> Any:
    """Open a checkpoint file or folder as a Snapshot whose tensors are read on demand
    (on the CPU, wherever they were saved). ``trust_metadata`` allows reading a
    ``torch.distributed.checkpoint`` folder, whose ``.metadata`` is a plain pickle."""
    from .snapshot import Snapshot

    p = Path(path)
    name = shown(p)
    if not p.exists():
        raise NNVizError(f"checkpoint not found: {name}; check the path")
    if p.is_dir():
        tensors = _open_folder(p, trust_metadata)
    elif not p.is_file():
        raise NNVizError(f"checkpoint {name} is not a file")
    elif p.stat().st_size == 0:
        raise NNVizError(f"checkpoint {name} is empty; it was not written completely")
    elif p.name.endswith(".index.json"):
        tensors = _open_index(p)
    elif p.suffix == ".safetensors" or _looks_like_safetensors(p):
        tensors = _open_safetensors(p)
    else:
        tensors = _open_pickle(p)
    if not tensors:
        raise NNVizError(f"checkpoint {name} holds no tensors")
    return Snapshot(tensors, label=label or shown(p.name if p.is_dir() else p.stem), source=name)


def _open_folder(p: Path, trust_metadata: bool) -> Any:
    for index in INDEX_FILES:
        if (p / index).is_file():
            return _open_index(p / index)
    for single in SINGLE_FILES:
        if (p / single).is_file():
            return load_checkpoint(p / single).tensors
    if (p / ".metadata").is_file():
        return _open_dcp(p, trust_metadata)
    raise NNVizError(
        f"checkpoint folder {shown(p)} holds none of {', '.join(INDEX_FILES + SINGLE_FILES)} (a Hugging Face "
        "folder) nor .metadata (a torch.distributed.checkpoint folder); give the checkpoint file itself"
    )


@contextlib.contextmanager
def native_path(p: Path) -> Iterator[str]:
    """A name for ``p`` that libraries written in C++ or Rust accept: ``p`` itself, or, when
    its name is not valid UTF-8, ``/proc/self/fd/N`` of a descriptor held open meanwhile."""
    name = os.fspath(p)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield name
        return
    fd = os.open(p, os.O_RDONLY)
    try:
        alias = f"/proc/self/fd/{fd}"
        if not os.path.exists(alias):
            raise NNVizError(f"cannot read {shown(p)} on this system: its name is not valid UTF-8; rename it")
        yield alias
    finally:
        os.close(fd)


# -- safetensors --------------------------------------------------------------------------------


def _looks_like_safetensors(p: Path) -> bool:
    with p.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < p.stat().st_size


def _safetensors_specs(p: Path) -> tuple[dict[str, TensorSpec], dict[str, str]]:
    """The tensors a safetensors file holds (from its header) and its text metadata."""
    from safetensors import safe_open

    specs = {}
    try:
        with native_path(p) as native, safe_open(native, framework="pt") as f:
            for name in f.keys():
                view = f.get_slice(name)
                dtype = SAFETENSORS_DTYPES.get(view.get_dtype())
                if dtype is None:
                    raise NNVizError(
                        f"checkpoint {shown(p)}: tensor {name} has dtype {view.get_dtype()}, "
                        "which this torch cannot hold"
                    )
                specs[name] = TensorSpec(tuple(view.get_shape()), dtype)
            meta = f.metadata() or {}
    except NNVizError:
        raise
    except Exception as exc:
        raise NNVizError(f"checkpoint {shown(p)} is not a readable safetensors file ({_first_line(exc)})") from exc
    return specs, meta


def _read_safetensors(p: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors, memory-mapped: their pages are read when used and let go when
    the tensors are freed."""
    from safetensors import safe_open

    with native_path(p) as native, safe_open(native, framework="pt") as f:
        return {n: f.get_tensor(n) for n in names}


def _open_safetensors(p: Path) -> StoredTensors:
    specs, _ = _safetensors_specs(p)
    source = f"checkpoint {shown(p)}"
    stored = StoredTensors(specs, lambda names: _read_safetensors(p, names), source)
    return stored.renamed(strip_prefixes(list(specs)))


# -- Hugging Face shards ------------------------------------------------------------------------


def _open_index(index: Path) -> StoredTensors:
    """``model.safetensors.index.json`` (or ``pytorch_model.bin.index.json``): ``weight_map``
    maps each tensor to a shard file in the same folder."""
    where = shown(index)
    if index.stat().st_size > MAX_INDEX_BYTES:
        raise NNVizError(f"{where} is larger than {MAX_INDEX_BYTES >> 20} MB; not a checkpoint index")
    try:
        doc = json.loads(index.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise NNVizError(f"{where} is not a JSON checkpoint index ({_first_line(exc)})") from exc
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise NNVizError(f"{where} has no weight_map of tensor names to shard files; not a checkpoint index")
    folder = index.parent
    shards: dict[str, Path] = {}
    for shard in dict.fromkeys(weight_map.values()):
        # A plain file name: no "..", no absolute path, no subfolder. (Links are followed:
        # the Hugging Face cache links each file of a snapshot folder to ../../blobs/.)
        path = folder / shard
        if shard in ("", ".", "..") or "/" in shard or "\\" in shard or shard != Path(shard).name:
            raise NNVizError(
                f"{where} names shard {shard!r}, which is not a file in {shown(folder)}; "
                "shards must sit beside their index"
            )
        if not path.is_file():
            raise NNVizError(f"{where} names shard {shard}, which is missing from {shown(folder)}")
        shards[shard] = path
    specs: dict[str, TensorSpec] = {}
    readers: dict[str, Callable[[list[str]], dict[str, torch.Tensor]]] = {}
    for shard, path in shards.items():
        if path.suffix == ".safetensors" or _looks_like_safetensors(path):
            held, _ = _safetensors_specs(path)
            readers[shard] = lambda names, path=path: _read_safetensors(path, names)
        else:
            opened = _open_pickle(path)
            held = opened.specs
            readers[shard] = opened.read
        for name, file in weight_map.items():
            if file == shard:
                if name not in held:
                    raise NNVizError(f"{where} puts {name} in {shard}, which does not hold it")
                specs[name] = held[name]

    def read(names: list[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for shard in dict.fromkeys(weight_map[n] for n in names):  # one shard at a time
            out.update(readers[shard]([n for n in names if weight_map[n] == shard]))
        return out

    stored = StoredTensors(specs, read, f"checkpoint {shown(folder)}")
    return stored.renamed(strip_prefixes(list(specs)))


# -- torch.save pickles -------------------------------------------------------------------------

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
        raise NNVizError(f"checkpoint {where} is not a PyTorch checkpoint or is corrupt ({_first_line(exc)})") from exc


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
            if name is None or z.getinfo(name).file_size > MAX_INDEX_BYTES:
                return False
            data = z.read(name)
        for _, arg, _ in pickletools.genops(data):
            if isinstance(arg, str) and arg in ("pytorch-lightning_version", "hparams_name", "hyper_parameters"):
                return True
    except Exception:  # noqa: BLE001 - whatever a damaged zip or pickle raises: not known as Lightning's
        return False
    return False


def _open_pickle(p: Path) -> StoredTensors:
    source = f"checkpoint {shown(p)}"
    state = unwrap_state(_load_pickle(p), source)
    specs = {k: TensorSpec(tuple(v.shape), v.dtype) for k, v in state.items()}
    if not zipfile.is_zipfile(p):  # a legacy pickle: read whole, kept in memory
        whole = state
        return StoredTensors(specs, lambda names: {n: whole[n] for n in names}, source)
    del state  # memory-mapped tensors: opened again, and let go, for each group that is read

    def read(names: list[str]) -> dict[str, torch.Tensor]:
        again = unwrap_state(_load_pickle(p), source)
        return {n: again[n] for n in names}

    return StoredTensors(specs, read, source)


# -- torch.distributed.checkpoint ---------------------------------------------------------------


def _open_dcp(folder: Path, trust_metadata: bool) -> StoredTensors:
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
        raise NNVizError(f"{where} is not a readable torch.distributed.checkpoint folder ({_first_line(exc)})") from exc

    def read(names: list[str]) -> dict[str, torch.Tensor]:
        import torch.distributed.checkpoint as dcp

        state = {n: torch.empty(specs[n].shape, dtype=specs[n].dtype) for n in names}
        with native_path(folder) as native, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "assuming the intent is to load in a single process": it is
            dcp.load(state, storage_reader=FileSystemReader(native), no_dist=True)
        return state

    stored = StoredTensors(specs, read, f"checkpoint {where}")
    return stored.renamed(strip_prefixes(list(specs)))
