"""One forward pass that captures everything the report shows about activations.

Hooks go on every module (not only leaves) so that each call knows its caller: feature maps
are taken from calls that ran no child module ("runtime leaves": ordinary leaf modules, and
blocks such as ``nn.MultiheadAttention`` that apply their children functionally), and every
autograd node is attributed to the module call that created it. Functional activations
(``torch.relu(x)``, ``F.gelu``, ``x.tanh()``) are seen through a ``TorchFunctionMode``,
active for this one call only; torch is never patched.

All reductions happen inside the hooks, on the tensor's device, from the tensor exactly as
the module returned it: a later in-place op (``ReLU(inplace=True)``, ``out += identity``)
cannot change what was recorded, and no activation is kept after its hook returns. What the
hooks keep are small copies (the channels a conv map's picture shows, within a budget;
histogram and derivative samples); turning those into pictures, histogram counts and
derivatives waits for the steps in ``run.py``, which do it for all layers at once (and can
run while Graphviz lays out the graph).
"""

from __future__ import annotations

import fnmatch
import threading
import time
import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .. import _compat
from ..errors import NNVizError
from . import activations as act
from .distributed import class_name, is_sharded, module_names
from .guard import CALL_KINDS, ModelState, preserve_model_state
from .tensors import (
    FULL_COPY_BUDGET,
    FULL_COPY_VALUES,
    GridImage,
    HistogramCounts,
    ImageParts,
    TensorStats,
    channel_parts,
    describe_non_tensors,
    drawn_slice,
    finish_images,
    iter_tensors,
    matrix_parts,
    tensor_stats,
)

MODES = ("eval", "train", "as-is")


@dataclass(frozen=True)
class CaptureOptions:
    layers: tuple[str, ...] = ()  # fnmatch patterns on qualified module names
    layer_types: tuple[str, ...] = ()  # module class names (subclasses match too)
    max_channels: int = 16  # channels drawn per conv map
    tile: int = 32  # largest side of one channel tile, in pixels
    example: int = 0  # which example of the batch is drawn
    bins: int = 32  # histogram bins per layer
    mode: str = "eval"  # mode of the forward pass: "eval", "train" or "as-is"
    max_rows: int = 64  # rows of a drawn matrix (examples, tokens, channels)
    max_cols: int = 128  # columns of a drawn matrix (features, positions)
    graph: bool = True  # capture the autograd graph
    dot_timeout: float = 5.0  # seconds each Graphviz layout may take (the layout budget)


@dataclass
class ModuleCall:
    id: int
    name: str  # qualified name; "" for the root module
    type: str
    call: int  # 0-based count of calls of this module
    parent: int | None  # id of the calling module's call
    leaf: bool = True  # ran no child module
    output_shape: list[int] | None = None
    params: int = 0  # parameters the module holds itself (not its children's)


@dataclass
class LayerCapture:
    """One tensor returned by one call of a runtime-leaf module."""

    name: str
    call: int
    type: str
    output: str  # where in the output: "" for a bare tensor, "[0]", "[1][0]", ".h", ...
    shape: list[int]
    dtype: str
    stats: TensorStats
    image: GridImage | ImageParts | None  # ImageParts until ForwardCapture.draw_images()
    call_id: int
    notes: list[str] = field(default_factory=list)


