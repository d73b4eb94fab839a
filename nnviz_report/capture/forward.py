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
histogram and derivative samples): :class:`ForwardCapture` holds them as pending work, which
the steps in ``run.py`` finish for all layers at once (while Graphviz lays out the graph).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .. import _compat
from ..errors import NNVizError
from .activations.custom import CustomActivation
from .activations.kinds import FUNCTIONAL
from .activations.measure import ActivationRecord, PendingDerivatives
from .activations.recorder import ActivationRecorder
from .calls import CallTree, InputTrail, ModuleCall
from .coverage import inference_tensors, scripted_modules, scripted_notes, uncalled
from .distributed import module_names
from .guard import CALL_KINDS, ModelState, preserve_model_state
from .histograms import PendingHistograms
from .inputs import inputs_text, model_device, prepare_inputs
from .layers import LayerRecord, LayerRecorder, RecentOutputs
from .nested import iter_tensors
from .options import CaptureOptions
from .stats import non_finite


@dataclass(frozen=True)
class ForwardCapture:
    """What the forward pass recorded, with the work it left pending: the histograms' counts
    (``histograms``), the activations' derivatives (``derivatives``) and the probes of
    modules that are activations in practice (``custom``), and the layers' pictures."""

    inputs: list[tuple[str, torch.Tensor]]  # the tensors the model was called with (detached)
    calls: list[ModuleCall]
    layers: list[LayerRecord]
    activations: list[ActivationRecord]
    rnn_internals: list[tuple[str, str, list[str]]]  # (module name, type, activations)
    skipped_outputs: list[tuple[str, int, str, str]]  # (name, call, path, type) not tensors
    uncalled: list[tuple[str, str, str]]  # (name, type, why)
    device: str
    mode: str
    seconds: float
    histograms: PendingHistograms
    derivatives: PendingDerivatives
    custom: dict[tuple, CustomActivation]  # by (class name, params_key(parameters))
    notes: list[str]
    no_autograd: str | None = None  # why the forward pass ran without autograd (no graph)
    scripted: bool = False  # TorchScript modules ran (notes[0] says what is missing)
    output_non_finite: tuple[tuple[str, int, int], ...] = ()  # the model's output: (path, NaN, Inf)


class AutogradTrace:
    """What the autograd graph is walked from, and the references that keep it alive until
    :meth:`release`: the output, the input leaves, the nodes each module call created
    (``owner``: id(node) -> ModuleCall.id, the nodes themselves in ``keepalive``), the ops
    where the input's data enters the graph outside it (``entries``: id(node) -> the input's
    label; token ids, masks), and under FSDP the gathered parameters each module used
    (``gathered``: autograd recorded these, not the shards ``named_parameters()`` holds
    after the pass)."""

    def __init__(
        self,
        output: Any,
        inputs: list[tuple[str, torch.Tensor]],
        owner: dict[int, int],
        entries: dict[int, str],
        keepalive: list[Any],
        gathered: dict[str, torch.Tensor] | None,
    ):
        self.output = output
        self.inputs = inputs
        self.owner = owner
        self.entries = entries
        self.keepalive = keepalive
        self.gathered = gathered

    def release(self) -> None:
        """Drop every reference to the autograd graph and its saved activations.

        The nodes go newest first, each while nothing else holds it: dropped oldest first
        (as ``list.clear`` does), the last one would free a chain of 10^5 nodes in one
        recursive destruction, which overflows the C++ stack (a segfault)."""
        self.output = None
        self.inputs = []
        self.owner.clear()
        self.entries.clear()
        nodes, self.keepalive = self.keepalive, []
        nodes.sort(key=_compat.sequence_nr)
        while nodes:
            nodes.pop()
        self.gathered = None


class _Paused:
    """:meth:`_Recorder.pause`, as a class: entered twice per module call, where a
    generator-based context manager costs more."""

    __slots__ = ("grad", "modes", "previous", "recorder")

    def __init__(self, recorder: _Recorder):
        self.recorder = recorder

    def __enter__(self) -> None:
        self.previous, self.recorder.paused = self.recorder.paused, True
        self.modes = _compat.modes_off()
        self.modes.__enter__()
        self.grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            torch.set_grad_enabled(self.grad)
            self.modes.__exit__(kind, exc, tb)
        finally:
            self.recorder.paused = self.previous


