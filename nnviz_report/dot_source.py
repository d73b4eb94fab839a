"""DOT text for a view of the autograd graph, and the layout settings its size calls for.

Every label goes through ``graphviz.escape`` (backslashes doubled, never an HTML-like label)
after control characters and lone surrogates are written as escapes; no node carries a URL
or tooltip (no ``<a>`` in the SVG). Node and cluster ids are derived from the graph's stable
keys, so the same model gives the same SVG.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import graphviz

from .capture.calls import ModuleCall
from .sections.graph_views import View

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
    "fold": "#e5dbff",
    "group": "#f1f3f5",
    "port": "#ffffff",
}
STYLE = {
    "module": "filled,rounded",
    "fold": "filled,rounded",
    "group": "filled,rounded,dashed",
    "port": "filled,rounded,dashed",
}


def _cluster_chain(call_id: int | None, calls: Sequence[ModuleCall], clusters: dict[int, ModuleCall]) -> list[int]:
    chain = []
    while call_id is not None:
        if call_id in clusters:
            chain.append(call_id)
        call_id = calls[call_id].parent
    return chain[::-1]


_HEAD = """digraph {name} {{
\tgraph [bgcolor=transparent fontname=Helvetica fontsize=11 labeljust=l newrank=true nodesep=0.18 \
rankdir=TB ranksep=0.22{extra}]
\tnode [color="#555555" fillcolor={fill} fontname=Courier fontsize=10 height=0.2 shape=box style=filled]
\tedge [arrowsize=0.6 color="#666666"]
"""
# Courier: a monospace font whose metrics dot knows without a text-layout plugin.
_CLUSTER_STYLE = 'style=rounded color="#8c99a6" fontcolor="#34495e" fontname=Helvetica fontsize=10'
_EDGE_ATTRS = {"saved": "dir=none", "view": "style=dotted"}
_SKIP_EDGE = f'color="{SKIP_COLOR}" penwidth=2.2'


def source(view: View, calls: Sequence[ModuleCall], prefix: str, extra: str = "") -> str:
    """DOT text for ``view``; SVG element ids are ``prefix + node id`` and
    ``prefix + "c" + call id`` for clusters (the full view's module boxes). ``extra``: more
    graph attributes (layout limits).

    Written directly (much faster than building it with ``graphviz.Digraph``): every label
    goes through :func:`_label`, every other value is ours (ids from stable keys, colours).
    """
    clusters = view.clusters
    children: dict[int | None, list[int]] = {}
    for cid in clusters:
        chain = _cluster_chain(calls[cid].parent, calls, clusters)
        children.setdefault(chain[-1] if chain else None, []).append(cid)
    members: dict[int | None, list] = {}
    for n in view.nodes:
        chain = _cluster_chain(n.call, calls, clusters) if clusters else []
        members.setdefault(chain[-1] if chain else None, []).append(n)

    rows = _parameter_rows(view)
    row_of = {nid: i for i, row in enumerate(rows) for nid in row}
    out = [
        _HEAD.format(
            name=_ident(view.id.replace(".", "_").replace("-", "_")),
            fill=FILL["op"],
            extra=(" " + extra) if extra else "",
        )
    ]

    def emit(cluster: int | None, indent: str) -> None:
        local_rows: dict[int, list[str]] = {}
        for n in members.get(cluster, []):
            fill = SKIP_FILL if n.skip and n.kind == "op" else FILL.get(n.kind, FILL["op"])
            extra_attrs = f' color="{SKIP_COLOR}" penwidth=1.6' if n.skip else ""
            style = STYLE.get(n.kind)
            if style:
                extra_attrs += f' style="{style}"'
            if n.kind == "fold":
                extra_attrs += " peripheries=2"
            if n.kind == "junction":  # a point where edges join: its label is in the page's info
                out.append(
                    f'{indent}{_ident(n.id)} [label="" shape=point width=0.09 fillcolor="#666666" '
                    f'id="{prefix}{_ident(n.id)}"]\n'
                )
                continue
            out.append(
                f'{indent}{_ident(n.id)} [label={_label(n.label)} fillcolor="{fill}" '
                f'id="{prefix}{_ident(n.id)}"{extra_attrs}]\n'
            )
            if n.id in row_of:
                local_rows.setdefault(row_of[n.id], []).append(n.id)
        for row in local_rows.values():
            if len(row) > 1:
                out.append(f"{indent}{{rank=same; {'; '.join(_ident(nid) for nid in row)}}}\n")
        for cid in children.get(cluster, []):
            call = calls[cid]
            text = f"{call.name} · {call.type}" + (f" (call {call.call + 1})" if call.call else "")
            out.append(f"{indent}subgraph cluster_{cid} {{\n")
            out.append(f'{indent}\tgraph [label={_label([text])} id="{prefix}c{cid}" {_CLUSTER_STYLE}]\n')
            emit(cid, indent + "\t")
            out.append(f"{indent}}}\n")

    emit(None, "\t")
    for src, dst, kind, skip in view.edges:
        attrs = [a for a in (_EDGE_ATTRS.get(kind), _SKIP_EDGE if skip else None) if a]
        tail = f" [{' '.join(attrs)}]" if attrs else ""
        out.append(f"\t{_ident(src)} -> {_ident(dst)}{tail}\n")
    out.append("}\n")
    return "".join(out)


def layout_cost(view: View) -> int:
    """About how many nodes dot's layout works on: the view's nodes plus the virtual nodes
    it adds along edges that span several ranks. dot's time grows with it (crossing
    minimisation and network simplex run over the virtual nodes too).

    Ranks as dot would roughly give them: longest path from the sources, then a few sweeps
    that move each node to the rank that shortens its edges most (dot's network simplex
    minimises the total edge length); a parameter shares its first op's rank."""
    index = {n.id: i for i, n in enumerate(view.nodes)}
    n = len(index)
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    edges = []
    for src, dst, _, _ in view.edges:
        a, b = index[src], index[dst]
        if a != b:
            preds[b].append(a)
            succs[a].append(b)
            edges.append((a, b))
    same = {index[x] for row in _parameter_rows(view) for x in row[:2]}
    indeg = [len(p) for p in preds]
    rank = [0] * n
    order = [i for i in range(n) if indeg[i] == 0]
    for a in order:  # grows while it is read: a topological order
        for b in succs[a]:
            rank[b] = max(rank[b], rank[a] + (0 if a in same else 1))
            indeg[b] -= 1
            if indeg[b] == 0:
                order.append(b)
    for _ in range(3):
        for i in reversed(order):
            if i in same or not succs[i]:
                continue
            hi = min(rank[b] for b in succs[i]) - 1
            lo = max((rank[a] + 1 for a in preds[i]), default=hi - 10**9)
            if hi > rank[i] and len(succs[i]) > len(preds[i]):
                rank[i] = hi
            elif lo < rank[i] and len(preds[i]) > len(succs[i]):
                rank[i] = max(lo, rank[i] - 10**9)
    return n + sum(max(0, rank[b] - rank[a] - 1) for a, b in edges if a not in same)


# Layout limits by cost (see docs/performance.md): dot's defaults while cheap; then fewer
# network-simplex iterations for ranking and x positions (nslimit1 / nslimit, factors of
# the node count) and fewer crossing-minimisation passes (mclimit); past that, straight
# edges too (the cheapest setting, also used to retry a module view that timed out). Past
# the last tier a view is not laid out. The cost is an estimate: the timeout still holds.
LAYOUT_TIERS = (
    (6_000, ""),
    (40_000, "nslimit=1 nslimit1=1 mclimit=0.3"),
    (60_000, "nslimit=0.5 nslimit1=0.5 mclimit=0.05 remincross=false splines=line"),
)


def layout_attrs(cost: int) -> str | None:
    """Graph attributes that keep the layout of a view of this cost fast, or None when no
    setting would (the view is not laid out)."""
    for limit, attrs in LAYOUT_TIERS:
        if cost <= limit:
            return attrs
    return None


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _ident(name: str) -> str:
    """Node, graph and SVG ids are ours (``n12``, ``m3``, ``full``): plain identifiers."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not a plain DOT identifier: {name!r}")
    return name


def _parameter_rows(view: View) -> list[list[str]]:
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
        if acc and op and kinds.get(op) == "op" and kinds.get(acc) == "op":
            rows.append([n.id, acc, op])
    return rows


_CONTROL = re.compile(r"[\x00-\x1f\x7f]|[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates (names from non-UTF-8 bytes)
    written as escapes: dot stops at a NUL and cannot encode a surrogate."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def _label(lines: Iterable[str]) -> str:
    """A quoted DOT string that dot shows as the literal text: ``graphviz.escape`` doubles
    every backslash (no \\N, \\G, \\l expansions), then every double quote is escaped. A
    quoted string is never an HTML-like label."""
    text = "\n".join(graphviz.escape(printable(line)) for line in lines)
    return '"' + text.replace('"', '\\"') + '"'
