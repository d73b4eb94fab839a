"""Parameters before vs after training: biases value by value, weights by distribution."""

from __future__ import annotations

from ..capture.histograms import Histogram
from ..capture.parameters import ParameterComparison, ParamRecord
from ..capture.run import ModelInfo
from . import Section, ref
from ._format import integer_ticks, ordinal, plotly_text, plural
from .parameter_notices import notices as parameter_notices

ID = "parameters"
TITLE = "Parameters before vs after training"
TEMPLATE = "sections/parameters.html.j2"
OPEN_MODULES = 12  # cards start open when the model has at most this many modules
TRAJECTORY_LINES = 200


def anchor(module: str) -> str:
    return f"pm-{module or '(root)'}"


def _record_data(r: ParamRecord) -> dict:
    return {
        "name": r.name,
        "module": r.module,
        "shape": r.shape,
        "dtype": r.dtype,
        "numel": r.numel,
        "requires_grad": r.requires_grad,
        "is_bias": r.is_bias,
        "before": r.before.as_dict() if r.before else None,
        "after": r.after.as_dict(),
        "abs_change": r.abs_change,
        "relative_change": r.relative_change,
        "max_abs_change": r.max_abs_change,
        "flags": r.flags,
        "hist_before": r.hist_before.as_dict() if r.hist_before else None,
        "hist_after": r.hist_after.as_dict() if r.hist_after else None,
        "bias_before": r.bias_before,
        "bias_after": r.bias_after,
        "history": [p.__dict__ for p in r.history] or None,
        "bias_history": r.bias_history,
        "bias_history_index": r.bias_history_index,
    }


def build(model: ModelInfo, comp: ParameterComparison) -> Section:
    records = comp.records
    has_before = bool(comp.labels)
    data = [_record_data(r) for r in records]
    figures: dict[str, dict] = {}
    scatter: dict[str, dict] = {}
    modules: dict[str, list[dict]] = {}
    for i, r in enumerate(records):
        figs = []
        if r.is_bias and r.bias_before is not None:
            figures[f"par-bias-{i}"] = _bias_figure(i, r)
            figs.append(f"par-bias-{i}")
        if r.before is not None:
            figures[f"par-id-{i}"] = _identity_figure(i, r)
            figs.append(f"par-id-{i}")
            if r.scatter_before is not None:
                scatter[str(i)] = {"before": r.scatter_before, "after": r.scatter_after, "every": r.scatter_every}
        if r.hist_after is not None and (not r.is_bias or r.before is None):
            figures[f"par-hist-{i}"] = _hist_figure(i, r, comp.labels[0] if comp.labels else "before")
            figs.append(f"par-hist-{i}")
        if r.bias_history:
            figures[f"par-bh-{i}"] = _bias_history_figure(i, r)
            figs.append(f"par-bh-{i}")
        modules.setdefault(r.module, []).append({"i": i, "record": data[i], "figures": figs})

    cards = [
        {
            "module": m,
            "anchor": anchor(m),
            "label": m or model.class_name,
            "params": params,
            "flagged": any(p["record"]["flags"] for p in params),
        }
        for m, params in modules.items()
    ]
    if records:
        figures["par-change" if has_before else "par-norms"] = _overview_figure(records, has_before)
    if has_before and any(r.history for r in records):
        figures["par-trajectory"] = _trajectory_figure(records)

    notices = parameter_notices(comp)

    moved = [r for r in records if r.relative_change is not None]
    if has_before:
        summary = f"{plural(len(records), 'tensor')} compared with {comp.labels[0]}"
        if moved:
            top = max(moved, key=lambda r: r.relative_change or 0.0)  # moved: all have one
            summary += f"; largest relative change {top.relative_change:.3g} ({top.name})"
    else:
        summary = f"{plural(len(records), 'tensor')}; no before state"
    return Section(
        id=ID,
        title=TITLE,
        template=TEMPLATE,
        data=data,
        context={
            "cards": cards,
            "has_before": has_before,
            "labels": comp.labels,
            "sources": comp.sources,
            "open": len(cards) <= OPEN_MODULES,
            "overview": "par-change" if has_before else "par-norms",
            "trajectory": "par-trajectory" in figures,
            "n_records": len(records),
        },
        figures=figures,
        assets={"scatter": scatter},
        notices=tuple(notices),
        summary=summary,
    )


def _legend() -> dict:
    return {"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"}


def _bias_figure(i: int, r: ParamRecord) -> dict:
    base = ("data", ID, i)
    marker = {"size": 5 if r.numel <= 512 else 3}
    return {
        "data": [
            {"type": "scatter", "mode": "markers", "name": "before", "y": ref(*base, "bias_before"), "marker": marker},
            {"type": "scatter", "mode": "markers", "name": "after", "y": ref(*base, "bias_after"), "marker": marker},
        ],
        "layout": {
            "height": 240,
            "margin": {"l": 50, "r": 10, "t": 10, "b": 35},
            "legend": _legend(),
            "xaxis": {"title": {"text": "index"}, **integer_ticks(r.numel)},
            "yaxis": {"title": {"text": "bias value"}},
        },
    }