@dataclass
class ForwardCapture:
    output: Any
    inputs: list[tuple[str, torch.Tensor]]  # the (cloned) tensors the model was called with
    calls: list[ModuleCall]
    layers: list[LayerCapture]
    activation_calls: list[act.ActivationCall]
    rnn_internals: list[tuple[str, str, list[str]]]  # (module name, type, activations)
    skipped_outputs: list[tuple[str, int, str, str]]  # (name, call, path, type) not tensors
    uncalled: list[tuple[str, str, str]]  # (name, type, why)
    owner: dict[int, int]  # id(autograd node) -> ModuleCall.id
    keepalive: list[Any]  # the autograd nodes behind ``owner`` and ``entries`` (ids stay valid)
    device: str
    mode: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    no_autograd: str | None = None  # why the forward pass ran without autograd (no graph)
    scripted: bool = False  # TorchScript modules ran (notes[0] says what is missing)
    derivatives: act.Derivatives = field(default_factory=act.Derivatives)  # run by run.finish_activations()
    histograms: HistogramCounts = field(default_factory=HistogramCounts)  # run by run.count_histograms()
    # id(autograd node) of the ops that read the model's input where it is not part of the
    # autograd graph (token ids, masks): where the input's data enters the graph.
    entries: dict[int, str] = field(default_factory=dict)  # -> the input's label
    # Under FSDP: the gathered parameters each module used (autograd recorded these, not
    # the shards model.named_parameters() holds after the pass), by qualified name.
    gathered: dict[str, torch.Tensor] | None = None

    def draw_images(self) -> None:
        """Draw every layer's picture from the small copies the hooks kept, all at once;
        then drop those copies."""
        todo = [layer for layer in self.layers if isinstance(layer.image, ImageParts)]
        for layer, image in zip(todo, finish_images([layer.image for layer in todo])):
            layer.image = image

    def release(self) -> None:
        """Drop every reference to the autograd graph and its saved activations.

        The nodes go newest first, each while nothing else holds it: dropped oldest first
        (as ``list.clear`` does), the last one would free a chain of 10^5 nodes in one
        recursive destruction, which overflows the C++ stack (a segfault)."""
        self.output = None
        self.inputs = [(label, t.detach()) for label, t in self.inputs]
        self.owner.clear()
        self.entries.clear()
        nodes, self.keepalive = self.keepalive, []
        nodes.sort(key=_compat.sequence_nr)
        while nodes:
            nodes.pop()
        self.gathered = None


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
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
    except Exception:
        return plain(items)


