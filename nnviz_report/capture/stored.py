"""Tensors kept in checkpoint files, read when asked for, and the paths they come from."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .._text import one_line, typed_line
from ..errors import NNVizError


def shown(path: str | os.PathLike) -> str:
    """A path as one line of text that can be printed and put in a page: bytes of a name
    that is not UTF-8 (which Python keeps as lone surrogates) are written as ``\\xNN``,
    control characters (a newline in a file name) as escapes too."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


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

    def __contains__(self, name: object) -> bool:
        return name in self.specs  # Mapping's default would read the tensor from disk

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
                f"reading {self.source} failed ({typed_line(exc)}); the file is corrupt or changed since it was opened"
            ) from exc
        out = {}
        for name, stored in zip(names, wanted):
            t = got.get(stored)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != self.specs[name].shape:
                raise NNVizError(
                    f"{self.source} changed while it was read: {one_line(name)} is no longer the "
                    f"{self.specs[name].shape} tensor its index names"
                )
            out[name] = t if t.layout == torch.strided else t.to_dense()  # a sparse tensor saved in a .pt
        return out

    def renamed(self, names: dict[str, str]) -> StoredTensors:
        """The same tensors under new names: ``names`` maps each new name to a current one."""
        return StoredTensors(
            {new: self.specs[old] for new, old in names.items()},
            self._read,
            self.source,
            {new: self._stored.get(old, old) for new, old in names.items()},
        )
