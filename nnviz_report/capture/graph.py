"""The autograd graph: torchviz's graph, walked without recursion, attributed to module calls.

The nodes and edges are exactly those torchviz's ``make_dot`` draws (the same autograd nodes,
leaf, saved and output tensors, the same edge kinds and labels), found by the same depth-first
walk written as a loop: ``make_dot`` recurses once per node and exhausts Python's recursion
limit on chains of ~1,000 layers. Nodes are numbered in the order the walk meets them (the
same model gives the same graph); each autograd node is attributed to the module call that
created it (from the forward hooks); skip connections are found in :mod:`.skips`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import _compat
from .nested import describe_non_tensors, iter_tensors
from .skips import ADD_OPS, BranchMerge, SkipConnection, find_skips

MAX_NODES = 1_000_000  # the walk stops here: a larger graph is reported by its module calls

# torchviz's fill colours, by the kind of node they mark.
KIND_COLOR = {
    "op": "lightgrey",
    "leaf": "lightblue",
    "saved": "orange",
    "output": "darkolivegreen1",
    "view": "darkolivegreen3",
}


# Output leaves that are values, not containers the report could have looked into.
PLAIN_VALUES = frozenset({"None", "int", "float", "bool", "str", "complex", "bytes"})


@dataclass(slots=True)
class GraphNode:
    id: int  # index in GraphCapture.nodes
    kind: str  # op | param | input | leaf | saved | output | view
    op: str | None  # autograd node class, e.g. "ConvolutionBackward0"
    name: str | None  # parameter name, input/output label, saved-tensor label
    shape: str | None  # "(64, 3, 7, 7)" for tensor nodes
    call: int | None  # ModuleCall.id that created the node (tensor nodes: that of their op)
    entry: str | None = None  # an op that read the model's input outside the graph: its label
    seq: int = -1  # autograd's creation order of an op (-1: a tensor node, or unknown)


@dataclass(slots=True)
class GraphEdge:
    src: int
    dst: int
    kind: str  # data | saved | view


@dataclass
class GraphCapture:
    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    skips: list[SkipConnection] = field(default_factory=list)
    merges: list[BranchMerge] = field(default_factory=list)  # branch merges (Inception): not skips
    note: str | None = None
    truncated: bool = False  # the walk stopped at MAX_NODES
    # Inputs outside the autograd graph (token ids): label -> "(shape) dtype"; the ops that
    # read them are marked GraphNode.entry.
    data_inputs: dict[str, str] = field(default_factory=dict)
    # (operand, addition): operands broadcast to the sum's shape (a bias, a conditioning vector)
    broadcast: set[tuple[int, int]] = field(default_factory=set)

    @property
    def residual_count(self) -> int:
        return sum(1 for s in self.skips if s.kind == "residual")

    @property
    def concat_count(self) -> int:
        return sum(1 for s in self.skips if s.kind == "concat")


def _size(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(int(v)) for v in t.size()) + ")"


class _Walk:
    """torchviz's ``make_dot(outputs, params)``, node for node, as a loop."""

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        inputs: Mapping[int, str],
        owner: Mapping[int, int],
        entries: Mapping[int, str],
        limit: int,
    ):
        self.param_names = {id(p): n for n, p in params.items()}
        self.input_names = inputs
        self.owner = owner
        self.entries = entries
        self.limit = limit
        self.nodes: list[GraphNode] = []
        self.edges: list[GraphEdge] = []
        self.index: dict[int, int] = {}  # id(object) -> node index
        self.seen: set[int] = set()
        self.truncated = False
        self.broadcast: set[tuple[int, int]] = set()

    def node(
        self,
        obj: Any,
        kind: str,
        op: str | None = None,
        name: str | None = None,
        shape: str | None = None,
        call: int | None = None,
    ) -> int:
        key = id(obj)
        i = self.index.get(key)
        if i is None:
            i = len(self.nodes)
            self.index[key] = i
            self.nodes.append(GraphNode(i, kind, op, name, shape, call))
        return i

    def tensor(self, t: torch.Tensor, kind: str, name: str | None = None) -> int:
        key = id(t)
        if key in self.param_names:
            kind, name = "param", self.param_names[key]
        elif key in self.input_names:
            kind, name = "input", self.input_names[key]
        return self.node(t, kind, name=name, shape=_size(t))

    def op(self, fn: Any) -> int:
        key = id(fn)
        i = self.index.get(key)
        if i is None:
            i = self.node(fn, "op", op=type(fn).__name__, call=self.owner.get(key))
            node = self.nodes[i]
            node.entry = self.entries.get(key)
            node.seq = _compat.sequence_nr(fn)
        return i

    def enter(self, fn: Any) -> list:
        """What make_dot's ``add_nodes(fn)`` does before it recurses."""
        self.seen.add(id(fn))
        variable = getattr(fn, "variable", None)
        if variable is not None:
            self.seen.add(id(variable))
            v = self.tensor(variable, "leaf")
            self.edges.append(GraphEdge(v, self.op(fn), "data"))
        else:
            self.op(fn)
        return [fn, fn.next_functions, 0]

    def add_nodes(self, root: Any) -> None:
        if id(root) in self.seen:
            return
        stack = [self.enter(root)]
        while stack:
            frame = stack[-1]
            fn, nexts, i = frame
            if i < len(nexts):
                frame[2] = i + 1
                u = nexts[i][0]
                if u is None:
                    continue
                if id(u) not in self.seen:
                    if len(self.nodes) >= self.limit:
                        self.truncated = True
                        continue
                    stack.append(self.enter(u))
                self.edges.append(GraphEdge(self.index[id(u)], self.index[id(fn)], "data"))
                if type(fn).__name__ in ADD_OPS:
                    self._note_broadcast(fn, u, nexts[i][1])
                continue
            stack.pop()
            saved = _saved_tensors(fn)
            me = self.index[id(fn)]
            for t in saved:
                self.seen.add(id(t))
                self.edges.append(GraphEdge(me, self.tensor(t, "saved"), "saved"))

    def _note_broadcast(self, fn: Any, operand: Any, nr: int) -> None:
        """Whether ``operand`` (output ``nr`` of it) had fewer values than the sum ``fn``."""
        mine, theirs = _compat.output_numel(fn, 0), _compat.output_numel(operand, nr)
        if mine is not None and theirs is not None and theirs < mine:
            self.broadcast.add((self.index[id(operand)], self.index[id(fn)]))

    def add_base_tensor(self, var: torch.Tensor, kind: str, name: str | None) -> None:
        chain: list[tuple[torch.Tensor, str, str | None, int | None]] = [(var, kind, name, None)]
        while chain:  # a view's base, its base's base, ...: a loop, too
            t, k, label, child = chain.pop()
            if id(t) not in self.seen:
                self.seen.add(id(t))
                me = self.tensor(t, k, label)
                if t.grad_fn is not None:
                    self.add_nodes(t.grad_fn)
                    if id(t.grad_fn) in self.index:
                        self.edges.append(GraphEdge(self.index[id(t.grad_fn)], me, "data"))
                base = _compat.view_base(t)
                if base is not None:
                    chain.append((base, "view", None, me))
            if child is not None:
                self.edges.append(GraphEdge(self.index[id(t)], child, "view"))