def shape_text(inputs: Sequence[tuple[str, torch.Tensor]]) -> str:
    return ", ".join(f"{label}: {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for label, t in inputs)


@dataclass
class _Frame:
    call: ModuleCall
    module: nn.Module
    boundary: set[int]
    boundary_refs: list[Any]
    activation: act.ActivationCall | None = None
    children: int = 0


class _Paused:
    """:meth:`_Recorder.pause`, as a class: entered twice per module call, where a
    generator-based context manager costs twice as much."""

    __slots__ = ("grad", "modes", "previous", "recorder")

    def __init__(self, recorder: _Recorder):
        self.recorder = recorder

    def __enter__(self) -> None:
        self.previous, self.recorder.paused = self.recorder.paused, True
        self.modes = _compat.modes_off()
        self.modes.__enter__()
        self.grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def __exit__(self, *exc: object) -> None:
        try:
            torch.set_grad_enabled(self.grad)
            self.modes.__exit__(*exc)
        finally:
            self.recorder.paused = self.previous


class _Recorder:
    def __init__(self, model: nn.Module, options: CaptureOptions):
        self.options = options
        self.names: dict[nn.Module, str] = module_names(model)
        self.param_ids = {id(p) for p in model.parameters()}
        self.gathered: dict[str, torch.Tensor] | None = {} if is_sharded(model) else None
        self.activation_modules = {m: c for m in self.names if (c := act.classify_module(m))}
        self.custom_modules = {m for m in self.names if act.custom_candidate(m)}
        self.stack: list[_Frame] = []
        self.calls: list[ModuleCall] = []
        self.counts: Counter[str] = Counter()
        self.layers: list[LayerCapture] = []
        self.activation_calls: list[act.ActivationCall] = []
        self.functional_counts: Counter[tuple[str, str]] = Counter()
        self.rnn: dict[str, tuple[str, str, list[str]]] = {}
        self.skipped: list[tuple[str, int, str, str]] = []
        self.owner: dict[int, int] = {}
        self.keepalive: list[Any] = []
        # Tensors outside the autograd graph that carry the input's data (token ids and what
        # is computed from them): an op that reads one and makes a tensor that requires grad
        # is where the input enters the graph (``entries``).
        # id -> (the tensor, weakly: ids may be reused; the label of the input it carries)
        self.carriers: dict[int, tuple[weakref.ref, str]] = {}
        self.entries: dict[int, str] = {}
        self.paused = False
        self.example_clamped = False
        self.derivatives = act.Derivatives()
        self.histograms = HistogramCounts()
        # The last few recorded outputs and their stats: an activation whose input or output
        # is one of them (same tensor, not modified since) reuses the histogram or the
        # fraction of zeros.
        self.recent: list[tuple[torch.Tensor, int, TensorStats]] = []
        # Values of conv pictures still at full resolution (see channel_parts) left to keep.
        self.full_copy_budget = FULL_COPY_BUDGET

    def known_stats(self, t: torch.Tensor) -> TensorStats | None:
        for seen, version, stats in self.recent:
            if seen is t and version is not None and _compat.version(t) == version:
                return stats
        return None

    def known_histogram(self, t: torch.Tensor) -> Any:
        stats = self.known_stats(t)
        return stats.histogram if stats is not None else None

    def remember(self, t: torch.Tensor, stats: TensorStats) -> None:
        self.recent.append((t, _compat.version(t), stats))
        del self.recent[:-4]

    def pause(self) -> _Paused:
        """The recorder's own tensor work runs inside the model's forward (in hooks): it
        must not be mistaken for the model's functional calls, it should not pay the
        torch-function mode's dispatch on each of its ops, and it records no autograd
        nodes (it reads activations that require grad)."""
        return _Paused(self)

    def selected(self, call: ModuleCall, module: nn.Module) -> bool:
        o = self.options
        if not o.layers and not o.layer_types:
            return True
        if any(fnmatch.fnmatchcase(call.name, p) for p in o.layers):
            return True
        return any(c.__name__ in o.layer_types for c in type(module).__mro__)

    # -- hooks ---------------------------------------------------------------------------
    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        name = self.names.get(module)
        if name is None or self.paused:
            return
        with self.pause():
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
                params=sum(1 for _ in module.parameters(recurse=False)),
            )
            self.counts[name] += 1
            self.calls.append(call)
            if not kwargs and all(isinstance(a, torch.Tensor) for a in args):  # most calls
                refs = [t.grad_fn for t in args if t.grad_fn is not None]
            else:
                refs = [t.grad_fn for _, t in iter_tensors((args, kwargs)) if t.grad_fn is not None]
            frame = _Frame(call, module, {id(f) for f in refs}, refs)
            spec = self.activation_modules.get(module)
            if spec is not None:
                inputs = [t for _, t in iter_tensors(args)]
                cls_name = class_name(module)
                frame.activation = act.ActivationCall(
                    activation=spec[0],
                    params=dict(spec[1]),
                    where=name,
                    source="module",
                    function=cls_name if cls_name == spec[0] else f"{cls_name} ({spec[0]} subclass)",
                    call=call.call,
                    shape=list(inputs[0].shape) if inputs else [],
                )
                if inputs:
                    act.measure_input(
                        frame.activation,
                        inputs[0],
                        self.options.bins,
                        self.known_histogram(inputs[0]),
                        self.derivatives,
                        self.histograms,
                    )
            elif (
                module in self.custom_modules
                and len(args) == 1
                and not kwargs
                and isinstance(args[0], torch.Tensor)
                and args[0].is_floating_point()
            ):
                frame.activation = self._custom_call(module, call, args[0])
            self.stack.append(frame)

    def _custom_call(self, module: nn.Module, call: ModuleCall, x: torch.Tensor) -> act.ActivationCall:
        """A module that is an activation in practice (NewGELUActivation, a user's Swish):
        measured like torch.nn's, its curve from the module itself. Dead units are counted
        until the probe after the forward pass says whether it zeroes."""
        name = type(module).__name__
        params = {n: act._plain(p) for n, p in module.named_parameters(recurse=False)}
        key = (name, act.params_key(params))
        if key not in self.derivatives.custom:
            self.derivatives.custom[key] = act.CustomActivation(module, x.dtype, x.device)
        record = act.ActivationCall(
            activation=name,
            params=params,
            where=call.name,
            source="module",
            function=f"{name} (custom)",
            call=call.call,
            shape=list(x.shape),
            kind=act.ZEROING,
            custom=True,
        )
        act.measure_input(record, x, self.options.bins, self.known_histogram(x), self.derivatives, self.histograms)
        return record

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self.paused or not self.stack or self.stack[-1].module is not module:
            return
        with self.pause():
            frame = self.stack.pop()
            call = frame.call
            call.leaf = frame.children == 0
            tensors = list(iter_tensors(output))
            if tensors:
                call.output_shape = list(tensors[0][1].shape)
            self._attribute(call.id, tensors, frame.boundary)
            if call.leaf:
                internals = act.rnn_internals(module)
                if internals and call.name not in self.rnn:
                    self.rnn[call.name] = (call.name, call.type, internals)
                if self.selected(call, module):
                    self._record_layer(call, module, tensors, output)
            if frame.activation is not None:
                if tensors:
                    y = tensors[0][1]
                    known = self.known_stats(y)
                    act.measure_output(
                        frame.activation,
                        y,
                        known.zero_fraction if known else None,
                        known is not None and known.min is not None and known.min >= 0,
                    )
                self.activation_calls.append(frame.activation)

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

    def _record_layer(self, call: ModuleCall, module: nn.Module, tensors: list, output: Any) -> None:
        for path, kind in describe_non_tensors(output):
            self.skipped.append((call.name, call.call, path, kind))
        o = self.options
        for path, t in tensors:
            notes = []
            image = None
            try:
                image = self._image(module, t, path)
            except RuntimeError as exc:  # an exotic layout must not break the report
                notes.append(f"no image: {exc}".split("\n")[0])
            if image is not None and image.kind == "channels" and t.dim() > 4:
                notes.append(drawn_slice(t.shape))
            if isinstance(module, nn.MultiheadAttention):
                notes.append(
                    "out_proj is applied functionally inside MultiheadAttention, so this is the "
                    "attention block's output (out_proj has no entry of its own)"
                )
            stats = tensor_stats(t, bins=o.bins, later=self.histograms)
            self.remember(t, stats)
            self.layers.append(
                LayerCapture(
                    name=call.name,
                    call=call.call,
                    type=call.type,
                    output=path,
                    shape=list(t.shape),
                    dtype=str(t.dtype).replace("torch.", ""),
                    stats=stats,
                    image=image,
                    call_id=call.id,
                    notes=notes,
                )
            )

    def _example(self, t: torch.Tensor, batch_dim: int) -> int:
        e = self.options.example
        if e < t.shape[batch_dim]:
            return e
        self.example_clamped = True
        return 0

    def _image(self, module: nn.Module, t: torch.Tensor, path: str = "") -> ImageParts | None:
        o = self.options
        if t.numel() == 0 or t.dim() < 2:
            return None
        if isinstance(module, nn.RNNBase) and path.startswith("[1]") and t.dim() == 3:
            # h_n / c_n are (layers x directions, batch, hidden) whatever batch_first says.
            return matrix_parts(t[:, self._example(t, 1)], o.max_rows, o.max_cols, "layer", "feature")
        if t.dim() >= 4:
            parts = channel_parts(
                t, self._example(t, 0), o.max_channels, o.tile, full_copy=min(FULL_COPY_VALUES, self.full_copy_budget)
            )
            if parts.tile:
                self.full_copy_budget -= parts.values.numel()
            return parts
        if t.dim() == 3:
            if isinstance(module, _compat.CHANNELS_FIRST):
                m = t[self._example(t, 0)]
                return matrix_parts(m, o.max_rows, o.max_cols * 2, "channel", "position")
            batch_first = getattr(module, "batch_first", True)
            if batch_first:
                m = t[self._example(t, 0)]
            else:
                m = t[:, self._example(t, 1)]
            return matrix_parts(m, o.max_rows, o.max_cols, "position", "feature")
        return matrix_parts(t, o.max_rows, o.max_cols, "example", "feature")

    # -- functional activations ----------------------------------------------------------
    def functional(self, func: Any, args: tuple, kwargs: dict) -> Any:
        owner = self.stack[-1] if self.stack else None
        spec = None
        if owner is not None and (owner.activation is None or owner.activation.custom):
            spec = act.classify_call(func, args, kwargs)
        if spec is None:
            return func(*args, **kwargs)
        with self.pause():
            fname = act.function_name(func)
            key = (owner.call.name, fname)
            call = act.ActivationCall(
                activation=spec[0],
                params=spec[1],
                where=owner.call.name,
                source="functional",
                function=fname,
                call=self.functional_counts[key],
                shape=list(args[0].shape),
                inside=owner.activation,
            )
            self.functional_counts[key] += 1
            act.measure_input(
                call, args[0], self.options.bins, self.known_histogram(args[0]), self.derivatives, self.histograms
            )
        out = func(*args, **kwargs)
        with self.pause():
            if isinstance(out, torch.Tensor):
                act.measure_output(call, out)
            self.activation_calls.append(call)
        return out

    def follow_input(self, args: tuple, kwargs: dict, out: Any) -> None:
        """Follow the input's data through ops outside the autograd graph."""
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
        self.carriers[key] = (weakref.ref(t, lambda _, key=key: self.carriers.pop(key, None)), label)


