"""The module calls of the forward pass as they nest, and which call created each autograd
node; where the model's input enters the autograd graph when it is not a leaf of it."""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import _compat
from .distributed import class_name, is_sharded
from .nested import iter_tensors

if TYPE_CHECKING:
    from .activations.recorder import Started


@dataclass
class ModuleCall:
    """One call of one module. ``leaf`` and ``output_shape`` are set when it returns
    (:meth:`CallTree.exit`)."""

    id: int
    name: str  # qualified name; "" for the root module
    type: str
    call: int  # 0-based count of calls of this module
    parent: int | None  # id of the calling module's call
    leaf: bool = True  # ran no child module
    output_shape: list[int] | None = None
    params: int = 0  # parameters the module holds itself (not its children's)


@dataclass
class Frame:
    """A module call on the stack: from its forward pre-hook to its forward hook."""

    call: ModuleCall
    module: nn.Module
    boundary: set[int]  # ids of the autograd nodes of its inputs
    boundary_refs: list[Any]  # those nodes, kept alive so that their ids stay theirs
    activation: Started | None = None  # the call of an activation module, being measured
    children: int = 0


class CallTree:
    """The stack of module calls and the list of every call, in the order they started;
    ``owner`` maps ``id(autograd node)`` to the call that created it, ``keepalive`` holds
    those nodes (their ids stay valid). Under FSDP ``gathered`` collects the full parameters
    each module used (autograd recorded those, not the shards the model holds after)."""

    def __init__(self, model: nn.Module, names: dict[nn.Module, str]):
        self.names = names
        self.param_ids = {id(p) for p in model.parameters()}
        self.gathered: dict[str, torch.Tensor] | None = {} if is_sharded(model) else None
        self.stack: list[Frame] = []
        self.calls: list[ModuleCall] = []
        self.counts: Counter[str] = Counter()
        self.owner: dict[int, int] = {}
        self.keepalive: list[Any] = []

    def enter(self, module: nn.Module, name: str, args: tuple, kwargs: dict) -> Frame:
        """A new call of ``module`` starts (its pre-hook): its frame, not pushed yet."""
        parent = self.stack[-1] if self.stack else None
        if parent is not None:
            parent.children += 1
        if self.gathered is not None:
            for pname, p in module.named_parameters(prefix=name, recurse=False):
                self.gathered.setdefault(pname, p)
                self.param_ids.add(id(p))
        call = ModuleCall(
            id=len(self.calls),
            name=name,
            type=class_name(module),
            call=self.counts[name],
            parent=parent.call.id if parent else None,
            params=sum(1 for _ in module.parameters(recurse=False)) or int(_compat.holds_packed_weights(module)),
        )
        self.counts[name] += 1
        self.calls.append(call)
        if not kwargs and all(isinstance(a, torch.Tensor) for a in args):  # most calls
            refs = [t.grad_fn for t in args if t.grad_fn is not None]
        else:
            refs = [t.grad_fn for _, t in iter_tensors((args, kwargs)) if t.grad_fn is not None]
        return Frame(call, module, {id(f) for f in refs}, refs)

    def exit(self, output: Any) -> tuple[Frame, list[tuple[str, torch.Tensor]]]:
        """The call on top of the stack returned ``output`` (its forward hook): pop it, set
        what its return tells, own its autograd nodes."""
        frame = self.stack.pop()
        call = frame.call
        call.leaf = frame.children == 0
        tensors = list(iter_tensors(output))
        if tensors:
            call.output_shape = list(tensors[0][1].shape)
        self._attribute(call.id, tensors, frame.boundary)
        return frame, tensors

    def _attribute(self, call_id: int, tensors: list[tuple[str, torch.Tensor]], boundary: set[int]) -> None:
        """Own every autograd node this call created and no inner call owns.

        Walk back from the outputs, through nodes of inner calls (ids above ``call_id``: they
        ran while this call was on the stack), stopping at this call's inputs and at nodes of
        calls that ran before it.
        """
        todo = [t.grad_fn for _, t in tensors if t.grad_fn is not None]
        seen: set[int] = set()
        while todo:
            fn = todo.pop()
            key = id(fn)
            if key in seen or key in boundary:
                continue
            seen.add(key)
            owned_by = self.owner.get(key)
            if owned_by is not None:
                if owned_by < call_id:
                    continue
            else:
                variable = getattr(fn, "variable", None)
                if variable is not None and id(variable) not in self.param_ids:
                    continue  # the leaf of an input tensor belongs to no module
                self.owner[key] = call_id
                self.keepalive.append(fn)
            todo.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)


class InputTrail:
    """Follows the model's input through ops outside the autograd graph (token ids and what
    is computed from them): an op that reads such a tensor and makes one that requires grad
    is where the input enters the graph (``entries``: id(autograd node) -> the input's
    label; the nodes join ``keepalive``)."""

    def __init__(self, keepalive: list[Any]):
        # id -> (the tensor, weakly: ids may be reused; the label of the input it carries)
        self.carriers: dict[int, tuple[weakref.ref, str]] = {}
        self.entries: dict[int, str] = {}
        self.keepalive = keepalive

    def follow(self, args: tuple, kwargs: dict, out: Any) -> None:
        carriers = self.carriers
        label = None
        for a in (*args, *kwargs.values(), *(x for seq in args if isinstance(seq, (list, tuple)) for x in seq)):
            found = carriers.get(id(a))
            if found is not None and found[0]() is a:
                label = found[1]
                break
        if label is None:
            return
        for _, t in iter_tensors(out):
            fn = t.grad_fn
            if fn is not None:
                if id(fn) not in self.entries:
                    self.entries[id(fn)] = label
                    self.keepalive.append(fn)
            elif not t.requires_grad:
                self.carry(t, label)

    def carry(self, t: torch.Tensor, label: str) -> None:
        key = id(t)

        def forget(_: object) -> None:
            self.carriers.pop(key, None)

        self.carriers[key] = (weakref.ref(t, forget), label)
