"""Activation-function gallery and what the model's real inputs do to each activation."""

from __future__ import annotations

from typing import Any

from ..capture.activations.kinds import SATURATING, SOFTMAX, ZEROING, kind_of
from ..capture.activations.summary import ActivationCall, ActivationSummary
from ..capture.histograms import Histogram
from ..capture.run import ModelInfo
from . import Notice, Section, ref
from ._format import pct, plural

ID = "activations"
TITLE = "Activation functions"
TEMPLATE = "sections/activations.html.j2"
DEAD_WARN = 0.9  # units dead for every example
# Below this many examples "dead" says little: a healthy ReLU unit is 0 for about half of
# its inputs, so it reads ~50% on one example, ~25% on two, <1% on eight.
DEAD_MIN_BATCH = 8
SATURATED_WARN = 0.5  # inputs with |f'| below 1% of its maximum


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items() if v is not None)


def where_text(c: ActivationCall, root: str) -> str:
    if c.source == "module":
        text = f"{c.where or root} ({c.function})"
    else:
        text = f"{c.function} in {(c.where or root)}.forward"
    return text + (f", call {c.call + 1}" if c.call else "")


def _flags(c: ActivationCall, root: str) -> list[str]:
    kind = c.kind
    out = []
    if kind == ZEROING and c.dead_fraction is not None and c.dead_fraction >= DEAD_WARN:
        n = c.batch or 1
        text = f"{where_text(c, root)}: {pct(c.dead_fraction)} of units are dead (output 0 for " + (
            "the one example given; pass a batch for a firmer test)" if n == 1 else f"all {n} examples)"
        )
        if c.dead_channel_fraction:
            text += f"; {pct(c.dead_channel_fraction)} of channels are zero everywhere"
        out.append(text)
    if kind == SATURATING and c.saturated_fraction is not None and c.saturated_fraction >= SATURATED_WARN:
        out.append(
            f"{where_text(c, root)}: {pct(c.saturated_fraction)} of inputs are in the saturated "
            "region (|f′| below 1% of its maximum), where almost no gradient flows"
        )
    if kind == SOFTMAX and c.saturated_fraction is not None and c.saturated_fraction >= SATURATED_WARN:
        out.append(
            f"{where_text(c, root)}: {pct(c.saturated_fraction)} of rows put over 99% on one entry "
            "(a saturated softmax passes little gradient)"
        )
    return out


def build(model: ModelInfo, summary: ActivationSummary) -> Section:
    calls, rows, call_figures, warnings = _calls(summary, model.class_name)
    gallery, cards, gallery_figures = _gallery(summary)
    figures = {**call_figures, **gallery_figures}
    internals = [
        {
            "module": m,
            "type": t,
            "activations": names,
            "note": f"{t} applies {' and '.join(names)} inside its fused kernel; forward hooks cannot "
            "see those inputs, so they are not measured",
        }
        for m, t, names in summary.internals
    ]
    data = {
        "used": summary.used,
        "gallery_x": summary.gallery[0].curve.x if summary.gallery else [],
        "gallery": gallery,
        "calls": calls,
        "curves": summary.curves,
        "internal": internals,
        "flags": warnings,
    }
    notices = tuple(Notice("warning", w, ID) for w in warnings)
    n_calls = len(summary.calls)
    used_text = ", ".join(summary.used) if summary.used else "no activation functions"
    return Section(
        id=ID,
        title=TITLE,
        template=TEMPLATE,
        data=data,
        context={
            "rows": rows,
            "few_examples": min((r["few_examples"] for r in rows if r["few_examples"]), default=None),
            "dead_min_batch": DEAD_MIN_BATCH,
            "used_cards": [c for c in cards if c["used"]],
            "other_cards": [c for c in cards if not c["used"]],
            "internals": internals,
            "warnings": warnings,
            "used": summary.used,
        },
        figures=figures,
        notices=notices,
        summary=f"{used_text}; {plural(n_calls, 'call')} measured",
    )