def _saved_tensors(fn: Any) -> tuple:
    """What a custom autograd Function saved (make_dot draws those; built-in nodes' saved
    tensors are not drawn, as with make_dot's default ``show_saved=False``)."""
    if not hasattr(type(fn), "saved_tensors") and not hasattr(fn, "saved_tensors"):
        return ()
    try:
        return tuple(t for t in fn.saved_tensors if isinstance(t, torch.Tensor))
    except (RuntimeError, AttributeError):  # freed, or not a custom Function
        return ()


def capture_graph(
    output: Any,
    params: Mapping[str, torch.Tensor],
    inputs: list[tuple[str, torch.Tensor]],
    owner: Mapping[int, int],
    calls: list | None = None,
    entries: Mapping[int, str] | None = None,
    limit: int = MAX_NODES,
) -> GraphCapture:
    """The graph of everything ``output`` depends on.

    ``owner`` maps ``id(autograd node)`` to the module call that created it (the caller keeps
    those nodes alive until this returns); ``calls`` (the ModuleCall list) lets skip
    connections be told from arithmetic inside one module; ``entries``: ids of the nodes
    where the input's data enters the graph other than through an input node (an embedding
    of token ids), so that what is computed from parameters alone is not an activation.
    """
    roots = [(path, t) for path, t in iter_tensors(output) if t.requires_grad]
    if not roots:
        unread = [(p or "the output", kind) for p, kind in describe_non_tensors(output) if kind not in PLAIN_VALUES]
        if unread:  # a set, a generator: not followed (a set's order is not even fixed)
            where, kind = unread[0]
            return GraphCapture(
                note=f"{'output' + where if where != 'the output' else where} is a {kind}, which the report does "
                "not look into, so there is no autograd graph to draw; return tensors in a tuple, list or dict"
            )
        return GraphCapture(
            note="the output does not depend on anything that requires grad, so there is no autograd graph to draw"
        )
    walk = _Walk(params, {id(t): label for label, t in inputs}, owner, entries or {}, limit)
    for path, t in roots:
        walk.add_base_tensor(t, "output", "output" + path)
    graph = GraphCapture(
        walk.nodes,
        walk.edges,
        truncated=walk.truncated,
        broadcast=walk.broadcast,
        data_inputs={
            label: f"{_size(t)} {str(t.dtype).replace('torch.', '')}" for label, t in inputs if not t.requires_grad
        },
    )
    _fold_input_clones(graph)
    _attribute_tensors(graph)
    if calls is not None and not graph.truncated:
        graph.skips, graph.merges, shortest_only = find_skips(graph, calls)
        if shortest_only:
            graph.note = (
                f"{shortest_only:,} layer counts of skip connections were made on shortest paths only: counting "
                "every path through this graph would take too long (a loop that adds an early tensor at every step)"
            )
    if graph.truncated:
        graph.note = (
            f"the autograd graph has more than {limit:,} nodes; it was walked up to there, "
            "and skip connections were not searched"
        )
    return graph


