"""The autograd graph: torchviz's ``make_dot``, re-keyed, attributed to modules, analysed.

``make_dot`` decides what the graph is (which nodes, which edges, the same picture torchviz
users know). Its DOT names are ``id()`` values, so they are renamed in order of appearance
(``n0``, ``n1``, ...) to make the output deterministic; each node is attributed to the
module call that created it (from the forward hooks); additions and concatenations whose
operands share an earlier activation are found as skip connections.

The graph holds every saved activation of the forward pass, and ``make_dot`` leaves it in a
reference cycle; ``release_graph`` collects it.
"""

from __future__ import annotations

import gc
import re
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .tensors import iter_tensors

# torchviz 0.0.3 imports distutils' LooseVersion, which warns on import.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from torchviz import make_dot

_NODE = re.compile(r"\t(\S+) \[(.*)\]\n?", re.S)
_EDGE = re.compile(r"\t(\S+) -> (\S+)(?: \[(.*)\])?\n?", re.S)
_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)', re.S)

_KIND_BY_COLOR = {
    None: "op",
    "lightblue": "leaf",
    "orange": "saved",
    "darkolivegreen1": "output",
    "darkolivegreen3": "view",
}


@dataclass
class GraphNode:
    id: str
    kind: str  # op | param | input | leaf | saved | output | view
    op: str | None  # autograd node class, e.g. "ConvolutionBackward0"
    name: str | None  # parameter name, input/output label
    shape: str | None  # "(64, 3, 7, 7)" for tensor nodes
    call: int | None  # ModuleCall.id that created the node
    skip: bool = False  # the addition/concatenation closing a skip connection


@dataclass
class GraphEdge:
    src: str
    dst: str
    kind: str  # data | saved | view
    skip: bool = False  # part of a skip path


@dataclass
class SkipConnection:
    node: str  # the AddBackward0 / CatBackward0 node
    kind: str  # "residual" (addition) or "concat"
    call: int | None  # module call the addition belongs to
    source: str  # nearest activation both operands come from
    operand: str  # the operand that arrives through the skip path
    path: list[str]  # source ... operand: empty projection means identity skip
    projection: bool  # the skip path has layers on it (a downsample)


@dataclass
class GraphCapture:
    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    skips: list[SkipConnection] = field(default_factory=list)
    note: str | None = None

    @property
    def residual_count(self) -> int:
        return sum(1 for s in self.skips if s.kind == "residual")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _attrs(text: str | None) -> dict[str, str]:
    return {k: _unquote(v) for k, v in _ATTR.findall(text or "")}