def _calls(
    summary: ActivationSummary, root: str
) -> tuple[list[dict], list[dict[str, Any]], dict[str, dict], list[str]]:
    """Per call: its entry in Report.data, its table row, its figure; and the warnings."""
    calls = []
    rows: list[dict[str, Any]] = []
    figures = {}
    warnings: list[str] = []
    for i, (c, curve_key) in enumerate(zip(summary.calls, summary.call_curves)):
        flags = _flags(c, root)
        warnings.extend(flags)
        entry = {
            "activation": c.activation,
            "params": c.params,
            "function": c.function,
            "source": c.source,
            "where": c.where,
            "call": c.call,
            "shape": c.shape,
            "kind": c.kind,
            "dead_fraction": c.dead_fraction,
            "dead_channel_fraction": c.dead_channel_fraction,
            "saturated_fraction": c.saturated_fraction,
            "mean_derivative": c.mean_derivative,
            "batch": c.batch,
            "input_histogram": c.input_hist.as_dict() if c.input_hist else None,
            "curve": curve_key,
            "flagged": bool(flags),
            "notes": c.notes,
        }
        calls.append(entry)
        fig_id = None
        if c.input_hist is not None and curve_key is not None:
            fig_id = f"act-call-{i}"
            figures[fig_id] = _call_figure(i, c.input_hist, curve_key)
        few = c.dead_fraction is not None and c.batch is not None and c.batch < DEAD_MIN_BATCH
        rows.append(
            {
                "i": i,
                "where": where_text(c, root),
                "entry": entry,
                "figure": fig_id,
                "params_text": params_text(c.params),
                "few_examples": c.batch if few else None,
            }
        )
    return calls, rows, figures, warnings


def _gallery(summary: ActivationSummary) -> tuple[list[dict], list[dict], dict[str, dict]]:
    """Per gallery entry: its entry in Report.data, its card and its figure."""
    gallery = []
    cards = []
    figures = {}
    for i, g in enumerate(summary.gallery):
        gallery.append(
            {
                "name": g.name,
                "params": g.params,
                "kind": g.kind,
                "custom": g.custom,
                "used": g.used,
                "output_range": list(g.curve.output_range),
                "derivative_max": g.curve.derivative_max,
                "y": g.curve.y,
                "dy": g.curve.dy,
            }
        )
        figures[f"act-gallery-{i}"] = _gallery_figure(i, g.name)
        cards.append(
            {
                "i": i,
                "name": g.name,
                "params_text": params_text(g.params),
                "used": g.used,
                "kind": g.kind,
                "output_range": g.curve.output_range,
                "derivative_max": g.curve.derivative_max,
                "figure": f"act-gallery-{i}",
                "note": "the model's own module, called on a range of inputs" if g.custom else _gallery_note(g.name),
            }
        )
    return gallery, cards, figures


def _gallery_note(name: str) -> str:
    if kind_of(name) == SOFTMAX:
        return "shown on the 2-class slice [x, 0]: the first output as x varies"
    if name == "GLU":
        return "shown as GLU([x, x]) = x·σ(x)"
    if name == "RReLU":
        return "eval mode: the fixed slope (lower + upper) / 2"
    if name == "PReLU":
        return "learned slope (several slopes: their mean)"
    return ""


def _gallery_figure(i: int, name: str) -> dict:
    base = ("data", ID, "gallery", i)
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "f(x)",
                "x": ref("data", ID, "gallery_x"),
                "y": ref(*base, "y"),
                "line": {"width": 2},
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "f′(x)",
                "x": ref("data", ID, "gallery_x"),
                "y": ref(*base, "dy"),
                "line": {"width": 1.5, "dash": "dot"},
            },
        ],
        "layout": {
            "height": 220,
            "margin": {"l": 40, "r": 10, "t": 10, "b": 30},
            "xaxis": {"title": {"text": "x"}, "range": [-6, 6], "zeroline": True},
            "yaxis": {"zeroline": True},
            "legend": {"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
            "showlegend": True,
        },
    }


def _call_figure(i: int, h: Histogram, curve_key: str) -> dict:
    width = (h.hi - h.lo) / len(h.counts) if h.hi > h.lo else 1.0
    pad = max((h.hi - h.lo) * 0.05, 0.1)
    curve = ("data", ID, "curves", curve_key)
    return {
        "data": [
            {
                "type": "bar",
                "name": "inputs",
                "x0": h.lo + width / 2,
                "dx": width,
                "y": ref("data", ID, "calls", i, "input_histogram", "counts"),
                "yaxis": "y2",
                "marker": {"opacity": 0.35},
                "hovertemplate": "x≈%{x:.3g}: %{y} inputs<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "f(x)",
                "x": ref(*curve, "x"),
                "y": ref(*curve, "y"),
                "line": {"width": 2},
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "f′(x)",
                "x": ref(*curve, "x"),
                "y": ref(*curve, "dy"),
                "line": {"width": 1.5, "dash": "dot"},
            },
        ],
        "layout": {
            "height": 230,
            "margin": {"l": 40, "r": 45, "t": 10, "b": 30},
            "bargap": 0,
            "xaxis": {"range": [h.lo - pad, h.hi + pad], "title": {"text": "input"}},
            "yaxis": {"zeroline": True},
            "yaxis2": {
                "overlaying": "y",
                "side": "right",
                "showgrid": False,
                "title": {"text": "count"},
                "tickmode": "auto",
                "rangemode": "tozero",
            },
            "legend": {"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
        },
    }