class _Recorder:
    """The hooks' and the torch-function mode's entry points; what they record goes to the
    call tree, the layer recorder, the activation recorder and the input trail."""

    def __init__(self, model: nn.Module, options: CaptureOptions):
        self.names: dict[nn.Module, str] = module_names(model)
        self.tree = CallTree(model, self.names)
        self.trail = InputTrail(self.tree.keepalive)
        self.histograms = PendingHistograms()
        recent = RecentOutputs()
        self.layers = LayerRecorder(options, self.histograms, recent)
        self.activations = ActivationRecorder(self.names, options.bins, self.histograms, recent)
        self.paused = False

    def pause(self) -> _Paused:
        """The recorder's own tensor work runs inside the model's forward (in hooks): it
        must not be mistaken for the model's functional calls, it should not pay the
        torch-function mode's dispatch on each of its ops, and it records no autograd
        nodes (it reads activations that require grad)."""
        return _Paused(self)

    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        name = self.names.get(module)
        if name is None or self.paused:
            return
        with self.pause():
            frame = self.tree.enter(module, name, args, kwargs)
            if not _compat.in_functorch_transform():
                frame.activation = self.activations.module_call(module, frame.call, args, kwargs)
            self.tree.stack.append(frame)

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        stack = self.tree.stack
        if self.paused or not stack or stack[-1].module is not module:
            return
        with self.pause():
            if _compat.in_functorch_transform():  # vmap's batched tensors: no values to read
                frame, _ = self.tree.exit(None)
                if frame.call.leaf:
                    self.layers.skipped.append((frame.call.name, frame.call.call, "", TRANSFORMED))
                return
            frame, tensors = self.tree.exit(output)
            call = frame.call
            if call.leaf:
                self.activations.note_rnn(call, module)
                if self.layers.selected(call, module):
                    self.layers.record(call, module, tensors, output)
            if frame.activation is not None:
                self.activations.module_return(frame.activation, tensors)

    def functional(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if _compat.in_functorch_transform():
            return func(*args, **kwargs)
        owner = self.tree.stack[-1] if self.tree.stack else None
        return self.activations.functional(owner, func, args, kwargs, self.pause)


TRANSFORMED = "tensors inside torch.func.vmap / grad (wrappers without readable values)"


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
        out = rec.functional(func, args, kwargs) if func in FUNCTIONAL else func(*args, **kwargs)
        if rec.trail.carriers:
            with rec.pause():
                rec.trail.follow(args, kwargs, out)
        return out


def run_forward(model: nn.Module, example_input: Any, options: CaptureOptions) -> tuple[ForwardCapture, AutogradTrace]:
    """Run the model once on a copy of ``example_input`` and capture everything.

    The model's state (modes, hooks, parameters, buffers, flags, RNG) is restored on exit,
    also when the forward pass fails; a failure becomes an ``NNVizError`` naming the module
    that raised.
    """
    device = model_device(model)
    no_autograd = inference_tensors(model)
    args, kwargs, inputs = prepare_inputs(example_input, device, autograd=no_autograd is None)
    rec = _Recorder(model, options)
    for label, t in inputs:
        if not t.requires_grad:
            rec.trail.carry(t, label)
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
            raise _forward_error(exc, rec.tree, inputs, no_autograd, example_input) from exc
    seconds = time.perf_counter() - started
    scripted = scripted_modules(model)
    notes = scripted_notes(model, scripted)
    if rec.layers.example_clamped:
        notes.append(f"the batch has no example {options.example}; example 0 is drawn instead")
    acts = rec.activations
    forward = ForwardCapture(
        inputs=[(label, t.detach()) for label, t in inputs],
        calls=rec.tree.calls,
        layers=rec.layers.layers,
        activations=acts.records,
        rnn_internals=list(acts.rnn.values()),
        skipped_outputs=rec.layers.skipped,
        uncalled=uncalled(model, rec.tree.counts),
        device=str(device),
        mode=options.mode,
        seconds=seconds,
        histograms=rec.histograms,
        derivatives=acts.derivatives,
        custom=acts.custom,
        notes=notes,
        no_autograd=no_autograd,
        scripted=bool(scripted),
        output_non_finite=tuple(non_finite(list(iter_tensors(output)))),
    )
    trace = AutogradTrace(output, inputs, rec.tree.owner, rec.trail.entries, rec.tree.keepalive, rec.tree.gathered)
    return forward, trace


def _forward_error(
    exc: Exception, tree: CallTree, inputs: list, no_autograd: str | None = None, example_input: Any = None
) -> NNVizError:
    message = (str(exc).strip().splitlines() or [""])[0]
    where = "the model's forward"
    if tree.stack:
        frame = tree.stack[-1]
        where = f"{frame.call.name or '(root)'} ({frame.call.type})"
    done = len(tree.calls) - len(tree.stack)
    return NNVizError(
        f"the forward pass failed in {where} after {done} module calls: "
        f"{type(exc).__name__}: {message} (example input: {inputs_text(inputs) or 'none'}); "
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
