"""Checkpoint files and folders, read as data and, where the format allows, tensor by tensor.

A checkpoint is untrusted input. ``.safetensors`` files go through the safetensors package;
pickles (``torch.save`` files, ``torch.distributed.checkpoint`` folders) through
:mod:`.pickled`. Whatever a file holds, reading it ends in a :class:`Snapshot` or an
``NNVizError``.

Formats, and what stays on disk until the comparison asks for a tensor:

- ``.safetensors``: memory-mapped; a group of tensors is mapped, compared, unmapped.
- A Hugging Face folder or ``*.index.json``: ``weight_map`` names the shard of each tensor;
  a group is read from one shard at a time. Shard names must be plain file names.
- ``torch.save`` zip files (``.pt``, ``.pth``, ``.bin``, Lightning ``.ckpt``):
  memory-mapped, reopened for each group. Legacy (pre-1.6, non-zip) pickles are read whole.
- ``torch.distributed.checkpoint`` folders: each group through ``dcp.load``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._text import one_line, typed_line
from ..errors import NNVizError
from .names import strip_prefixes
from .pickled import open_dcp, open_pickle
from .stored import StoredTensors, TensorSpec, native_path, shown

INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
MAX_INDEX_BYTES = 64 * 2**20  # an index of a few hundred thousand tensors; more is not an index

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
        tensors = open_pickle(p)
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
        return open_dcp(p, trust_metadata)
    raise NNVizError(
        f"checkpoint folder {shown(p)} holds none of {', '.join(INDEX_FILES + SINGLE_FILES)} (a Hugging Face "
        "folder) nor .metadata (a torch.distributed.checkpoint folder); give the checkpoint file itself"
    )


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
                        f"checkpoint {shown(p)}: tensor {one_line(name)} has dtype {view.get_dtype()}, "
                        "which this torch cannot hold"
                    )
                specs[name] = TensorSpec(tuple(view.get_shape()), dtype)
            meta = f.metadata() or {}
    except NNVizError:
        raise
    except Exception as exc:
        raise NNVizError(f"checkpoint {shown(p)} is not a readable safetensors file ({typed_line(exc)})") from exc
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
        raise NNVizError(f"{where} is not a JSON checkpoint index ({typed_line(exc)})") from exc
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
            raise NNVizError(f"{where} names shard {one_line(shard)}, which is missing from {shown(folder)}")
        shards[shard] = path
    specs: dict[str, TensorSpec] = {}
    readers: dict[str, Callable[[list[str]], dict[str, torch.Tensor]]] = {}
    for shard, path in shards.items():
        if path.suffix == ".safetensors" or _looks_like_safetensors(path):
            held, _ = _safetensors_specs(path)
            readers[shard] = functools.partial(_read_safetensors, path)
        else:
            opened = open_pickle(path, strip=False)  # prefixes come off once, over the whole map
            held = opened.specs
            readers[shard] = opened.read
        for name, file in weight_map.items():
            if file == shard:
                if name not in held:
                    raise NNVizError(f"{where} puts {one_line(name)} in {one_line(shard)}, which does not hold it")
                specs[name] = held[name]

    def read(names: list[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for shard in dict.fromkeys(weight_map[n] for n in names):  # one shard at a time
            out.update(readers[shard]([n for n in names if weight_map[n] == shard]))
        return out

    stored = StoredTensors(specs, read, f"checkpoint {shown(folder)}")
    return stored.renamed(strip_prefixes(list(specs)))
