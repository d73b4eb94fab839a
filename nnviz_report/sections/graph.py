"""The autograd graph, drawn by Graphviz: module views to drill through, and torchviz's graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import dot, dot_source
from ..capture.calls import ModuleCall
from ..capture.graph import GraphCapture
from ..capture.run import CapturedRun
from . import Notice, Section
from ._format import plural
from .feature_maps import anchor as fm_anchor
from .graph_layout import lay_out
from .graph_notices import REENTRANT_CHECKPOINT, checkpoint_text, layout_notices
from .graph_views import FULL_MAX_NODES, View, build_hierarchy, full_view, short_op
from .parameters import anchor as param_anchor

ID = "graph"
TITLE = "Autograd graph"
TEMPLATE = "sections/graph.html.j2"
FULL_DEFAULT_MAX = 100  # graphs up to this many nodes open on torchviz's full graph
REUSE_LIMIT = 8  # a parameter used by more ops than this (a recurrent weight) tangles the full view
MAX_MEMBERS = 40  # names listed for a fold or group box


def _collapse(names: list[str]) -> list[str]:
    """Consecutive repeats once: a Linear's AddmmBackward and TBackward are one module."""
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


class _Info:
    """What the page shows when a node is clicked or searched, per SVG element id."""

    def __init__(self, run: CapturedRun, graph: GraphCapture):
        self.calls = run.forward.calls
        self.model = run.model.class_name
        self.fm_calls = {layer.call_id for layer in run.forward.layers}
        self.param_modules = {n.name.rpartition(".")[0] for n in graph.nodes if n.kind == "param" and n.name}

    def call_item(self, call: ModuleCall) -> dict[str, Any]:
        item: dict[str, Any] = {"module": call.name, "type": call.type}
        if call.id in self.fm_calls:
            item["fm"] = fm_anchor(call.id)
        if call.name in self.param_modules:
            item["param"] = param_anchor(call.name)
        return item

    def view(self, view: View, prefix: str) -> dict[str, dict]:
        info = {}
        for n in view.nodes:
            if n.kind == "junction":
                item: dict[str, Any] = {
                    "label": "together: " + ", ".join(dot_source.printable(x) for x in n.label),
                    "kind": n.kind,
                }
                info[prefix + n.id] = item
                continue
            item = {"label": " ".join(dot_source.printable(x) for x in n.label if x), "kind": n.kind}
            if n.call is not None:
                item.update(self.call_item(self.calls[n.call]))
            if n.opens:
                item["opens"] = n.opens
            if n.members:
                names = [self.calls[c].name for c in n.members]
                item["members"] = names[:MAX_MEMBERS] + (
                    [f"… {len(names) - MAX_MEMBERS} more"] if len(names) > MAX_MEMBERS else []
                )
            if n.ops:
                item["ops"] = [dot_source.printable(x) for x in n.ops]
            info[prefix + n.id] = item
        for cid, call in view.clusters.items():
            item = {"label": f"{call.name} · {call.type}", "kind": "cluster", **self.call_item(call)}
            info[f"{prefix}c{cid}"] = item
        return info


def _data(note: str | None) -> dict[str, Any]:
    """The section's part of Report.data, for a graph of nothing yet."""
    return {
        "nodes": 0,
        "edges": 0,
        "residual_connections": 0,
        "concat_skips": 0,
        "branch_merges": 0,
        "skips": [],
        "merges": [],
        "views": [],
        "dot_version": dot.dot_version(),
        "note": note,
    }


def _context(note: str | None) -> dict[str, Any]:
    """The template's context, for a graph with nothing drawn."""
    return {
        "skips": [],
        "merges": [],
        "default": None,
        "root": None,
        "note": note,
        "timings": {},
        "full_drawn": False,
        "module_views": 0,
    }


def build(run: CapturedRun) -> Section:
    g = run.graph
    if g is None:
        note = run.graph_note or "the autograd graph was not captured (graph=False / --no-graph)"
        return Section(ID, TITLE, TEMPLATE, _data(note), summary="not captured", context=_context(note))
    calls = run.forward.calls
    data = _data(None)
    data.update(
        nodes=len(g.nodes),
        edges=len(g.edges),
        residual_connections=g.residual_count,
        concat_skips=g.concat_count,
        branch_merges=len(g.merges),
        note=g.note,
    )
    skips, merges = _connections(g, calls, run.model.class_name)
    data["skips"], data["merges"] = skips, merges
    notices: list[Notice] = []
    drawing = _draw(run, g, data["views"], notices) if g.nodes else _Drawing({}, [], {}, None, None, 0)
    if g.truncated:
        notices.append(Notice("warning", g.note or "the autograd graph was cut short", ID))
    checkpoints = sum(1 for n in g.nodes if n.op == REENTRANT_CHECKPOINT)
    if checkpoints:
        notices.append(Notice("warning", checkpoint_text(checkpoints), ID))
    summary = f"{plural(len(g.nodes), 'node')}, {plural(g.residual_count, 'residual connection')}"
    if g.concat_count:
        summary += f", {plural(g.concat_count, 'concatenation skip')}"
    return Section(
        id=ID,
        title=TITLE,
        template=TEMPLATE,
        data=data,
        context={
            "skips": skips,
            "merges": merges,
            "default": drawing.default,
            "root": drawing.root,
            "note": g.note,
            "timings": drawing.timings,
            "full_drawn": "full" in drawing.views,
            "module_views": drawing.module_views,
        },
        assets={"views": drawing.views, "index": drawing.index},
        notices=tuple(notices),
        summary=summary,
    )