def _fold_input_clones(graph: GraphCapture) -> None:
    """The model was given a clone of each input leaf (so it may modify it in place): drop the
    clone, so that the graph is the one make_dot draws for ``model(leaf)``."""
    nodes = graph.nodes
    out: dict[int, list[int]] = {}
    for i, e in enumerate(graph.edges):
        out.setdefault(e.src, []).append(i)
    drop: set[int] = set()
    for n in nodes:
        if n.kind != "input":
            continue
        acc = [graph.edges[i].dst for i in out.get(n.id, []) if nodes[graph.edges[i].dst].op == "AccumulateGrad"]
        if len(acc) != 1:
            continue
        clones = [graph.edges[i].dst for i in out.get(acc[0], [])]
        if len(clones) != 1 or nodes[clones[0]].op != "CloneBackward0":
            continue
        for i in out.get(clones[0], []):
            graph.edges[i].src = acc[0]
        graph.broadcast = {(acc[0] if a == clones[0] else a, b) for a, b in graph.broadcast}
        drop.add(clones[0])
    if drop:
        _drop_nodes(graph, drop)


def _drop_nodes(graph: GraphCapture, drop: set[int]) -> None:
    """Remove nodes (and edges touching them), renumbering the rest in order."""
    new_id: dict[int, int] = {}
    kept: list[GraphNode] = []
    for n in graph.nodes:
        if n.id not in drop:
            new_id[n.id] = len(kept)
            n.id = len(kept)
            kept.append(n)
    graph.nodes = kept
    edges = []
    for e in graph.edges:
        if e.src in new_id and e.dst in new_id:
            e.src, e.dst = new_id[e.src], new_id[e.dst]
            edges.append(e)
    graph.edges = edges
    graph.broadcast = {(new_id[a], new_id[b]) for a, b in graph.broadcast if a in new_id and b in new_id}


def _attribute_tensors(graph: GraphCapture) -> None:
    """Tensor nodes belong where the op they feed (parameters) or hang off (saved) belongs."""
    nodes = graph.nodes
    for e in graph.edges:
        a, b = nodes[e.src], nodes[e.dst]
        if a.kind in ("param", "leaf", "saved") and a.call is None and b.kind == "op":
            a.call = b.call
        elif b.kind == "saved" and b.call is None and a.kind == "op":
            b.call = a.call
