"""Record a model's mutable state and put it back exactly, whatever happens in between."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn


def _hook_dicts(module: nn.Module) -> list[tuple[str, dict]]:
    # Every per-module hook registry (_forward_hooks, _forward_pre_hooks_with_kwargs,
    # _forward_hooks_always_called, _backward_hooks, state-dict hooks, ...), found by name so a
    # registry added by a later torch release is covered too.
    return [
        (name, value)
        for name, value in vars(module).items()
        if "hooks" in name and isinstance(value, dict)
    ]


@contextlib.contextmanager
def preserve_model_state(model: nn.Module) -> Iterator[None]:
    """Restore train/eval mode, hooks, buffers, ``requires_grad``, ``.grad`` and the RNG.

    Inside the block the model may be switched to eval mode, have hooks added and run a
    forward pass (which, in train mode, updates BatchNorm statistics). On exit, normal or
    not, every module is as it was: the same hook dicts with the same entries in the same
    order, the same buffer objects holding the same values, the same flags.

    Parameters are not copied (that would double the model's memory): a forward pass does
    not write to them. If one did so in place, a warning names it.
    """
    modules = list(model.modules())
    training = [(m, m.training) for m in modules]
    hooks = [(d, dict(d)) for m in modules for _, d in _hook_dicts(m)]
    params = list(model.parameters())
    param_state = [(p, p.requires_grad, p.grad, p._version) for p in params]
    buffers = [(m, name, buf) for m in modules for name, buf in m._buffers.items()]
    buffer_values = _save_values([buf for _, _, buf in buffers if buf is not None])
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for m, mode in training:
            m.training = mode
        for live, entries in hooks:
            if list(live.items()) != list(entries.items()):
                live.clear()
                live.update(entries)
        for m, name, buf in buffers:
            m._buffers[name] = buf
        # Compare values: batch_norm updates running stats without bumping _version.
        _restore_values(buffer_values)
        names = {id(p): n for n, p in model.named_parameters()}
        for p, requires_grad, grad, version in param_state:
            if p.requires_grad != requires_grad:
                p.requires_grad_(requires_grad)
            if p.grad is not grad:
                p.grad = grad
            if p._version != version:
                warnings.warn(
                    f"the model's forward pass modified parameter {names.get(id(p), '?')!r} in "
                    "place; nnviz-report cannot undo that",
                    RuntimeWarning,
                    stacklevel=3,
                )
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _save_values(tensors: list[torch.Tensor]) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    """One flat copy per device and dtype (ResNet-50's 159 buffers: 2 copies, not 159)."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return [(ts, torch.cat([t.detach().reshape(-1) for t in ts])) for ts in groups.values()]


def _restore_values(saved: list[tuple[list[torch.Tensor], torch.Tensor]]) -> None:
    with torch.no_grad():
        for ts, flat in saved:
            if torch.equal(torch.cat([t.detach().reshape(-1) for t in ts]), flat):
                continue
            at = 0
            for t in ts:
                n = t.numel()
                values = flat[at:at + n].view(t.shape)
                if not torch.equal(t, values):
                    t.copy_(values)
                at += n
