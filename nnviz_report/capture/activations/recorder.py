"""What the forward pass's hooks and torch-function mode record of activation calls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..distributed import class_name
from ..histograms import PendingHistograms
from ..nested import iter_tensors
from .custom import CustomActivation, custom_candidate
from .kinds import classify_call, classify_module, function_name, plain_value, rnn_internals
from .measure import (
    ActivationRecord,
    ActivationSite,
    InputMeasure,
    OutputMeasure,
    PendingDerivatives,
    measure_input,
    measure_output,
)

if TYPE_CHECKING:
    from ..calls import Frame, ModuleCall
    from ..layers import RecentOutputs


@dataclass(frozen=True)
class Started:
    """An activation module's call between its forward pre-hook and its forward hook."""

    site: ActivationSite
    input: InputMeasure


class ActivationRecorder:
    """Measures the calls of activation modules (torch.nn's, and modules that are activations
    in practice, ``custom``: probed after the pass) and functional activation calls in the
    other modules' ``forward``; keeps ``records`` in the order the calls returned, and the
    activations fused inside recurrent modules (``rnn``)."""

    def __init__(self, modules: Iterable[nn.Module], bins: int, histograms: PendingHistograms, recent: RecentOutputs):
        self.bins = bins
        self.histograms = histograms
        self.recent = recent
        self.of_module = {m: c for m in modules if (c := classify_module(m))}
        self.custom_modules = {m for m in modules if custom_candidate(m)}
        self.custom: dict[tuple, CustomActivation] = {}  # by (class name, params_key(parameters))
        self.derivatives = PendingDerivatives()
        self.records: list[ActivationRecord] = []
        self.functional_counts: Counter[tuple[str, str]] = Counter()
        self.rnn: dict[str, tuple[str, str, list[str]]] = {}

    def module_call(self, module: nn.Module, call: ModuleCall, args: tuple, kwargs: dict) -> Started | None:
        """The pre-hook of ``module``: its input measured if it is an activation."""
        spec = self.of_module.get(module)
        if spec is not None:
            inputs = [t for _, t in iter_tensors(args)]
            cls_name = class_name(module)
            site = ActivationSite(
                activation=spec[0],
                params=dict(spec[1]),
                where=call.name,
                source="module",
                function=cls_name if cls_name == spec[0] else f"{cls_name} ({spec[0]} subclass)",
                call=call.call,
                shape=list(inputs[0].shape) if inputs else [],
            )
            return Started(site, self._measure_input(site, inputs[0]) if inputs else InputMeasure())
        if (
            module in self.custom_modules
            and len(args) == 1
            and not kwargs
            and isinstance(args[0], torch.Tensor)
            and args[0].is_floating_point()
        ):
            return self._custom_call(module, call, args[0])
        return None

    def _custom_call(self, module: nn.Module, call: ModuleCall, x: torch.Tensor) -> Started:
        """A module that is an activation in practice (NewGELUActivation, a user's Swish):
        measured like torch.nn's, its curve from the module itself. Dead units are counted
        until the probe after the forward pass says whether it zeroes."""
        name = type(module).__name__
        params = {n: plain_value(p) for n, p in module.named_parameters(recurse=False)}
        site = ActivationSite(
            activation=name,
            params=params,
            where=call.name,
            source="module",
            function=f"{name} (custom)",
            call=call.call,
            shape=list(x.shape),
            custom=True,
        )
        if site.key not in self.custom:
            self.custom[site.key] = CustomActivation(module, x.dtype, x.device)
        return Started(site, self._measure_input(site, x))

    def module_return(self, started: Started, tensors: list[tuple[str, torch.Tensor]]) -> None:
        """The forward hook of an activation module: its output measured, the call recorded."""
        output = OutputMeasure()
        if tensors:
            y = tensors[0][1]
            known = self.recent.stats(y)
            zero_fraction = known.zero_fraction if known else None
            non_negative = known is not None and known.min is not None and known.min >= 0
            output = measure_output(started.site, y, zero_fraction, non_negative)
        self.records.append(ActivationRecord(started.site, started.input, output))

    def functional(self, owner: Frame | None, func: Any, args: tuple, kwargs: dict, paused: Callable[[], Any]) -> Any:
        """Call ``func``; if it is a functional activation called in a module's own forward
        (not inside a torch.nn activation module), measure its input and output, with the
        capture ``paused()`` meanwhile."""
        spec = None
        if owner is not None and (owner.activation is None or owner.activation.site.custom):
            spec = classify_call(func, args, kwargs)
        if spec is None or owner is None:
            return func(*args, **kwargs)
        with paused():
            fname = function_name(func)
            key = (owner.call.name, fname)
            site = ActivationSite(
                activation=spec[0],
                params=spec[1],
                where=owner.call.name,
                source="functional",
                function=fname,
                call=self.functional_counts[key],
                shape=list(args[0].shape),
                inside=owner.activation.site.key if owner.activation is not None else None,
            )
            self.functional_counts[key] += 1
            measured = self._measure_input(site, args[0])
        out = func(*args, **kwargs)
        with paused():
            output = measure_output(site, out) if isinstance(out, torch.Tensor) else OutputMeasure()
            self.records.append(ActivationRecord(site, measured, output))
        return out

    def note_rnn(self, call: ModuleCall, module: nn.Module) -> None:
        """A recurrent module's fused activations, which no hook can see."""
        internals = rnn_internals(module)
        if internals and call.name not in self.rnn:
            self.rnn[call.name] = (call.name, call.type, internals)

    def _measure_input(self, site: ActivationSite, x: torch.Tensor) -> InputMeasure:
        return measure_input(site, x, self.bins, self.recent.histogram(x), self.derivatives, self.histograms)