def _identity_figure(i: int, r: ParamRecord) -> dict:
    if r.is_bias:
        x, y = ref("data", ID, i, "bias_before"), ref("data", ID, i, "bias_after")
        label = "values"
    else:
        x, y = ref("assets", ID, "scatter", i, "before"), ref("assets", ID, "scatter", i, "after")
        label = "values" if r.scatter_every == 1 else f"every {ordinal(r.scatter_every)} value"
    before = r.before
    assert before is not None  # drawn only with a before-state
    ends = [v for v in (before.min, r.after.min, before.max, r.after.max) if v is not None]
    lo, hi = (min(ends), max(ends)) if ends else (0.0, 1.0)
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "name": label,
                "x": x,
                "y": y,
                "marker": {"size": 4, "opacity": 0.6},
                "hovertemplate": "before %{x:.4g}<br>after %{y:.4g}<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "unchanged (y = x)",
                "x": [lo, hi],
                "y": [lo, hi],
                "line": {"dash": "dash", "width": 1},
                "hoverinfo": "skip",
            },
        ],
        "layout": {
            "height": 240,
            "margin": {"l": 50, "r": 10, "t": 10, "b": 35},
            "legend": _legend(),
            "xaxis": {"title": {"text": "before"}},
            "yaxis": {"title": {"text": "after"}},
        },
    }


def _bars(i: int, key: str, name: str, h: Histogram) -> dict:
    # The name (a snapshot's label, perhaps a checkpoint's file name) as Plotly text, and
    # into the hover label by reference: inside the template, "%{...}" would be read too.
    width = (h.hi - h.lo) / len(h.counts) if h.hi > h.lo else 1.0
    return {
        "type": "bar",
        "name": plotly_text(name),
        "x0": h.lo + width / 2,
        "dx": width,
        "y": ref("data", ID, i, key, "counts"),
        "marker": {"opacity": 0.55},
        "hovertemplate": "≈%{x:.3g}: %{y}<extra>%{fullData.name}</extra>",
    }


def _hist_figure(i: int, r: ParamRecord, before_label: str) -> dict:
    after = r.hist_after
    assert after is not None  # drawn only with a histogram
    traces = []
    if r.hist_before is not None:
        traces.append(_bars(i, "hist_before", before_label, r.hist_before))
    traces.append(_bars(i, "hist_after", "after", after))
    sampled = after.every > 1
    return {
        "data": traces,
        "layout": {
            "height": 240,
            "margin": {"l": 50, "r": 10, "t": 10, "b": 35},
            "barmode": "overlay",
            "bargap": 0,
            "legend": _legend(),
            "xaxis": {"title": {"text": "value"}},
            "yaxis": {"title": {"text": "count" + (f" (every {ordinal(after.every)})" if sampled else "")}},
        },
    }


def _bias_history_figure(i: int, r: ParamRecord) -> dict:
    trace = {
        "type": "heatmap",
        "z": ref("data", ID, i, "bias_history"),
        "y": [plotly_text(p.label) for p in r.history],
        "colorscale": "RdBu",  # plotly.js's RdBu runs blue (low) to red (high), as the feature maps' scale
        "zmid": 0,
        "hovertemplate": "%{y}, index %{x}: %{z:.4g}<extra></extra>",
    }
    if r.bias_history_index is not None:
        trace["x"] = ref("data", ID, i, "bias_history_index")
    return {
        "data": [trace],
        "layout": {
            "height": 60 + 22 * len(r.history),
            "margin": {"l": 80, "r": 10, "t": 10, "b": 35},
            "xaxis": {"title": {"text": "bias index"}},
            "yaxis": {"type": "category", "autorange": "reversed"},
        },
    }


def _overview_figure(records: list[ParamRecord], has_before: bool) -> dict:
    names_ = [plotly_text(r.name) for r in records]
    colors = ["#e8590c" if r.is_bias else "#1c7ed6" for r in records]
    if has_before:
        y = [r.relative_change for r in records]
        positive = [v for v in y if v]
        log = bool(positive) and max(positive) / min(positive) > 100
        title = "‖after − before‖ / ‖before‖"
        hover = "%{x}<br>relative change %{y:.4g}<extra></extra>"
    else:
        y = [r.after.norm for r in records]
        log = False
        title = "‖value‖ (L2 norm)"
        hover = "%{x}<br>norm %{y:.4g}<extra></extra>"
    return {
        "data": [{"type": "bar", "x": names_, "y": y, "marker": {"color": colors}, "hovertemplate": hover}],
        "layout": {
            "height": 320,
            "margin": {"l": 60, "r": 10, "t": 10, "b": 40},
            "xaxis": {
                "title": {"text": "parameter tensors, in model order (blue: weights, orange: biases)"},
                "showticklabels": len(records) <= 40,
                "tickangle": -45,
                "automargin": True,
            },
            "yaxis": {"title": {"text": title}, "type": "log" if log else "linear"},
        },
    }


def _trajectory_figure(records: list[ParamRecord]) -> dict:
    with_history = [r for r in records if r.history]
    if len(with_history) > TRAJECTORY_LINES:
        with_history = sorted(with_history, key=lambda r: -(r.relative_change or 0))[:TRAJECTORY_LINES]
    traces = []
    for r in with_history:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": plotly_text(r.name),
                "x": [plotly_text(p.label) for p in r.history],
                "y": [p.relative_change for p in r.history],
                "marker": {"size": 4},
                "line": {"width": 1},
                "hovertemplate": "%{fullData.name}<br>%{x}: %{y:.4g}<extra></extra>",
            }
        )
    return {
        "data": traces,
        "layout": {
            "height": 340,
            "margin": {"l": 60, "r": 10, "t": 10, "b": 40},
            "showlegend": len(traces) <= 12,
            "xaxis": {"title": {"text": "checkpoint"}, "type": "category"},
            "yaxis": {"title": {"text": "‖θ − θ₀‖ / ‖θ₀‖"}},
        },
    }