class _FunctionalActivations(TorchFunctionMode):
    """Sees every torch call of the forward pass (on this thread): functional activations
    go to the recorder; a call that may write into a parameter goes first to the guard's
    copy on write (:meth:`ModelState.before_call`)."""

    def __init__(self, recorder: _Recorder, state: ModelState):
        super().__init__()
        self.recorder = recorder
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rec = self.recorder
        if rec.paused:
            return func(*args, **kwargs)
        if kwargs or CALL_KINDS.get(func, 1):
            self.state.before_call(func, args, kwargs)
        out = rec.functional(func, args, kwargs) if func in act.FUNCTIONAL else func(*args, **kwargs)
        if rec.carriers:
            with rec.pause():
                rec.follow_input(args, kwargs, out)
        return out


def _uncalled(model: nn.Module, counts: Counter[str]) -> list[tuple[str, str, str]]:
    out = []
    modules = {name: module for module, name in module_names(model).items()}
    for name, module in modules.items():
        if counts[name]:
            continue
        parent = modules.get(name.rpartition(".")[0]) if name else None
        if isinstance(module, torch.jit.ScriptModule):
            if isinstance(parent, torch.jit.ScriptModule):
                continue  # said of the outermost TorchScript module
            why = (
                "TorchScript (torch.jit.script/trace): runs as compiled code, which forward hooks "
                "and the functional-activation view cannot see into"
            )
        elif isinstance(parent, nn.MultiheadAttention) and name.endswith("out_proj"):
            why = "applied functionally by MultiheadAttention; its output is the attention block's entry"
        elif any(counts[n] for n in modules if n.startswith(name + ".")):
            why = "a container whose children were called directly"
        else:
            why = "not called by forward (unused, or skipped by a fused fast path)"
        out.append((name, class_name(module), why))
    return out


