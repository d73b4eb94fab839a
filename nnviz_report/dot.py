"""Graphviz: DOT source for the autograd graph (full and module-level) and SVG from ``dot``.

Every label goes through ``graphviz.escape`` (backslashes doubled, never an HTML-like
label), no node carries a URL or tooltip (no ``<a>`` in the SVG), and ``dot`` runs as a
subprocess with a timeout. Node and cluster ids are derived from the graph's stable keys,
so the same model gives the same SVG.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import graphviz

from .capture.forward import ModuleCall
from .capture.graph import GraphCapture, GraphNode

INSTALL_HINT = (
    "Graphviz's `dot` program was not found on PATH, so the graph is not drawn. Install it "
    "(Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; conda: "
    "conda install -c conda-forge graphviz) and build the report again."
)

SKIP_COLOR = "#d9480f"
SKIP_FILL = "#ffc078"
FILL = {
    "op": "lightgrey",
    "param": "lightblue",
    "input": "lightblue",
    "leaf": "lightblue",
    "saved": "orange",
    "output": "darkolivegreen1",
    "view": "darkolivegreen3",
    "module": "#dbe4ff",
}


@dataclass
class ViewNode:
    id: str
    label: list[str]  # lines
    kind: str
    call: int | None  # ModuleCall it stands for / was created by
    skip: bool = False


@dataclass
class ViewGraph:
    """A graph ready to lay out: nodes nested in module-call clusters."""

    name: str
    nodes: list[ViewNode] = field(default_factory=list)
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)  # src, dst, kind, skip
    clusters: dict[int, ModuleCall] = field(default_factory=dict)  # call id -> call


def _short_op(op: str) -> str:
    return re.sub(r"Backward\d*$", "", op)


def _cluster_chain(call_id: int | None, calls: list[ModuleCall], clusters: dict[int, ModuleCall]) -> list[int]:
    chain = []
    while call_id is not None:
        if call_id in clusters:
            chain.append(call_id)
        call_id = calls[call_id].parent
    return chain[::-1]


def full_view(graph: GraphCapture, calls: list[ModuleCall]) -> ViewGraph:
    """torchviz's graph, node for node, boxed by the module calls that created the nodes."""
    per_call: dict[int, int] = {}
    for n in graph.nodes:
        if n.call is not None:
            per_call[n.call] = per_call.get(n.call, 0) + 1
    clusters = {}
    for c in calls:
        if c.parent is None:
            continue  # the root module is the whole graph
        if not c.leaf or per_call.get(c.id, 0) >= 2:
            clusters[c.id] = c
    view = ViewGraph("full", clusters=clusters)
    for n in graph.nodes:
        view.nodes.append(ViewNode(n.id, _full_label(n, calls, clusters), n.kind, n.call, n.skip))
    for e in graph.edges:
        view.edges.append((e.src, e.dst, e.kind, e.skip))
    return view


def _full_label(n: GraphNode, calls: list[ModuleCall], clusters: dict[int, ModuleCall]) -> list[str]:
    if n.kind == "op":
        lines = [n.op or "?"]
        if n.call is not None and n.call not in clusters and calls[n.call].parent is not None:
            lines.insert(0, calls[n.call].name)  # a one-node module call: name it on the node
        if n.skip:
            lines.append("(skip connection)")
        return lines
    return [n.name or "", n.shape or ""] if n.shape else [n.name or ""]