def _connections(g: GraphCapture, calls: list[ModuleCall], model_name: str) -> tuple[list[dict], list[dict]]:
    """The skip connections and branch merges, each said by the modules it passes."""
    nodes = g.nodes
    held = {e.dst: nodes[e.src] for e in g.edges if nodes[e.src].kind == "input"}

    def where(i: int) -> str:
        n = nodes[i]
        if n.kind == "input":
            return n.name or "input"
        if n.op == "AccumulateGrad" and i in held:  # the input's accumulator stands for it
            return held[i].name or "input"
        if n.call is not None:
            return calls[n.call].name or model_name
        return n.name or short_op(n.op or "?")

    skips = [
        {
            "kind": s.kind,
            "module": calls[s.call].name if s.call is not None else "",
            "node": f"n{s.node}",
            "source": where(s.source),
            "through": _collapse([where(x) for x in s.path[1:]]),
            "projection": s.projection,
            "around": s.around,
        }
        for s in g.skips
    ]
    merges = [
        {
            "kind": m.kind,
            "module": calls[m.call].name if m.call is not None else "",
            "node": f"n{m.node}",
            "source": where(m.source),
            "branches": m.branches,
        }
        for m in g.merges
    ]
    return skips, merges


@dataclass(frozen=True)
class _Drawing:
    views: dict[str, dict]  # drawn view id -> its SVG, the info of its elements, title, parent, note
    index: list[dict[str, str]]  # where each module call is drawn, for the search
    timings: dict[str, float]  # layout seconds per view
    default: str | None  # the view the page opens on
    root: str | None  # the model's own view, when drawn
    module_views: int


def _draw(run: CapturedRun, g: GraphCapture, views: list[dict], notices: list[Notice]) -> _Drawing:
    """Lay out the module views and, when it is small enough, torchviz's full graph;
    ``views`` gets each view's entry for Report.data, ``notices`` what was not drawn."""
    calls = run.forward.calls
    hierarchy = build_hierarchy(g, calls, run.model.class_name)
    todo = [(v.id, v, f"g{i}-") for i, v in enumerate(hierarchy.views)]
    full = None
    reuse = _parameter_reuse(g)
    if len(g.nodes) <= FULL_MAX_NODES and not g.truncated and reuse <= REUSE_LIMIT:
        full = full_view(g, calls)
        todo.append(("full", full, "gf-"))
    elif reuse > REUSE_LIMIT:
        notices.append(
            Notice(
                "info",
                f"torchviz's full graph is not drawn: a parameter is used by {reuse} "
                "operations (a recurrent weight at every step), and the edges from it "
                "cross the whole graph, more than a layout can untangle in its budget; "
                "the module views show every step",
                ID,
            )
        )
    else:
        notices.append(
            Notice(
                "info",
                f"torchviz's full graph has {len(g.nodes):,} nodes, more than "
                f"{FULL_MAX_NODES:,}; it is not drawn as one picture: the module views "
                "show every module and operation",
                ID,
            )
        )
    results = lay_out(todo, calls, run.options.dot_timeout)
    info = _Info(run, g)
    timings: dict[str, float] = {}
    drawn: dict[str, dict] = {}
    for vid, view, prefix in todo:
        result = results[vid]
        timings[vid] = result.seconds
        views.append(
            {
                "id": vid,
                "title": dot_source.printable(view.title),
                "nodes": len(view.nodes),
                "edges": len(view.edges),
                "rendered": result.svg is not None,
                "error": result.error,
            }
        )
        if result.svg is not None:
            drawn[vid] = {
                "svg": result.svg,
                "info": info.view(view, prefix),
                "title": dot_source.printable(view.title),
                "parent": view.parent,
                "note": view.note,
            }
    # A box whose view was not drawn does not open.
    for entry in drawn.values():
        for item in entry["info"].values():
            if item.get("opens") and item["opens"] not in drawn:
                del item["opens"]
    prefixes = {vid: prefix for vid, _, prefix in todo}
    index = []
    for cid, (vid, node) in sorted(hierarchy.located.items()):
        if vid in drawn:
            c = calls[cid]
            index.append(
                {"label": c.name or run.model.class_name, "type": c.type, "view": vid, "node": prefixes[vid] + node}
            )
    notices.extend(layout_notices(views, results, hierarchy))
    module_drawn = "root" in drawn
    default = None
    if full is not None and "full" in drawn and (len(g.nodes) <= FULL_DEFAULT_MAX or not module_drawn):
        default = "full"
    elif module_drawn:
        default = "root"
    return _Drawing(drawn, index, timings, default, "root" if module_drawn else None, len(hierarchy.views))


def _parameter_reuse(g: Any) -> int:
    """The most operations one parameter feeds (through its accumulator): 1 in most models,
    the number of time steps for a recurrent weight."""
    feeds: dict[int, int] = {}
    accumulators = {n.id for n in g.nodes if n.op == "AccumulateGrad"}
    for e in g.edges:
        if e.kind == "data" and e.src in accumulators:
            feeds[e.src] = feeds.get(e.src, 0) + 1
    return max(feeds.values(), default=0)


def failed(exc: Exception) -> Section:
    """The section when building it failed: the report still builds, and says why."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    text = f"the graph could not be drawn ({type(exc).__name__}: {first}); the other sections are complete"
    return Section(
        ID,
        TITLE,
        TEMPLATE,
        _data(text),
        context=_context(None),
        notices=(Notice("warning", text, ID),),
        summary="not drawn",
    )