def run_forward(model: nn.Module, example_input: Any, options: CaptureOptions) -> ForwardCapture:
    """Run the model once on a copy of ``example_input`` and capture everything.

    The model's state (modes, hooks, parameters, buffers, flags, RNG) is restored on exit,
    also when the forward pass fails; a failure becomes an ``NNVizError`` naming the module
    that raised.
    """
    device = model_device(model)
    no_autograd = _inference_tensors(model)
    args, kwargs, inputs = prepare_inputs(example_input, device, autograd=no_autograd is None)
    rec = _Recorder(model, options)
    for label, t in inputs:
        if not t.requires_grad:
            rec.carry(t, label)
    started = time.perf_counter()
    # The hooks are on the model, seen by every thread: calls from another thread are only
    # counted (the guard then refuses the build). The guard takes them off when it puts the
    # model's hook dicts back, after the values: until then they count.
    thread = threading.get_ident()

    def add_hooks(state: ModelState) -> None:
        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if threading.get_ident() == thread:
                return rec.pre_hook(module, args, kwargs)
            state.foreign_calls += 1
            return None

        def post_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if threading.get_ident() == thread:
                return rec.post_hook(module, args, kwargs, output)
            return None

        for module in rec.names:
            if isinstance(module, torch.jit.ScriptModule):  # no hooks: it runs as compiled code
                continue
            module.register_forward_pre_hook(pre_hook, with_kwargs=True)
            module.register_forward_hook(post_hook, with_kwargs=True)

    with preserve_model_state(model, add_hooks) as state:
        if options.mode == "eval":
            model.eval()
        elif options.mode == "train":
            model.train()
        try:
            with torch.set_grad_enabled(no_autograd is None), _FunctionalActivations(rec, state):
                output = model(*args, **kwargs)
        except Exception as exc:
            raise _forward_error(exc, rec, inputs, no_autograd, example_input) from exc
    notes = []
    modules = dict(model.named_modules())
    scripted = [
        n or "(root)"
        for n, m in modules.items()
        if isinstance(m, torch.jit.ScriptModule)
        and not (n and isinstance(modules.get(n.rpartition(".")[0]), torch.jit.ScriptModule))
    ]
    if scripted:
        notes.append(
            (
                f"the model is a TorchScript module ({model.original_name})"
                if scripted == ["(root)"]
                else f"TorchScript modules: {', '.join(scripted[:4])}{' and more' if len(scripted) > 4 else ''}"
            )
            + ": compiled code runs without Python hooks, so the layer outputs and activation calls "
            "inside it are not in this report (its output, parameters and autograd graph are); pass "
            "the module as it was before torch.jit.script/trace to see them"
        )
    if rec.example_clamped:
        notes.append(f"the batch has no example {options.example}; example 0 is drawn instead")
    return ForwardCapture(
        output=output,
        inputs=inputs,
        calls=rec.calls,
        layers=rec.layers,
        activation_calls=rec.activation_calls,
        rnn_internals=list(rec.rnn.values()),
        skipped_outputs=rec.skipped,
        uncalled=_uncalled(model, rec.counts),
        owner=rec.owner,
        keepalive=rec.keepalive,
        device=str(device),
        mode=options.mode,
        seconds=time.perf_counter() - started,
        notes=notes,
        scripted=bool(scripted),
        no_autograd=no_autograd,
        derivatives=rec.derivatives,
        histograms=rec.histograms,
        entries=rec.entries,
        gathered=rec.gathered,
    )


