"""The autograd graph, drawn by Graphviz: a module-level view and torchviz's full graph."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .. import dot
from ..capture.forward import ModuleCall
from ..capture.run import CapturedRun
from . import Notice, Section
from ._format import plural
from .feature_maps import anchor as fm_anchor
from .parameters import anchor as param_anchor

ID = "graph"
FULL_DEFAULT_MAX = 150  # larger graphs open on the module view
FULL_MAX_NODES = 6000  # larger graphs get the module view only
NICE = {"module": 10, "full": 0}  # dot's priority below ours, per view


def _node_info(view: dot.ViewGraph, calls: list[ModuleCall], prefix: str, fm_calls: set[int], param_modules: set[str]) -> dict:
    info = {}
    for n in view.nodes:
        call = calls[n.call] if n.call is not None else None
        item = {"label": " ".join(n.label), "kind": n.kind}
        if call is not None:
            item["module"] = call.name
            item["type"] = call.type
            if call.id in fm_calls:
                item["fm"] = fm_anchor(call.id)
            if call.name in param_modules:
                item["param"] = param_anchor(call.name)
        info[prefix + n.id] = item
    for cid, call in view.clusters.items():
        item = {"label": f"{call.name} · {call.type}", "kind": "cluster", "module": call.name, "type": call.type}
        if call.name in param_modules:
            item["param"] = param_anchor(call.name)
        info[f"{prefix}c{cid}"] = item
    return info


def _collapse(names: list[str]) -> list[str]:
    """Consecutive repeats once: a Linear's AddmmBackward and TBackward are one module."""
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


def build(run: CapturedRun) -> Section:
    g = run.graph
    calls = run.forward.calls
    notices: list[Notice] = []
    views = []
    data = {
        "nodes": 0,
        "edges": 0,
        "residual_connections": 0,
        "concat_skips": 0,
        "skips": [],
        "views": [],
        "dot_version": dot.dot_version(),
        "note": None,
    }
    if g is None:
        data["note"] = run.graph_note or "the autograd graph was not captured (graph=False / --no-graph)"
        return Section(ID, "Autograd graph", "sections/graph.html.j2", data, summary="not captured",
                       view={"views": [], "skips": [], "default": None, "note": data["note"], "timings": {}})
    data.update(nodes=len(g.nodes), edges=len(g.edges), residual_connections=g.residual_count,
                concat_skips=sum(1 for s in g.skips if s.kind == "concat"), note=g.note)
    nodes = {n.id: n for n in g.nodes}

    def where(node_id: str) -> str:
        n = nodes[node_id]
        if n.kind == "input":
            return n.name or "input"
        if n.call is not None:
            return calls[n.call].name or run.model.class_name
        return n.name or n.op or "?"

    skips = []
    for s in g.skips:
        skips.append({
            "kind": s.kind,
            "module": calls[s.call].name if s.call is not None else "",
            "node": s.node,
            "source": where(s.source),
            "through": _collapse([where(x) for x in s.path[1:]]),
            "projection": s.projection,
        })
    data["skips"] = skips

    fm_calls = {layer.call_id for layer in run.forward.layers}
    param_modules = {n.name.rpartition(".")[0] for n in g.nodes if n.kind == "param" and n.name}
    timings = {}
    assets: dict[str, dict] = {}
    if g.nodes:
        candidates = [("module", "Modules", dot.module_view(g, calls))]
        if len(g.nodes) <= FULL_MAX_NODES:
            candidates.append(("full", "Autograd graph (torchviz)", dot.full_view(g, calls)))
        else:
            notices.append(Notice("info", f"the full autograd graph has {len(g.nodes)} nodes, more than "
                                          f"{FULL_MAX_NODES}; only the module view is drawn", ID))
        sources = [dot.source(view, calls, f"g{key[0]}-") for key, _, view in candidates]
        # Both layouts at once: dot runs in its own process, the threads only wait for it.
        # The module view's dot yields the CPU to the rest of the report (NICE).
        with ThreadPoolExecutor(len(sources)) as pool:
            results = list(pool.map(lambda src, key: dot.render_svg(src, run.options.dot_timeout, NICE[key]),
                                    sources, [key for key, _, _ in candidates]))
        for (key, label, view), result in zip(candidates, results):
            prefix = f"g{key[0]}-"
            timings[key] = result.seconds
            views.append({"id": key, "label": label, "nodes": len(view.nodes), "edges": len(view.edges),
                          "error": result.error, "drawn": result.svg is not None})
            if result.svg:
                assets[key] = {"svg": result.svg, "info": _node_info(view, calls, prefix, fm_calls, param_modules)}
            data["views"].append({"id": key, "nodes": len(view.nodes), "edges": len(view.edges),
                                  "rendered": result.svg is not None, "error": result.error})
        errors = {v["error"] for v in views if v["error"]}
        if dot.INSTALL_HINT in errors:
            notices.append(Notice("warning", dot.INSTALL_HINT, ID))
        else:
            for v in views:
                if v["error"]:
                    notices.append(Notice("warning", f"{v['label']}: {v['error']}; "
                                          + ("the module view is shown instead" if v["id"] == "full" else "not drawn"), ID))
    drawn = [v for v in views if v["drawn"]]
    default = None
    if drawn:
        full = next((v for v in drawn if v["id"] == "full"), None)
        default = "full" if full is not None and len(g.nodes) <= FULL_DEFAULT_MAX else drawn[0]["id"]
    n_res = g.residual_count
    summary = f"{plural(len(g.nodes), 'node')}, {plural(n_res, 'residual connection')}"
    if data["concat_skips"]:
        summary += f", {plural(data['concat_skips'], 'concatenation skip')}"
    return Section(
        id=ID,
        title="Autograd graph",
        template="sections/graph.html.j2",
        data=data,
        view={"views": views, "skips": skips, "default": default, "note": g.note, "timings": timings},
        assets={"views": assets},
        notices=tuple(notices),
        summary=summary,
    )
