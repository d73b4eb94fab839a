"""Record a model's mutable state and put it back exactly, whatever happens in between."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .. import _compat
from .._text import listed
from ..errors import NNVizError


def _storage_ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # sparse and other layouts without one storage
        return 0


def _version(t: torch.Tensor) -> int | None:
    return None if t.is_inference() else _compat.version(t)  # inference tensors keep no version counter


# Tensor methods whose names end in "_" but write no values.
_NOT_WRITES = frozenset({"requires_grad_", "retain_grad", "share_memory_", "record_stream", "detach_"})
CALL_KINDS: dict[Any, int] = {}  # func -> _NONE / _WRITES_FIRST / ..., learnt on first sight
_NONE, _WRITES_FIRST, _BACKWARD, _RENORMS_WEIGHT = 0, 1, 2, 3
# Functions that write a parameter from inside, where the torch-function mode does not look:
# embedding and embedding_bag with max_norm renormalise the rows they look up in place
# (torch.embedding_renorm_). Their weight is argument 1, max_norm argument 3.
CALL_KINDS.update({f: _RENORMS_WEIGHT for f in (torch.nn.functional.embedding, torch.nn.functional.embedding_bag)})


def _kind(func: Any) -> int:
    kind = CALL_KINDS.get(func)
    if kind is None:
        name = getattr(func, "__name__", "")
        mutable = _compat.writes_first_argument(func)  # torch.ops.aten.add_.Tensor: its schema says
        if mutable is not None:
            kind = _WRITES_FIRST if mutable else _NONE
        elif name == "backward":
            kind = _BACKWARD
        elif name == "__setitem__" or (name.endswith("_") and not name.endswith("__") and name not in _NOT_WRITES):
            kind = _WRITES_FIRST
        else:
            kind = _NONE
        CALL_KINDS[func] = kind
    return kind


class ModelState:
    """Everything :func:`preserve_model_state` puts back, and what the forward pass did.

    Parameters are not copied up front (that would double the model's memory). The
    capture's torch-function mode calls :meth:`before_call` with every torch call of the
    forward pass; a call that writes into a parameter's memory (``p.mul_()``,
    ``p.data.clamp_()``, ``p[0] = 1``, ``out=p``, ``torch.nn.init.*``) first copies that
    parameter's storage (copy on write). A parameter whose tensor was swapped
    (``p.data = ...``) gets its own storage back, which a reference kept here holds intact.
    """

    def __init__(self, model: nn.Module):
        """Modes, hook dicts and which objects the modules hold; the values come with
        :meth:`record_values`."""
        modules = list(model.modules())
        self.model = model
        self.training = [(m, m.training) for m in modules]
        self.hooks = [(d, dict(d)) for m in modules for _, d in _compat.hook_dicts(m)]
        # The capture's own entries in those dicts (mark_own_hooks); None until they are all in.
        self.own_hooks: list[tuple[dict, list]] | None = None
        # Which objects the modules hold (TorchScript modules' slots cannot change from Python).
        plain = [m for m in modules if not isinstance(m, torch.jit.ScriptModule)]
        self.slots = [(m, name, p) for m in plain for name, p in _compat.parameter_slots(m)]
        self.buffer_slots = [(m, name, buf) for m in plain for name, buf in _compat.buffer_slots(m)]
        self.names = {id(p): n for n, p in model.named_parameters()}
        # (parameter, requires_grad, version, an alias of its tensor: same storage, sizes and
        # strides, which also keeps that storage alive)
        self.params: list[tuple[torch.Tensor, bool, int | None, torch.Tensor]] = []
        self.storages: dict[int, torch.Tensor] = {}
        self.saved: dict[int, torch.UntypedStorage] = {}  # storage pointer -> copy before the first write
        # .grad is read only when the forward pass runs a backward pass of its own (then,
        # before it): reading it while another thread's backward pass sets it races in C++.
        self.grads: list[tuple[torch.Tensor, torch.Tensor | None]] | None = None
        self.buffer_values: list[tuple[list[torch.Tensor], torch.Tensor]] = []
        # Sparse and other non-strided buffers (a graph's adjacency): no flat copy; a clone,
        # written back only when the version counter says it was written.
        self.other_buffers: list[tuple[torch.Tensor, int | None, torch.Tensor]] = []
        self.cpu_rng: torch.Tensor | None = None
        self.cuda_rng: list[torch.Tensor] | None = None
        self.foreign_calls = 0  # module calls from other threads (counted by the capture's hooks)

    def mark_own_hooks(self) -> None:
        """What the hook dicts hold beyond their recorded entries now is the capture's: only
        that is removed on restore. A model whose forward pass registers hooks of its own
        (transformers' output capturing, installed once with a flag that says so) keeps
        them, as after any forward pass."""
        self.own_hooks = [(live, [k for k in live if k not in entries]) for live, entries in self.hooks]

    def record_values(self) -> None:
        """Parameters (aliases and version counters, no copies), buffers (a copy) and the
        RNG state."""
        self.params = [(p, p.requires_grad, _version(p), p.detach()) for p in self.model.parameters()]
        self.storages = {ptr: alias for _, _, _, alias in self.params if (ptr := _storage_ptr(alias))}
        buffers = [buf for _, buf in self.model.named_buffers()]
        self.buffer_values = _save_values([b for b in buffers if b.layout == torch.strided])
        self.other_buffers = [(b, _version(b), b.detach().clone()) for b in buffers if b.layout != torch.strided]
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    # -- during the forward pass -----------------------------------------------------------
    def before_call(self, func: Any, args: tuple, kwargs: dict) -> None:
        """Copy the storage of any parameter ``func`` is about to write."""
        kind = _kind(func)
        targets: list[Any] = []
        if kind == _WRITES_FIRST:
            if args:
                targets.append(args[0])
            else:  # torch.nn.init.uniform_(tensor=p): any tensor passed may be the one written
                targets.extend(kwargs.values())
        elif kind == _BACKWARD and self.grads is None:
            self.grads = [(p, p.grad) for p, _, _, _ in self.params]
        elif kind == _RENORMS_WEIGHT:
            max_norm = kwargs.get("max_norm", args[3] if len(args) > 3 else None)
            if max_norm is not None:
                targets.append(kwargs.get("weight", args[1] if len(args) > 1 else None))
        if kwargs:
            targets.append(kwargs.get("out"))
            if kwargs.get("inplace") is True and args:
                targets.append(args[0])
        for target in targets:
            for t in target if isinstance(target, (list, tuple)) else (target,):
                if isinstance(t, torch.Tensor):
                    ptr = _storage_ptr(t)
                    if ptr in self.storages and ptr not in self.saved:
                        self.saved[ptr] = self.storages[ptr].untyped_storage().clone()

    # -- afterwards ------------------------------------------------------------------------
    def foreign(self, versions: bool = True) -> str | None:
        """What shows that someone else changed the model meanwhile (another thread), or
        None. The parameters' version counters (``versions``) can be read only before
        anything is put back."""
        if self.foreign_calls:
            return f"{self.foreign_calls} module calls from another thread"
        if not versions:
            return None
        written = [
            self.names.get(id(p), "?")
            for p, _, version, alias in self.params
            if version is not None
            and _compat.version(p) != version
            and _same_tensor(p, alias)
            and _storage_ptr(alias) not in self.saved
        ]
        if written:
            return f"parameters written where the report cannot see it: {listed(written, 4)}"
        return None

    def restore(self, values: bool = True) -> str | None:
        """Put everything back and say what showed another thread at work (see
        :meth:`foreign`), or None. Values (buffers, parameters, gradients, the RNG) only
        when no other thread was seen, and first: until they are back the model stays in
        the report's mode and the capture's hooks, which count other threads' calls, stay
        on. Then modes, hooks (which removes the capture's), the objects the modules hold
        and ``requires_grad``."""
        foreign = self.foreign()
        if values and foreign is None:
            self._restore_values()
        for m, mode in self.training:
            m.training = mode
        if self.own_hooks is None:  # adding the capture's hooks failed part way: all since go
            for live, entries in self.hooks:
                if list(live.items()) != list(entries.items()):
                    live.clear()
                    live.update(entries)
        else:  # the capture's own; hooks the model's code added or removed meanwhile stay so
            for live, keys in self.own_hooks:
                for key in keys:
                    live.pop(key, None)
        for m, name, p in self.slots:
            _compat.put_parameter(m, name, p)
        for m, name, buf in self.buffer_slots:
            _compat.put_buffer(m, name, buf)
        for param, requires_grad, _, _ in self.params:
            if param.requires_grad != requires_grad:
                param.requires_grad_(requires_grad)
        return foreign or self.foreign(versions=False)  # calls counted while values went back

    def _restore_values(self) -> None:
        # Compare values: batch_norm updates running stats without bumping _version.
        _restore_values(self.buffer_values)
        for buf, version, kept in self.other_buffers:
            if version is None or _version(buf) != version:
                with torch.no_grad():
                    buf.copy_(kept)
        with torch.no_grad():
            for p, _, _, alias in self.params:
                if not _same_tensor(p, alias):
                    p.data = alias
            for p, grad in self.grads or ():
                if p.grad is not grad:
                    p.grad = grad
            for ptr, copy in self.saved.items():
                self.storages[ptr].untyped_storage().copy_(copy)
        if self.cpu_rng is not None and not torch.equal(torch.get_rng_state(), self.cpu_rng):
            torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            now = torch.cuda.get_rng_state_all()
            if len(now) != len(self.cuda_rng) or not all(map(torch.equal, now, self.cuda_rng)):
                torch.cuda.set_rng_state_all(self.cuda_rng)


def _same_tensor(p: torch.Tensor, alias: torch.Tensor) -> bool:
    return (
        _storage_ptr(p) == _storage_ptr(alias)
        and p.shape == alias.shape
        and p.stride() == alias.stride()
        and p.storage_offset() == alias.storage_offset()
        and p.dtype == alias.dtype
    )


@contextlib.contextmanager
def preserve_model_state(
    model: nn.Module, add_hooks: Callable[[ModelState], None] | None = None
) -> Iterator[ModelState]:
    """Restore train/eval mode, hooks, parameters, buffers, ``requires_grad``, ``.grad`` and
    the RNG.

    Inside the block the model may be switched to eval mode, have hooks added and run a
    forward pass (which, in train mode, updates BatchNorm statistics, and may write its
    own parameters: see :class:`ModelState`). On exit, normal or not, every module is as it
    was: the same parameter and buffer objects holding the same values, the same flags,
    the hook dicts without the capture's hooks. What the model's own forward pass adds or
    removes, as any forward pass of it would (hooks it installs once, a buffer it
    registers on first use, attributes), stays.

    One exception: when another thread used the model meanwhile (its module calls reach
    the report's hooks; its optimizer steps change parameters where the report cannot see
    them), only the modes, hooks, module slots and flags are put back, the values are left
    as that thread made them, and an NNVizError says so: putting them back would undo that
    thread's training, and writing tensors another thread is updating is not safe.
    Gradients are not even read unless the forward pass runs a backward pass itself.

    ``add_hooks(state)`` registers the capture's hooks after the hook dicts are recorded
    (they go when those are put back) and before the values are: a call another thread
    makes after the values are recorded is counted by the time they are put back.
    """
    with _one_build_at_a_time(model):
        state = ModelState(model)
        try:
            if add_hooks is not None:
                add_hooks(state)
            state.mark_own_hooks()
            state.record_values()
            yield state
        except Exception as exc:
            foreign = state.restore()
            if foreign is not None:
                raise _concurrent_use(foreign) from exc
            raise
        except BaseException:
            state.restore()
            raise
        foreign = state.restore()
        if foreign is not None:
            raise _concurrent_use(foreign)


_BUSY: dict[int, int] = {}  # id() of every module a build is running the forward pass of -> its thread
_BUSY_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_build_at_a_time(model: nn.Module) -> Iterator[None]:
    """Refuse a second build of a model (or of a module shared with it) while one runs in
    another thread, before touching it: the second would record the first's hooks and eval
    mode as the model's own, and put them back after the first had removed them."""
    ids = {id(m) for m in model.modules()}
    me = threading.get_ident()
    with _BUSY_LOCK:
        owner = next((_BUSY[i] for i in ids if i in _BUSY), None)
        if owner == me:
            raise NNVizError(
                "a report of this model is being built already, by this thread: build_report was called from "
                "inside the model's own forward pass or one of its hooks; call it outside the forward pass"
            )
        if owner is not None:
            raise NNVizError(
                "another report of this model (or of a module it shares) is being built right now, in "
                "another thread; build one report of a model at a time (this one left the model untouched)"
            )
        _BUSY.update(dict.fromkeys(ids, me))
    try:
        yield
    finally:
        with _BUSY_LOCK:
            for i in ids:
                _BUSY.pop(i, None)


def _concurrent_use(what: str) -> NNVizError:
    return NNVizError(
        f"the model changed while the report ran its forward pass ({what}): another thread was "
        "using it, or compiled code the report cannot follow wrote to it; build the report between "
        "training steps, not beside them (meanwhile the model was in the report's mode, eval by "
        "default, for that thread too). Modes and hooks are put back; values, gradients and the "
        "random number generator are left as the other thread made them"
    )


def _save_values(tensors: list[torch.Tensor]) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    """One flat copy per device and dtype, not one per buffer."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return [(ts, torch.cat([t.detach().reshape(-1) for t in ts])) for ts in groups.values()]


def _restore_values(saved: list[tuple[list[torch.Tensor], torch.Tensor]]) -> None:
    """Write back the tensors whose bits changed. (Bits, not values: a NaN equals nothing,
    and rewriting a tensor that did not change bumps its version counter, which fails any
    backward pass that saved it.)"""
    with torch.no_grad():
        for ts, flat in saved:
            if _same_bits(torch.cat([t.detach().reshape(-1) for t in ts]), flat):
                continue
            at = 0
            for t in ts:
                n = t.numel()
                values = flat[at : at + n].view(t.shape)
                if not _same_bits(t.detach().reshape(-1), flat[at : at + n]):
                    with torch.inference_mode(t.is_inference()):  # only writable in there
                        t.copy_(values)
                at += n


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two flat tensors of one dtype hold the same bytes."""
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
