"""The activations as the report shows them: each call finished (its histogram counted, its
derivatives in), the curves over the inputs the model really gave, and the gallery.

:func:`measure_calls` does what needs the model's custom activation modules (probing
them, the derivatives, the curves), in the mode of the forward pass; then
:func:`summarise_activations` puts the finished calls together once the histograms are
counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..histograms import CountedHistograms, Histogram
from .curves import GALLERY_VARIANTS, CurveInfo, curve_info, curve_over
from .custom import CustomActivation, Probe, running_custom
from .kinds import ZEROING, kind_of, params_key
from .measure import ActivationRecord, DerivativeResult, PendingDerivatives

Internals = list[tuple[str, str, list[str]]]  # (module, type, activations) fused in RNNs


@dataclass(frozen=True)
class ActivationCall:
    """One call of an activation during the forward pass, reduced to numbers."""

    activation: str  # torch.nn class name
    params: dict[str, Any]
    where: str  # qualified module name (module) or the module whose forward made the call
    source: str  # "module" or "functional"
    function: str  # "ReLU" / "MyReLU (ReLU subclass)" or "torch.relu"
    call: int  # 0-based count per (where, function)
    shape: list[int]
    kind: str  # ZEROING, SATURATING, ...: kind_of(activation), or a custom activation's
    custom: bool  # a module that is an activation in practice
    input_hist: Histogram | None
    dead_fraction: float | None
    dead_channel_fraction: float | None
    saturated_fraction: float | None
    mean_derivative: float | None
    batch: int | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GalleryEntry:
    name: str
    params: dict[str, Any]
    used: bool
    curve: CurveInfo
    kind: str = ""
    custom: bool = False  # a module that is an activation in practice, not one of torch.nn's

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", kind_of(self.name))


@dataclass(frozen=True)
class MeasuredActivations:
    """The activation calls after the pass: probed, derivatives taken, curves drawn. The
    counts of their input histograms may still be pending."""

    calls: list[ActivationRecord]  # the calls the report lists (see measure_calls)
    derivatives: dict[int, DerivativeResult]
    probes: dict[tuple, Probe]  # custom activation modules, by (class name, params_key)
    curves: dict[str, dict[str, Any]]  # dense curves over the observed input ranges
    curve_keys: dict[tuple, str]  # (activation, params_key) -> key into curves
    gallery: list[GalleryEntry]
    internals: Internals
    used: list[str]  # torch.nn class names, in order of first use


@dataclass(frozen=True)
class ActivationSummary:
    calls: list[ActivationCall]
    call_curves: list[str | None]  # per call: key into ``curves``
    curves: dict[str, dict[str, Any]]  # dense curves over the observed input ranges
    gallery: list[GalleryEntry]
    internals: Internals
    used: list[str]  # torch.nn class names, in order of first use


def measure_calls(
    records: Sequence[ActivationRecord],
    internals: Internals,
    custom: Mapping[tuple, CustomActivation],
    derivatives: PendingDerivatives,
    training: bool | None,
) -> MeasuredActivations:
    """Probe the custom activation modules, take every call's derivatives and draw the
    curves, with the custom modules in the mode of the forward pass (``training``; None:
    as they are) and the global random state untouched.

    A custom module that is elementwise stands for the calls inside it; one that is not is
    no activation, and the calls inside it are listed as they are."""
    with running_custom(custom.values(), training):
        probes = {k: c.probe() for k, c in custom.items()}
        results = derivatives.run(custom, probes)
        calls = [
            r
            for r in records
            if not (
                (r.site.custom and not probes[r.site.key].elementwise)
                or (r.site.inside is not None and probes[r.site.inside].elementwise)
            )
        ]
        return _with_curves(calls, results, probes, internals, custom)


def _with_curves(
    calls: list[ActivationRecord],
    derivatives: dict[int, DerivativeResult],
    probes: dict[tuple, Probe],
    internals: Internals,
    custom: Mapping[tuple, CustomActivation],
) -> MeasuredActivations:
    """The gallery (every torch.nn activation; the used ones first, with the parameters the
    model used) and, per used (activation, parameters), a curve dense enough to be read at
    any observed input; a custom module that is not elementwise gets no curve."""
    drawable = {k for k in custom if probes[k].elementwise}
    used: list[str] = []
    variants: dict[tuple[str, tuple], dict[str, Any]] = {}
    ranges: dict[tuple[str, tuple], list[float]] = {}
    for r in calls:
        site, hist = r.site, r.input.histogram
        if site.activation not in used:
            used.append(site.activation)
        k = site.key
        variants.setdefault(k, site.params)
        if hist is not None:
            lo_hi = ranges.setdefault(k, [hist.lo, hist.hi])
            lo_hi[0] = min(lo_hi[0], hist.lo)
            lo_hi[1] = max(lo_hi[1], hist.hi)
    for _, _, names in internals:
        for n in names:
            if n not in used:
                used.append(n)

    def info(name: str, params: Mapping[str, Any]) -> CurveInfo:
        own = custom.get((name, params_key(params)))
        return own.info() if own is not None else curve_info(name, params)

    curves: dict[str, dict[str, Any]] = {}
    keys: dict[tuple, str] = {}
    for k, params in variants.items():
        if k not in ranges or (k in custom and k not in drawable):
            continue
        lo, hi = ranges[k]
        x, y, dy = curve_over(k[0], params, lo, hi, custom.get(k))
        key = f"c{len(curves)}"
        keys[k] = key
        curves[key] = {
            "activation": k[0],
            "params": params,
            "x": x,
            "y": y,
            "dy": dy,
            "derivative_max": info(k[0], params).derivative_max,
        }

    gallery = [
        GalleryEntry(k[0], p, True, info(k[0], p), kind=probes[k].kind if k in custom else "", custom=k in custom)
        for k, p in variants.items()
        if k not in custom or k in drawable
    ]
    shown = set(variants)
    for _, _, names in internals:
        for n in names:
            default = next(p for v, p in GALLERY_VARIANTS if v == n)
            if (n, params_key(default)) not in shown:
                shown.add((n, params_key(default)))
                gallery.append(GalleryEntry(n, default, True, curve_info(n, default)))
    for name, params in GALLERY_VARIANTS:
        if (name, params_key(params)) not in shown:
            gallery.append(GalleryEntry(name, params, False, curve_info(name, params)))
    return MeasuredActivations(calls, derivatives, probes, curves, keys, gallery, internals, used)


def summarise_activations(measured: MeasuredActivations, counted: CountedHistograms) -> ActivationSummary:
    """The finished calls (histograms counted) with their curves, the gallery and the rest."""
    calls = [_finished(r, measured, counted) for r in measured.calls]
    call_curves = [measured.curve_keys.get(r.site.key) for r in measured.calls]
    return ActivationSummary(calls, call_curves, measured.curves, measured.gallery, measured.internals, measured.used)


def _finished(record: ActivationRecord, measured: MeasuredActivations, counted: CountedHistograms) -> ActivationCall:
    site, out = record.site, record.output
    kind = measured.probes[site.key].kind if site.custom else site.kind
    dead = (out.dead_fraction, out.dead_channel_fraction)
    if site.custom and kind != ZEROING:
        dead = (None, None)
    ticket = record.input.derivative
    derivative = measured.derivatives.get(ticket) if ticket is not None else None
    saturated = out.saturated_fraction
    if derivative is not None and derivative.saturated is not None:
        saturated = derivative.saturated
    return ActivationCall(
        activation=site.activation,
        params=site.params,
        where=site.where,
        source=site.source,
        function=site.function,
        call=site.call,
        shape=site.shape,
        kind=kind,
        custom=site.custom,
        input_hist=counted.finished(record.input.histogram),
        dead_fraction=dead[0],
        dead_channel_fraction=dead[1],
        saturated_fraction=saturated,
        mean_derivative=derivative.mean if derivative is not None else None,
        batch=out.batch,
        notes=record.input.notes,
    )
