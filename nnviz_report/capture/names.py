"""Tensor names in saved states: the wrappers and prefixes that stand between a checkpoint's
names and the model's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .._text import one_line
from ..errors import NNVizError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


PREFIXES = ("module.", "_orig_mod.")


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


def unwrap_state(obj: Any, source: str, strip: bool = True) -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` dict from a bare state_dict or a ``{"state_dict" |
    "model_state_dict" | "model": ...}`` wrapper (Lightning's ``.ckpt`` is the first), with
    ``module.`` and ``_orig_mod.`` prefixes removed (``strip``)."""
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
    for name, t in state.items():
        if t.is_meta:
            raise NNVizError(
                f"{source}: {one_line(name)} is on the meta device (a shape without values); save the values "
                "model.state_dict() holds"
            )
    if not strip:
        return state
    return {new: state[old] for new, old in strip_prefixes(list(state)).items()}
