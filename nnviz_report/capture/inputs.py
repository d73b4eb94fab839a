"""The example input: copied onto the model's device, as the model is called with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import NNVizError


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def prepare_inputs(
    example_input: Any, device: torch.device, autograd: bool = True
) -> tuple[tuple, dict, list[tuple[str, torch.Tensor]]]:
    """Copies of the example input on the model's device: a tensor is called as
    ``model(x)``, a tuple or list as ``model(*x)``, a dict (any mapping) as ``model(**x)``.

    Tensors are copied at any depth: in lists, tuples, named tuples and dicts inside the
    input (``([img1, img2],)`` for a detector), in containers of the same types; a tensor
    that appears twice is one copy. Floating-point copies are leaves that require grad, so
    the autograd graph starts at the input; the model gets a clone of that leaf, which it
    may modify in place. The caller's tensors and containers are never touched.
    """
    labelled: list[tuple[str, torch.Tensor]] = []
    copies: dict[int, torch.Tensor] = {}
    path: set[int] = set()

    def copy(value: Any, label: str) -> Any:
        if isinstance(value, torch.Tensor):
            if value.is_meta:
                raise NNVizError(
                    f"the example input's tensor {label} is on the meta device (a shape {tuple(value.shape)} without "
                    "values), so there is nothing to run; pass real values, e.g. torch.randn(shape)"
                )
            if id(value) not in copies:
                t = value.detach().to(device=device, copy=True)
                labelled.append((label, t))
                if autograd and (t.is_floating_point() or t.is_complex()):
                    t.requires_grad_(True)
                    t = t.clone()
                copies[id(value)] = t
            return copies[id(value)]
        if not isinstance(value, (tuple, list, Mapping)):
            return value
        if id(value) in path:
            raise NNVizError(f"example input {label} contains itself; pass tensors in plain lists, tuples or dicts")
        path.add(id(value))
        try:
            if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
                return type(value)(*(copy(getattr(value, f), f"{label}.{f}") for f in value._fields))
            if isinstance(value, Mapping):
                return _same_kind(value, {k: copy(v, f"{label}[{k!r}]") for k, v in value.items()}, dict)
            return _same_kind(
                value,
                [copy(v, f"{label}[{i}]") for i, v in enumerate(value)],
                tuple if isinstance(value, tuple) else list,
            )
        finally:
            path.discard(id(value))

    if isinstance(example_input, torch.Tensor):
        return (copy(example_input, "input"),), {}, labelled
    if isinstance(example_input, (tuple, list)):
        args = tuple(copy(v, f"input[{i}]") for i, v in enumerate(example_input))
        return args, {}, labelled
    if isinstance(example_input, Mapping):
        kwargs = {k: copy(v, f"input[{k!r}]") for k, v in example_input.items()}
        return (), kwargs, labelled
    raise NNVizError(
        f"example input is a {type(example_input).__name__}; pass a tensor, a tuple/list of "
        "positional inputs, or a dict of keyword inputs"
    )


def _same_kind(original: Any, items: Any, plain: type) -> Any:
    """``items`` in a container of ``original``'s type where it can be built from them (a
    subclass whose constructor wants something else gets the plain type)."""
    try:
        return type(original)(items)
    except Exception:  # noqa: BLE001 - any constructor's error: the plain container does the job
        return plain(items)


def inputs_text(inputs: Sequence[tuple[str, torch.Tensor]]) -> str:
    return ", ".join(f"{label}: {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for label, t in inputs)
