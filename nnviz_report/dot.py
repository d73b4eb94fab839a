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
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import graphviz

from .capture.forward import ModuleCall
from .sections.graph_views import View

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
\tgraph [bgcolor=transparent fontname=Helvetica fontsize=11 labeljust=l newrank=true nodesep=0.18 rankdir=TB ranksep=0.22{extra}]
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

    Written directly (5x faster than building it with ``graphviz.Digraph``): every label
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
    out = [_HEAD.format(name=_ident(view.id.replace(".", "_").replace("-", "_")), fill=FILL["op"],
                        extra=(" " + extra) if extra else "")]

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
                out.append(f'{indent}{_ident(n.id)} [label="" shape=point width=0.09 fillcolor="#666666" '
                           f'id="{prefix}{_ident(n.id)}"]\n')
                continue
            out.append(f'{indent}{_ident(n.id)} [label={_label(n.label)} fillcolor="{fill}" '
                       f'id="{prefix}{_ident(n.id)}"{extra_attrs}]\n')
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


_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def stop_all() -> None:
    """Kill every dot this process is waiting for (the build was interrupted: Ctrl-C in a
    notebook reaches Python only, and dot has no timeout of its own)."""
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.kill()


def render_svg(dot_source: str, timeout: float, nice: int = 0) -> SvgResult:
    """Lay out one graph with ``dot -Tsvg``; the SVG is returned ready to inline in HTML."""
    return render_svgs([dot_source], timeout, nice)[0]


def render_svgs(sources: list[str], timeout: float, nice: int = 0) -> list[SvgResult]:
    """Lay out several graphs with one ``dot -Tsvg`` (one process start for all: dot writes
    one SVG document per graph), within ``timeout`` seconds for all of them. ``nice``: how
    much lower than ours dot's scheduling priority is (where the system has one)."""
    started = time.perf_counter()
    if not dot_available():
        return [SvgResult(None, INSTALL_HINT, 0.0)] * len(sources)

    def failed(error: str) -> list[SvgResult]:
        return [SvgResult(None, error, time.perf_counter() - started)] * len(sources)

    try:
        proc = subprocess.Popen(["dot", "-Tsvg"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=layout_environment())
    except OSError as exc:
        return failed(f"dot could not be run ({exc})")
    with _running_lock:
        _running.add(proc)
    try:
        with proc:
            if nice:
                with contextlib.suppress(OSError, AttributeError):
                    os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
            try:
                out, err = proc.communicate("".join(sources).encode("utf-8", "backslashreplace"), timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                return failed(f"dot did not finish within {timeout:g} s")
    finally:
        with _running_lock:
            _running.discard(proc)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        if proc.returncode < 0:
            return failed("dot was stopped")
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return failed(f"dot failed: {lines[-1] if lines else 'exit code ' + str(proc.returncode)}")
    docs = out.decode("utf-8", "replace").split("</svg>")[:-1]
    if len(docs) != len(sources):
        return failed(f"dot wrote {len(docs)} drawings for {len(sources)} graphs")
    return [_clean_svg(doc + "</svg>", seconds / len(sources)) for doc in docs]


def _clean_svg(svg: str, seconds: float) -> SvgResult:
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