def module_view(graph: GraphCapture, calls: list[ModuleCall]) -> ViewGraph:
    """One node per module call that ran no child module, plus the operations written in
    ``forward`` methods (additions, concatenations, functional activations); parameters
    and their accumulators are left out."""
    nodes = {n.id: n for n in graph.nodes}
    preds: dict[str, list[str]] = {}
    for e in graph.edges:
        preds.setdefault(e.dst, []).append(e.src)
    group: dict[str, str | None] = {}
    view = ViewGraph("module", clusters={c.id: c for c in calls if not c.leaf and c.parent is not None})
    made: set[str] = set()
    for n in graph.nodes:
        if n.op == "AccumulateGrad":
            # An input's accumulator stands for the input; a parameter's is left out.
            inputs = [p for p in preds.get(n.id, []) if nodes[p].kind == "input"]
            group[n.id] = inputs[0] if inputs else None
            continue
        if n.kind in ("param", "saved", "view"):
            group[n.id] = None
            continue
        call = calls[n.call] if n.call is not None else None
        if call is not None and call.leaf and call.parent is not None:
            gid = f"m{call.id}"
            if gid not in made:
                shape = f"({', '.join(map(str, call.output_shape))})" if call.output_shape else ""
                view.nodes.append(ViewNode(gid, [call.name, f"{call.type} {shape}".strip()], "module", call.id))
                made.add(gid)
            group[n.id] = gid
        else:
            group[n.id] = n.id
            if n.kind == "op":
                label = [_short_op(n.op or "?")] + (["(skip connection)"] if n.skip else [])
            else:
                label = [n.name or "", n.shape or ""]
            view.nodes.append(ViewNode(n.id, label, n.kind, n.call, n.skip))
    skip_pairs = set()
    for s in graph.skips:
        chain = [group.get(x) for x in s.path] + [group.get(s.node)]
        chain = [g for i, g in enumerate(chain) if g is not None and (i == 0 or g != chain[i - 1])]
        skip_pairs |= set(zip(chain, chain[1:]))
    seen = set()
    for e in graph.edges:
        if e.kind != "data":
            continue
        a, b = group.get(e.src), group.get(e.dst)
        if a is None or b is None or a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        view.edges.append((a, b, "data", (a, b) in skip_pairs))
    for v in view.nodes:
        if v.id in nodes and nodes[v.id].skip:
            v.skip = True
    return view


def source(view: ViewGraph, calls: list[ModuleCall], prefix: str) -> str:
    """DOT text for ``view``; SVG element ids are ``prefix + node id`` and
    ``prefix + "c" + call id`` for clusters."""
    g = graphviz.Digraph(
        name=view.name,
        graph_attr={
            "rankdir": "TB",
            "ranksep": "0.22",
            "nodesep": "0.18",
            "newrank": "true",
            "bgcolor": "transparent",
            "fontname": "Helvetica",
            "fontsize": "11",
            "labeljust": "l",
        },
        node_attr={
            "style": "filled",
            "shape": "box",
            "fontsize": "10",
            "height": "0.2",
            "fontname": "monospace",
            "fillcolor": FILL["op"],
            "color": "#555555",
        },
        edge_attr={"arrowsize": "0.6", "color": "#666666"},
    )
    children: dict[int | None, list[int]] = {}
    for cid in view.clusters:
        chain = _cluster_chain(calls[cid].parent, calls, view.clusters)
        children.setdefault(chain[-1] if chain else None, []).append(cid)
    members: dict[int | None, list[ViewNode]] = {}
    for n in view.nodes:
        chain = _cluster_chain(n.call, calls, view.clusters)
        if n.kind == "module" and chain and chain[-1] == n.call:
            chain = chain[:-1]
        members.setdefault(chain[-1] if chain else None, []).append(n)

    rows = _parameter_rows(view)
    row_of = {nid: i for i, row in enumerate(rows) for nid in row}

    def emit(target: graphviz.Digraph, cluster: int | None) -> None:
        local_rows: dict[int, list[str]] = {}
        for n in members.get(cluster, []):
            attrs = {"id": prefix + n.id, "fillcolor": SKIP_FILL if n.skip else FILL.get(n.kind, FILL["op"])}
            if n.skip:
                attrs.update(color=SKIP_COLOR, penwidth="1.6")
            target.node(n.id, label=_label(n.label), **attrs)
            if n.id in row_of:
                local_rows.setdefault(row_of[n.id], []).append(n.id)
        for row in local_rows.values():
            if len(row) > 1:
                with target.subgraph() as same:
                    same.attr(rank="same")
                    for nid in row:
                        same.node(nid)
        for cid in children.get(cluster, []):
            call = calls[cid]
            with target.subgraph(name=f"cluster_{cid}") as sub:
                text = f"{call.name} · {call.type}" + (f" (call {call.call + 1})" if call.call else "")
                sub.attr(
                    label=_label([text]),
                    id=f"{prefix}c{cid}",
                    style="rounded",
                    color="#8c99a6",
                    fontcolor="#34495e",
                    fontname="Helvetica",
                    fontsize="10",
                )
                emit(sub, cid)

    emit(g, None)
    for src, dst, kind, skip in view.edges:
        attrs = {}
        if kind == "saved":
            attrs["dir"] = "none"
        elif kind == "view":
            attrs["style"] = "dotted"
        if skip:
            attrs.update(color=SKIP_COLOR, penwidth="2.2")
        g.edge(src, dst, **attrs)
    return g.source


