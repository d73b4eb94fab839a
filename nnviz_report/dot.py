"""Graphviz: DOT source for the autograd graph (full and module-level) and SVG from ``dot``.

Every label goes through ``graphviz.escape`` (backslashes doubled, never an HTML-like
label), no node carries a URL or tooltip (no ``<a>`` in the SVG), and ``dot`` runs as a
subprocess with a timeout. Node and cluster ids are derived from the graph's stable keys,
so the same model gives the same SVG.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
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


_HEAD = """digraph {name} {{
\tgraph [bgcolor=transparent fontname=Helvetica fontsize=11 labeljust=l newrank=true nodesep=0.18 rankdir=TB ranksep=0.22]
\tnode [color="#555555" fillcolor={fill} fontname=Courier fontsize=10 height=0.2 shape=box style=filled]
\tedge [arrowsize=0.6 color="#666666"]
"""
# Courier: a monospace font whose metrics dot knows without a text-layout plugin.
_CLUSTER_STYLE = 'style=rounded color="#8c99a6" fontcolor="#34495e" fontname=Helvetica fontsize=10'
_EDGE_ATTRS = {"saved": "dir=none", "view": "style=dotted"}
_SKIP_EDGE = f'color="{SKIP_COLOR}" penwidth=2.2'


def source(view: ViewGraph, calls: list[ModuleCall], prefix: str) -> str:
    """DOT text for ``view``; SVG element ids are ``prefix + node id`` and
    ``prefix + "c" + call id`` for clusters.

    Written directly (5x faster than building it with ``graphviz.Digraph``): every label
    goes through :func:`_label`, every other value is ours (ids from stable keys, colours).
    """
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
    out = [_HEAD.format(name=_ident(view.name), fill=FILL["op"])]

    def emit(cluster: int | None, indent: str) -> None:
        local_rows: dict[int, list[str]] = {}
        for n in members.get(cluster, []):
            fill = SKIP_FILL if n.skip else FILL.get(n.kind, FILL["op"])
            extra = f' color="{SKIP_COLOR}" penwidth=1.6' if n.skip else ""
            out.append(f'{indent}{_ident(n.id)} [label={_label(n.label)} fillcolor="{fill}" '
                       f'id="{prefix}{_ident(n.id)}"{extra}]\n')
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


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _ident(name: str) -> str:
    """Node, graph and SVG ids are ours (``n12``, ``m3``, ``full``): plain identifiers."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not a plain DOT identifier: {name!r}")
    return name


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
    """A quoted DOT string that dot shows as the literal text: ``graphviz.escape`` doubles
    every backslash (no \\N, \\G, \\l expansions), then every double quote is escaped. A
    quoted string is never an HTML-like label."""
    text = "\n".join(graphviz.escape(line) for line in lines)
    return '"' + text.replace('"', '\\"') + '"'


@dataclass(frozen=True)
class SvgResult:
    svg: str | None
    error: str | None
    seconds: float


_SVG_TAGS = "svg|g|title|polygon|polyline|path|ellipse|text|circle|rect|line"
_SPACE = b" \t\n\r\f"  # what separates attributes in HTML
_OTHER_TAG = re.compile(rb"<(?!/?(?:" + _SVG_TAGS.encode() + rb")[ \t\n\r\f/>])", re.I)
_HANDLER_OR_LINK = re.compile(rb"[ \t\n\r\f](?:on[\w.-]*|[\w.:-]*href)[ \t\n\r\f]*=", re.I)


def _safe_svg(svg: str) -> bool:
    """Only drawing elements, no event handlers, no links: no tag but ``_SVG_TAGS``, and no
    ``on...=`` or ``...href=`` inside a tag (after a ``<`` with no ``>`` since; dot
    escapes "<" in label text, so such a ``<`` opens a real tag). Letters and word
    characters are ASCII's, as in HTML's tag and attribute names.

    The second part only looks where such an attribute could start: at a space before
    "on", or at the last space before an "href", found with bytes.find. One regex spanning
    from each ``<`` to each attribute took 10 ms on ResNet-50's graph (400 kB), holding
    the GIL; this takes 3 ms, most of it the tag scan and the encoding."""
    data = svg.encode("utf-8")  # bytes: lower() and find() at memory speed
    if _OTHER_TAG.search(data):
        return False
    low = data.lower()
    starts = set()
    for space in _SPACE:
        needle = bytes([space]) + b"on"
        at = low.find(needle)
        while at != -1:
            starts.add(at)
            at = low.find(needle, at + 1)
    at = low.find(b"href")
    while at != -1:
        starts.add(max(low.rfind(space, 0, at) for space in _SPACE))
        at = low.find(b"href", at + 1)
    for at in sorted(starts):
        if at >= 0 and _HANDLER_OR_LINK.match(data, at) and data.rfind(b"<", 0, at) > data.rfind(b">", 0, at):
            return False
    return True


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


def render_svg(dot_source: str, timeout: float, nice: int = 0) -> SvgResult:
    """Lay out with ``dot -Tsvg``; the SVG is returned ready to inline in HTML. ``nice``:
    how much lower than ours dot's scheduling priority is (where the system has one)."""
    started = time.perf_counter()
    if not dot_available():
        return SvgResult(None, INSTALL_HINT, 0.0)
    try:
        proc = subprocess.Popen(["dot", "-Tsvg"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=layout_environment())
    except OSError as exc:
        return SvgResult(None, f"dot could not be run ({exc})", time.perf_counter() - started)
    with proc:
        if nice:
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
        try:
            # errors="replace": a name with a lone surrogate (not UTF-8) is drawn with a '?'
            out, err = proc.communicate(dot_source.encode("utf-8", "replace"), timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return SvgResult(None, f"dot did not finish within {timeout:g} s", time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return SvgResult(None, f"dot failed: {lines[-1] if lines else 'exit code ' + str(proc.returncode)}", seconds)
    svg = out.decode("utf-8", "replace")
    svg = svg[svg.find("<svg"):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    head_end = svg.find(">") + 1
    svg = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end]) + svg[head_end:]
    if not _safe_svg(svg):
        return SvgResult(None, "dot produced SVG with links or scripts; refusing to embed it", seconds)
    return SvgResult(svg.strip(), None, seconds)


def layout_environment() -> dict[str, str] | None:
    """The environment ``dot`` runs in: one whose plugin folder (``GVBINDIR``) holds only
    Graphviz's core and dot-layout plugins, when that can be set up, else the inherited one.

    Without the Pango plugin, dot sizes labels from its built-in font metrics instead of
    starting fontconfig and shaping every label: layouts take half the time (ResNet-50's
    full graph 0.09 -> 0.05 s) and no longer depend on the fonts installed, while the
    browser draws the text with its own fonts either way. The folder is private to this
    process (``mkdtemp``: mode 0700) and removed at exit.
    """
    path = shutil.which("dot")
    return _plugin_environment(path) if path else None


@functools.lru_cache(maxsize=4)
def _plugin_environment(dot: str) -> dict[str, str] | None:
    try:
        probe = subprocess.run([dot, "-v", "-Tsvg"], input=b"digraph{}", capture_output=True, timeout=10)
        m = re.search(r'libdir = "([^"]+)"', probe.stderr.decode("utf-8", "replace"))
        if not m:
            return None
        libdir = m.group(1)
        wanted = [f for f in sorted(os.listdir(libdir))
                  if re.match(r"(lib)?gvplugin_(core|dot_layout)\b", f)]
        if not any("core" in f for f in wanted) or not any("dot_layout" in f for f in wanted):
            return None
        folder = tempfile.mkdtemp(prefix="nnviz-report-graphviz-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        for f in wanted:
            os.symlink(os.path.join(libdir, f), os.path.join(folder, f))
        env = dict(os.environ, GVBINDIR=folder)
        subprocess.run([dot, "-c"], env=env, capture_output=True, timeout=10, check=True)
        check = subprocess.run([dot, "-Tsvg"], input=b'digraph{a[label="ok"]}', env=env,
                               capture_output=True, timeout=10)
        if check.returncode != 0 or b"<svg" not in check.stdout:
            return None
        return env
    except (OSError, subprocess.SubprocessError, UnicodeError):
        return None
