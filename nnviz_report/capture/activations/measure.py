"""Measuring real activation calls during the forward pass.

A hook (or the torch-function mode, for a functional call) records an
:class:`ActivationRecord`: where the call ran (:class:`ActivationSite`), what its input
showed (:class:`InputMeasure`: a histogram whose counts may be pending, and a ticket for the
derivatives) and what its output showed (:class:`OutputMeasure`). The derivatives at the
sampled inputs are taken after the pass, for all calls at once
(:meth:`PendingDerivatives.run`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..histograms import Histogram, PendingHistogram, PendingHistograms, histogram
from ..stats import as_float, nonzero_count
from .curves import cached_curve_info, cached_function
from .custom import CustomActivation, Probe
from .kinds import GATED, SATURATION, SOFTMAX, ZEROING, kind_of, params_key

SAMPLE = 16384  # inputs at which the derivative is evaluated (strided sample)
SOFTMAX_PEAKED = 0.99


@dataclass(frozen=True)
class ActivationSite:
    """Where one activation call ran, and what it is."""

    activation: str  # torch.nn class name (a custom activation: its own class name)
    params: dict[str, Any]
    where: str  # qualified module name (module) or the module whose forward made the call
    source: str  # "module" or "functional"
    function: str  # "ReLU" / "MyReLU (ReLU subclass)" or "torch.relu"
    call: int  # 0-based count per (where, function)
    shape: list[int]
    custom: bool = False  # a module that is an activation in practice (probed after the forward)
    inside: tuple[str, tuple] | None = None  # key of the custom activation module the call ran in

    @property
    def key(self) -> tuple[str, tuple]:
        """(activation, params_key(params)): calls of the same function share it."""
        return self.activation, params_key(self.params)

    @property
    def kind(self) -> str:
        """What is measured: by torch.nn's kind; a custom activation is measured as zeroing
        until its probe says what it is."""
        return ZEROING if self.custom else kind_of(self.activation)


@dataclass(frozen=True)
class InputMeasure:
    histogram: Histogram | PendingHistogram | None = None
    derivative: int | None = None  # ticket in the PendingDerivatives
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutputMeasure:
    dead_fraction: float | None = None  # units zero for every example (zeroing kinds)
    dead_channel_fraction: float | None = None  # channels zero everywhere too
    batch: int | None = None
    saturated_fraction: float | None = None  # rows that put over 99% on one entry (softmax)


@dataclass(frozen=True)
class ActivationRecord:
    """One call of an activation during the forward pass, as recorded then."""

    site: ActivationSite
    input: InputMeasure
    output: OutputMeasure


@dataclass(frozen=True)
class DerivativeResult:
    mean: float | None  # mean derivative at the sampled inputs
    saturated: float | None  # fraction below 1% of the derivative's maximum (not for zeroing kinds)


class PendingDerivatives:
    """Derivatives at the sampled inputs of many activation calls, taken together after the
    forward pass: one autograd call per activation function, not one per call. The samples
    are small copies (at most ``SAMPLE`` values per call)."""

    def __init__(self) -> None:
        self._todo: dict[tuple, list[tuple[int, torch.Tensor]]] | None = {}
        self._tickets = 0

    def add(self, site: ActivationSite, xs: torch.Tensor) -> int:
        if self._todo is None:
            raise RuntimeError("the derivatives were taken already")
        ticket = self._tickets
        self._tickets += 1
        self._todo.setdefault((*site.key, xs.dtype, xs.device), []).append((ticket, xs))
        return ticket

    def run(
        self, custom: Mapping[tuple, CustomActivation], probes: Mapping[tuple, Probe]
    ) -> dict[int, DerivativeResult]:
        """The derivatives of every call, by ticket. ``custom`` and ``probes``: the modules
        that are activations in practice, by (class name, params_key); one that is not
        elementwise gets no derivative."""
        todo, self._todo = self._todo, None
        if todo is None:
            raise RuntimeError("the derivatives were taken already")
        results: dict[int, DerivativeResult] = {}
        for (name, key, dtype, device), items in todo.items():
            own = custom.get((name, key))
            if own is not None and not probes[(name, key)].elementwise:
                continue
            info = own.info() if own is not None else cached_curve_info(name, key)
            fn = own if own is not None else cached_function(name, key, dtype, device)
            with torch.enable_grad():
                xs = torch.cat([x for _, x in items]).requires_grad_(True)
                (dy,) = torch.autograd.grad(fn(xs).sum(), xs)
            # Per call: the mean of the derivatives and, outside the ReLU family (dead units
            # say it better), the fraction below 1% of the derivative's maximum; one
            # read-back for all calls. A call whose sum is not finite (NaN from non-finite
            # inputs, which are never "saturated") is averaged again over its non-NaN values.
            sizes = [x.numel() for _, x in items]
            parts = dy.split(sizes)
            sums = [part.sum() for part in parts]
            saturating = (probes[(name, key)].kind if own is not None else kind_of(name)) != ZEROING
            if saturating:
                low = (dy.abs() < SATURATION * info.derivative_max).to(dtype)
                sums += [part.sum() for part in low.split(sizes)]
            values = torch.stack(sums).tolist()
            for i, ((ticket, x), part) in enumerate(zip(items, parts)):
                mean_d = values[i] / x.numel()
                if not math.isfinite(mean_d):
                    kept = part[~torch.isnan(part)]
                    mean_d = float(kept.mean()) if kept.numel() else math.nan
                results[ticket] = DerivativeResult(
                    mean=mean_d if math.isfinite(mean_d) else None,
                    saturated=values[len(items) + i] / x.numel() if saturating else None,
                )
        return results


def measure_input(
    site: ActivationSite,
    x: torch.Tensor,
    bins: int,
    known: Histogram | PendingHistogram | None,
    derivatives: PendingDerivatives,
    histograms: PendingHistograms,
) -> InputMeasure:
    """Histogram of the inputs (``known`` when the caller already has it, else pending in
    ``histograms``) and, for elementwise activations, the derivative at a sample of them
    (strided, at most ``SAMPLE`` values), pending in ``derivatives``."""
    if not x.is_floating_point():
        return InputMeasure(notes=[f"input dtype {x.dtype} is not floating point; not measured"])
    hist = known if known is not None else histogram(x, bins, histograms)
    if site.kind in (SOFTMAX, GATED) or x.numel() == 0:
        return InputMeasure(hist)
    flat = as_float(x).reshape(-1)
    step = max(1, -(-flat.numel() // SAMPLE))
    xs = flat[::step].detach()
    xs = xs.float() if xs.dtype not in (torch.float32, torch.float64) else xs.clone()
    return InputMeasure(hist, derivatives.add(site, xs))


def measure_output(
    site: ActivationSite, y: torch.Tensor, zero_fraction: float | None = None, non_negative: bool = False
) -> OutputMeasure:
    """Dead units (zeroing activations) or peaked rows (softmax) from the real output.
    ``zero_fraction``: that of ``y``, when the caller has it (it is the dead fraction of a
    batch of one); ``non_negative``: the caller knows ``y``'s minimum is >= 0 (a ReLU's)."""
    kind = site.kind
    if kind == ZEROING and y.dim() >= 2 and y.shape[0] > 0:
        # A unit is dead when it is zero for every example (NaN is not zero). Everything is
        # counted through bool casts and min/max: comparing with zero branches on the data,
        # which is slow on ReLU outputs (half zeros) on CPU.
        y = y.detach()
        units = y[0] if y.shape[0] == 1 else y.abs().amax(dim=0)
        known = zero_fraction if y.shape[0] == 1 else None
        counts = [] if known is not None else [nonzero_count(units)]
        if units.dim() >= 2:  # per channel: dead at every position too
            flat = units.reshape(units.shape[0], -1)
            alive = flat.amax(dim=1).bool()  # NaN is True: alive
            if not (non_negative or y.shape[0] > 1):  # |y| above is >= 0 already
                alive |= flat.amin(dim=1).bool()
            counts.append(nonzero_count(alive))
        out = torch.stack(counts).tolist() if counts else []
        return OutputMeasure(
            dead_fraction=known if known is not None else 1.0 - out.pop(0) / units.numel(),
            dead_channel_fraction=1.0 - out[0] / units.shape[0] if out else None,
            batch=int(y.shape[0]),
        )
    if kind == SOFTMAX and y.numel():
        dim = site.params.get("dim")
        if site.activation == "Softmax2d":
            dim = -3
        if dim is None:
            return OutputMeasure()
        probs = as_float(y)
        if site.activation == "LogSoftmax":
            probs = probs.exp()
        return OutputMeasure(saturated_fraction=float((probs.amax(dim=dim) > SOFTMAX_PEAKED).float().mean()))
    return OutputMeasure()
