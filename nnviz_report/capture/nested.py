"""Walking nested outputs: the tensors in tuples, lists, named tuples, dicts and dataclasses."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch


def iter_leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, leaf)`` for every leaf of a nested output.

    Paths read like Python: ``""`` for a bare value, ``"[0]"``, ``"[1][0]"`` for tuples and
    lists (an LSTM's ``(out, (h, c))``), ``".h"`` for named tuples, ``"['logits']"`` for
    dicts, ``.logits`` for dataclasses.
    """
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from iter_leaves(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):
        for name in obj._fields:
            yield from iter_leaves(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            yield from iter_leaves(item, f"{path}[{i}]")
    elif isinstance(obj, Mapping):
        for key, item in obj.items():
            yield from iter_leaves(item, f"{path}[{key!r}]")
    else:
        yield path, obj


def iter_tensors(obj: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """``(path, tensor)`` for every tensor in a nested output (see :func:`iter_leaves`)."""
    if isinstance(obj, torch.Tensor):  # most module outputs: no generator chain per call
        return iter((("", obj),))
    return ((p, v) for p, v in iter_leaves(obj) if isinstance(v, torch.Tensor))


def describe_non_tensors(obj: Any) -> Iterator[tuple[str, str]]:
    """``(path, type name)`` for the leaves of a nested output that are not tensors."""
    for p, v in iter_leaves(obj):
        if not isinstance(v, torch.Tensor):
            yield p, "None" if v is None else type(v).__name__