def _parameter_rows(view: ViewGraph) -> list[list[str]]:
    """Each parameter, its AccumulateGrad and the op that first uses it, on one rank.

    Left to themselves, parameter nodes rank just above their op and overlap the previous
    block's ranks, which pushes every block sideways (a staircase layout on ResNets); on
    one row beside their op they keep the graph a single column.
    """
    kinds = {n.id: n.kind for n in view.nodes}
    succ: dict[str, list[str]] = {}
    for src, dst, kind, _ in view.edges:
        if kind == "data":
            succ.setdefault(src, []).append(dst)
    rows = []
    for n in view.nodes:
        if n.kind != "param":
            continue
        acc = next(iter(succ.get(n.id, [])), None)
        op = next(iter(succ.get(acc, [])), None) if acc else None
        if acc and op and kinds.get(op) == "op":
            rows.append([n.id, acc, op])
    return rows


def _label(lines: Iterable[str]) -> str:
    # escape() doubles backslashes (no \N, \G, \l tricks) and marks the text as not HTML;
    # the joined result is marked again so a name like "<b>x</b>" stays literal text.
    return graphviz.nohtml("\n".join(graphviz.escape(line) for line in lines))


@dataclass(frozen=True)
class SvgResult:
    svg: str | None
    error: str | None
    seconds: float


_SVG_TAGS = "svg|g|title|polygon|polyline|path|ellipse|text|circle|rect|line"
# dot escapes "<" in label text, so "<[^>]*" only ever spans a real tag.
_UNSAFE = re.compile(
    rf"<(?!/?(?:{_SVG_TAGS})[\s/>])|<[^>]*\s(?:on[\w.-]*|[\w.:-]*href)\s*=",
    re.I,
)


def _safe_svg(svg: str) -> bool:
    """Only drawing elements, no event handlers, no links."""
    return _UNSAFE.search(svg) is None


def dot_available() -> bool:
    return shutil.which("dot") is not None


def dot_version() -> str | None:
    path = shutil.which("dot")
    return _version_of(path) if path else None


@functools.lru_cache(maxsize=4)
def _version_of(path: str) -> str | None:
    try:
        out = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version\s+(\S+)", out.stderr + out.stdout)
    return m.group(1) if m else None


def render_svg(dot_source: str, timeout: float) -> SvgResult:
    """Lay out with ``dot -Tsvg``; the SVG is returned ready to inline in HTML."""
    started = time.perf_counter()
    if not dot_available():
        return SvgResult(None, INSTALL_HINT, 0.0)
    try:
        proc = subprocess.run(
            ["dot", "-Tsvg"], input=dot_source.encode("utf-8"), capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return SvgResult(None, f"dot did not finish within {timeout:g} s", time.perf_counter() - started)
    except OSError as exc:
        return SvgResult(None, f"dot could not be run ({exc})", time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return SvgResult(None, f"dot failed: {err[-1] if err else 'exit code ' + str(proc.returncode)}", seconds)
    svg = proc.stdout.decode("utf-8", "replace")
    svg = svg[svg.find("<svg"):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    head_end = svg.find(">") + 1
    svg = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end]) + svg[head_end:]
    if not _safe_svg(svg):
        return SvgResult(None, "dot produced SVG with links or scripts; refusing to embed it", seconds)
    return SvgResult(svg.strip(), None, seconds)