def _inference_tensors(model: nn.Module) -> str | None:
    """Why autograd cannot run through ``model``, or None: parameters or buffers created
    under ``torch.inference_mode()`` cannot be saved for a backward pass. (The forward pass
    then runs without autograd: every number of the report but the graph.)"""
    names = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_inference()]
    if not names:
        return None
    return (
        f"the model's parameters and buffers ({names[0]}{' and more' if len(names) > 1 else ''}) were "
        "created under torch.inference_mode(), and autograd cannot record them; create the model "
        "outside inference mode (load_state_dict copies the weights) to see the graph"
    )


def _forward_error(
    exc: Exception, rec: _Recorder, inputs: list, no_autograd: str | None = None, example_input: Any = None
) -> NNVizError:
    message = (str(exc).strip().splitlines() or [""])[0]
    where = "the model's forward"
    if rec.stack:
        frame = rec.stack[-1]
        where = f"{frame.call.name or '(root)'} ({frame.call.type})"
    done = len(rec.calls) - len(rec.stack)
    return NNVizError(
        f"the forward pass failed in {where} after {done} module calls: "
        f"{type(exc).__name__}: {message} (example input: {shape_text(inputs) or 'none'}); "
        + (
            "the model's tensors were created under torch.inference_mode() and cannot be updated "
            "outside it: use mode='eval', or create the model outside inference mode"
            if no_autograd and "inference" in message.lower()
            else "check the input shape and dtype the model expects"
        )
        + (
            f" (a list is passed as positional arguments, model(*x), here {len(example_input)} of them; "
            "a model that takes one list of tensors, as torchvision's detectors do, needs it wrapped "
            "in a tuple: ([img1, img2],))"
            if type(example_input) is list
            else ""
        )
    )