def capture_graph(
    output: Any,
    params: Mapping[str, torch.Tensor],
    inputs: list[tuple[str, torch.Tensor]],
    owner: Mapping[int, int],
) -> GraphCapture:
    """Build the graph of everything ``output`` depends on.

    ``owner`` maps ``id(autograd node)`` to the module call that created it; the caller keeps
    those nodes alive until this returns.
    """
    roots = [(path, t) for path, t in iter_tensors(output) if t.requires_grad]
    if not roots:
        return GraphCapture(note="the output does not depend on anything that requires grad, "
                                 "so there is no autograd graph to draw")
    tensors = [t for _, t in roots]
    dot = make_dot(tensors[0] if len(tensors) == 1 else tuple(tensors), params=dict(params))
    names: dict[str, str] = {}

    def key(raw: str) -> str:
        if raw not in names:
            names[raw] = f"n{len(names)}"
        return names[raw]

    param_names = {str(id(p)): n for n, p in params.items()}
    input_names = {str(id(t)): label for label, t in inputs}
    output_names = {str(id(t)): ("output" + path) for path, t in roots}

    graph = GraphCapture()
    by_id: dict[str, GraphNode] = {}
    raw_edges: list[tuple[str, str, str]] = []
    for line in dot.body:
        head, bracket, rest = line.partition(" [")
        # Fast paths for most lines (the regexes below read them the same way): a data edge
        # with no attributes, "\tA -> B\n", and an autograd op, "\tID [label=OpName]\n".
        if not bracket and " -> " in head:
            src, _, dst = head.strip().partition(" -> ")
            if src and dst and " " not in src and " " not in dst:
                raw_edges.append((src, dst, "data"))
                key(src)
                key(dst)
                continue
        elif (rest.startswith("label=") and rest.endswith("]\n") and " " not in rest and '"' not in rest
              and head.startswith("\t") and " " not in head and len(head) > 1):
            raw = head[1:]
            node = GraphNode(id=key(raw), kind="op", op=rest[6:-2], name=None, shape=None,
                             call=owner.get(int(raw)) if raw.isdigit() else None)
            by_id[raw] = node
            graph.nodes.append(node)
            continue
        if " -> " in line.split("[", 1)[0]:
            m = _EDGE.fullmatch(line)
            if not m:
                continue
            a = _attrs(m.group(3))
            kind = "saved" if a.get("dir") == "none" else "view" if a.get("style") == "dotted" else "data"
            raw_edges.append((m.group(1), m.group(2), kind))
            key(m.group(1))
            key(m.group(2))
            continue
        m = _NODE.fullmatch(line)
        if not m:
            continue
        raw, a = m.group(1), _attrs(m.group(2))
        label = a.get("label", "")
        kind = _KIND_BY_COLOR.get(a.get("fillcolor"), "op")
        node = GraphNode(id=key(raw), kind=kind, op=None, name=None, shape=None, call=None)
        if kind == "op":
            node.op = label
            node.call = owner.get(int(raw)) if raw.isdigit() else None
        else:
            head, _, shape = label.partition("\n")
            node.shape = shape.strip() or None
            node.name = head or None
            if raw in param_names:
                node.kind, node.name = "param", param_names[raw]
            elif raw in input_names:
                node.kind, node.name = "input", input_names[raw]
            elif raw in output_names:
                node.name = output_names[raw]
        by_id[raw] = node
        graph.nodes.append(node)

    # The model was given a clone of each input leaf (so it may modify it in place): fold
    # input -> AccumulateGrad -> CloneBackward0 back into the input node.
    _fold_input_clones(by_id, raw_edges)
    for src, dst, kind in raw_edges:
        if src in by_id and dst in by_id:
            graph.edges.append(GraphEdge(by_id[src].id, by_id[dst].id, kind))
    kept = {n.id for n in by_id.values()}
    graph.nodes = [n for n in graph.nodes if n.id in kept]

    # Tensor nodes belong where the op they feed or hang off belongs.
    nodes = {n.id: n for n in graph.nodes}
    for e in graph.edges:
        a, b = nodes[e.src], nodes[e.dst]
        if a.kind in ("param", "saved") and a.call is None and b.kind == "op":
            a.call = b.call
        elif b.kind == "saved" and b.call is None and a.kind == "op":
            b.call = a.call
    graph.skips = find_skips(graph)
    return graph


def _fold_input_clones(by_id: dict[str, GraphNode], raw_edges: list[tuple[str, str, str]]) -> None:
    out: dict[str, list[int]] = {}
    for i, (a, _, _) in enumerate(raw_edges):
        out.setdefault(a, []).append(i)
    for raw, node in list(by_id.items()):
        if node.kind != "input":
            continue
        acc = [raw_edges[i][1] for i in out.get(raw, []) if by_id.get(raw_edges[i][1]) and by_id[raw_edges[i][1]].op == "AccumulateGrad"]
        if len(acc) != 1:
            continue
        clones = [raw_edges[i][1] for i in out.get(acc[0], [])]
        if len(clones) != 1 or by_id.get(clones[0]) is None or by_id[clones[0]].op != "CloneBackward0":
            continue
        clone = clones[0]
        # input -> consumers of the clone; the accumulator and the clone disappear.
        for i in out.get(clone, []):
            a, b, kind = raw_edges[i]
            raw_edges[i] = (acc[0], b, kind)
        raw_edges[:] = [e for e in raw_edges if clone not in (e[0], e[1])]
        del by_id[clone]


def release_graph(outputs: list[weakref.ref]) -> bool:
    """Free the autograd graph if ``make_dot`` left it alive in its reference cycle.

    make_dot's recursive closure keeps its ``seen`` set (the output tensors and every
    autograd node, with every activation saved for backward) in a cycle that only the
    garbage collector frees. A full collection costs ~0.1 s in a process that imported
    torch, so it runs only when an output tensor is still alive once everyone else has
    let go of it, and only after a collection of the youngest generation (a few ms) did
    not free it: ``build_report`` pauses the automatic collector, so the cycle is young.
    Returns whether a collection ran.
    """
    alive = lambda: any(ref() is not None for ref in outputs)  # noqa: E731
    if not alive():
        return False
    gc.collect(0)
    if alive():
        gc.collect()
    return True


# --- skip connections -----------------------------------------------------------------------

_ADD_OPS = {"AddBackward0"}
_CAT_OPS = {"CatBackward0"}


def find_skips(graph: GraphCapture) -> list[SkipConnection]:
    """Additions (``x + f(x)``, ``out += identity``, projection shortcuts) and concatenations
    (U-Net skips) whose operands both come from one earlier activation.

    Parameters do not count as activations: a bias or a learned positional embedding added
    to ``x`` is not a skip, and neither is the sum of two embeddings of integer inputs.
    """
    nodes = {n.id: n for n in graph.nodes}
    preds: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        if e.kind == "data":
            preds[e.dst].append(e.src)

    def is_param_branch(nid: str) -> bool:
        n = nodes[nid]
        if n.kind == "param":
            return True
        return n.op == "AccumulateGrad" and any(nodes[p].kind == "param" for p in preds[nid])

    order = {n.id: i for i, n in enumerate(graph.nodes)}

    def nearest_common(a: str, b: str) -> tuple[tuple[int, int], str, list[str], list[str]] | None:
        """The node both ``a`` and ``b`` come from with the least sum of distances (ties go
        to the earlier node in the graph): ``((sum, graph order), node, chain from a,
        chain from b)``, each chain a shortest one, ``node`` first. Breadth-first from both
        at once, level by level; once the best sum is at most the level, every node with
        that sum has been seen by both sides."""
        dist = ({a: 0}, {b: 0})
        parent: tuple[dict[str, str | None], dict[str, str | None]] = ({a: None}, {b: None})
        frontier = ([a], [b])
        best = (0, order[a], a) if a == b else None
        level = 0
        while (frontier[0] or frontier[1]) and not (best is not None and best[0] <= level):
            level += 1
            for side in (0, 1):
                mine, other = dist[side], dist[1 - side]
                nxt = []
                for cur in frontier[side]:
                    for p in preds[cur]:
                        if p in mine or is_param_branch(p):
                            continue
                        mine[p] = level
                        parent[side][p] = cur
                        nxt.append(p)
                        if p in other:
                            cand = (level + other[p], order[p], p)
                            if best is None or cand < best:
                                best = cand
                frontier[side][:] = nxt
        if best is None:
            return None

        def chain(side: int) -> list[str]:
            out, cur = [], best[2]
            while cur is not None:
                out.append(cur)
                cur = parent[side][cur]
            return out

        return best[:2], best[2], chain(0), chain(1)

    skips = []
    for n in graph.nodes:
        if n.op not in _ADD_OPS and n.op not in _CAT_OPS:
            continue
        operands = [p for p in preds[n.id] if not is_param_branch(p)]
        if len(operands) < 2:
            continue
        best = None
        for i in range(len(operands)):
            for j in range(i + 1, len(operands)):
                found = nearest_common(operands[i], operands[j])
                if found is not None and (best is None or found[0] < best[0][0]):
                    best = (found, i, j)
        if best is None:
            continue
        (_, source, chain_i, chain_j), i, j = best
        # The operand nearer the source arrives through the skip path (goal first).
        operand, chain = (operands[i], chain_i) if len(chain_i) <= len(chain_j) else (operands[j], chain_j)
        skips.append(
            SkipConnection(
                node=n.id,
                kind="residual" if n.op in _ADD_OPS else "concat",
                call=n.call,
                source=source,
                operand=operand,
                path=chain,
                projection=len(chain) > 1,
            )
        )
        n.skip = True
    on_path = {(s.path[a], s.path[a + 1]) for s in skips for a in range(len(s.path) - 1)}
    on_path |= {(s.operand, s.node) for s in skips}
    for e in graph.edges:
        if (e.src, e.dst) in on_path:
            e.skip = True
    return skips
