"""Skip connections and branch merges in the autograd graph.

A skip connection is an addition (residual) or a concatenation (U-Net, DenseNet) whose
operands come from one earlier activation, where one operand went through a block of layers
and the other went around it: unchanged (identity) or through a short projection such as
ResNet's downsample (an addition only). A *layer* is a module call with parameters (or an op
that uses a parameter) outside the module whose ``forward`` wrote the merge. So arithmetic
inside one module's forward is never a skip: tanh-GELU's ``x + 0.044715 * x**3``, a rotary
embedding's ``q * cos + rotate_half(q) * sin``, a GRU's gates, box decoding, a
concatenation of strided slices. Merges whose every operand went through layers (Inception's
branches) are branch merges, not skips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .calls import ModuleCall
    from .graph import GraphCapture

ADD_OPS = frozenset({"AddBackward0"})
CAT_OPS = frozenset({"CatBackward0"})
# Ops that take one item along a dimension (x[:, t], x.unbind(1)): an operand that comes
# from the source through one of them has a part of it, not the activation: it is no
# skip, and its sum with another branch no branch merge (a hand-written RNN adds each
# step's input to the state).
PART_OPS = frozenset({"SelectBackward0", "UnbindBackward0"})
PROJECTION_LAYERS = 2  # a shortcut through at most this many layers (conv + norm) is a projection
SEARCH_BUDGET = 200_000  # nodes one search for a common source may visit
ALL_PATHS_BUDGET = 100_000  # nodes all every-path layer counts of one graph may visit together
ALL_PAIRS_UP_TO = 8  # merges with more operands try neighbouring operand pairs only


@dataclass
class SkipConnection:
    node: int  # the AddBackward0 / CatBackward0 node
    kind: str  # "residual" (addition) or "concat"
    call: int | None  # module call whose forward wrote the merge
    source: int  # nearest activation both operands come from
    operand: int  # the operand that arrives through the skip path
    path: list[int]  # source ... operand (just the source: an identity skip)
    projection: bool  # the skip path has layers on it (a downsample)
    around: int  # layers on the other operand's paths from the source (all of them): what the skip goes around


@dataclass
class BranchMerge:
    node: int
    kind: str  # "sum" or "concat"
    call: int | None
    source: int
    branches: int  # operands merged


def _carries_input(graph: GraphCapture, preds: list[list[int]]) -> set[int]:
    """The nodes that depend on the model's input: downstream of an input node or of an op
    that read the input outside the graph (``GraphNode.entry``). A graph with neither (the
    input was not seen) counts every node."""
    succ: list[list[int]] = [[] for _ in graph.nodes]
    for i, ps in enumerate(preds):
        for p in ps:
            succ[p].append(i)
    todo = [n.id for n in graph.nodes if n.kind == "input" or n.entry]
    if not todo:
        return set(range(len(graph.nodes)))
    seen = set(todo)
    while todo:
        for j in succ[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def find_skips(graph: GraphCapture, calls: Sequence[ModuleCall]) -> tuple[list[SkipConnection], list[BranchMerge], int]:
    """Every addition and concatenation of the graph that is a skip connection or a branch
    merge, in node order, and how many layer counts were left to shortest chains for lack
    of budget (see :meth:`_Search.layers_between`)."""
    search = _Search(graph, calls)
    skips: list[SkipConnection] = []
    merges: list[BranchMerge] = []
    for n in graph.nodes:
        if n.op not in ADD_OPS and n.op not in CAT_OPS:
            continue
        found = search.merge(n.id)
        if isinstance(found, SkipConnection):
            skips.append(found)
        elif isinstance(found, BranchMerge):
            merges.append(found)
    return skips, merges, search.over_budget


class _Search:
    """What deciding whether a merge is a skip needs to know of the graph: each node's data
    predecessors, which nodes carry the input, and which calls each call ran within."""

    def __init__(self, graph: GraphCapture, calls: Sequence[ModuleCall]):
        self.nodes = graph.nodes
        self.calls = calls
        self.preds: list[list[int]] = [[] for _ in self.nodes]
        for e in graph.edges:
            if e.kind == "data":
                self.preds[e.dst].append(e.src)
        self.data = _carries_input(graph, self.preds)
        self.broadcast = graph.broadcast
        self.between: dict[tuple[int, int, int | None], int | None] = {}  # layers_between's answers
        self.budget = ALL_PATHS_BUDGET  # nodes the every-path searches may still visit
        self.over_budget = 0  # searches not made for lack of it
        self.enclosing: dict[int | None, frozenset[int]] = {}

    def holds_param(self, i: int) -> bool:
        n = self.nodes[i]
        return n.kind == "param" or (
            n.op == "AccumulateGrad" and any(self.nodes[p].kind == "param" for p in self.preds[i])
        )

    def uses_param(self, i: int) -> bool:
        return any(self.holds_param(p) for p in self.preds[i])

    def is_param_branch(self, i: int) -> bool:
        """Not an activation: a parameter, or computed from parameters alone (a position bias)."""
        return i not in self.data or self.holds_param(i)

    def inside(self, call: int | None) -> frozenset[int]:
        """The call and every call it ran within."""
        if call not in self.enclosing:
            chain = []
            c = call
            while c is not None:
                chain.append(c)
                c = self.calls[c].parent
            self.enclosing[call] = frozenset(chain)
        return self.enclosing[call]

    def layers_on(self, path: list[int], merge_call: int | None) -> tuple[int, bool]:
        """The module calls with parameters that the path passes outside the merge's module,
        and whether it passes an op inside that module which uses a parameter."""
        home = self.inside(merge_call)
        found: set[int] = set()
        home_param = False
        for i in path[1:]:
            c = self.nodes[i].call
            if c is None or c in home:
                home_param = home_param or self.uses_param(i)
                continue
            if self.uses_param(i):
                found.add(c)
                continue
            while c is not None and c not in home:
                if self.calls[c].params:
                    found.add(c)
                    break
                c = self.calls[c].parent
        return len(found), home_param

    def merge(self, node: int) -> SkipConnection | BranchMerge | None:
        """What the addition or concatenation ``node`` is: a skip connection (one operand goes
        around the layers the other passes, unchanged or through a short projection), a
        branch merge (every operand passes layers), or neither."""
        n = self.nodes[node]
        is_add = n.op in ADD_OPS
        operands = list(dict.fromkeys(p for p in self.preds[node] if not self.is_param_branch(p)))
        if len(operands) < 2:
            return None
        pairs = [(i, i + 1) for i in range(len(operands) - 1)]
        if len(operands) <= ALL_PAIRS_UP_TO:
            pairs += [(i, j) for i in range(len(operands)) for j in range(i + 2, len(operands))]
        skip = branch = None
        for i, j in pairs:
            found = _nearest_common(self.preds, self.is_param_branch, self.broadcast, operands[i], operands[j])
            if found is None:
                continue
            key, source, chain_i, chain_j = found
            parts = [any(self.nodes[c].op in PART_OPS for c in chain[1:]) for chain in (chain_i, chain_j)]
            if all(parts) or self.nodes[source].op in PART_OPS:  # x.unbind(1): one node, every step
                continue
            paths = [
                (operands[i], chain_i, *self.layers_on(chain_i, n.call)),
                (operands[j], chain_j, *self.layers_on(chain_j, n.call)),
            ]
            # A shortest chain may run through inner skips' shortcuts (a residual block on a
            # branch: 0 layers); what is short is counted again over every path.
            paths = [(o, c, self.recount(source, o, layers, n.call), hp) for o, c, layers, hp in paths]
            for (operand, chain, layers, home_param), (main, _, other, _), part in zip(paths, paths[::-1], parts):
                if other == 0 or home_param or part:
                    continue  # the other operand went through no layer, or this one is not a shortcut
                if layers == 0 or (is_add and layers <= PROJECTION_LAYERS and layers < other):
                    kind = "residual" if is_add else "concat"
                    found_skip = SkipConnection(node, kind, n.call, source, operand, chain, layers > 0, other)
                    cand = (key, layers, found_skip, main)
                    if skip is None or cand[:2] < skip[:2]:
                        skip = cand
            if skip is None and branch is None and min(paths[0][2], paths[1][2]) > 0 and not any(parts):
                branch = BranchMerge(node, "sum" if is_add else "concat", n.call, source, len(operands))
        if skip is None:
            return branch
        found_skip = skip[2]
        found_skip.around = max(found_skip.around, self.layers_between(found_skip.source, skip[3], n.call) or 0)
        return found_skip

    def recount(self, source: int, operand: int, layers: int, merge_call: int | None) -> int:
        """``layers`` on a shortest chain; if that is few enough to make a shortcut, the
        layers on every path instead (while the budget for that lasts)."""
        if layers > PROJECTION_LAYERS:
            return layers
        return max(layers, self.layers_between(source, operand, merge_call) or 0)

    def layers_between(self, source: int, target: int, merge_call: int | None) -> int | None:
        """The layers on every path from ``source`` to ``target``, not only on a shortest one:
        what an outer skip goes around includes the layers that inner skips go around. None
        once the searches of this graph have visited ALL_PATHS_BUDGET nodes in all (each
        walks back from ``target`` up to ``source``: a loop that adds an early tensor at
        every step would make them quadratic); the shortest chains' counts stand then."""
        if source == target:
            return 0
        key = (source, target, merge_call)
        if key not in self.between:
            self.between[key] = self._layers_between(source, target, merge_call)
        return self.between[key]

    def _layers_between(self, source: int, target: int, merge_call: int | None) -> int | None:
        if self.budget <= 0:
            self.over_budget += 1
            return None
        first = self.nodes[source].seq  # autograd numbers ops in creation order: none older
        ancestors = {target}
        todo = [target]
        while todo:
            cur = todo.pop()
            if cur == source:
                continue
            for p in self.preds[cur]:
                if p in ancestors or self.is_param_branch(p) or -1 < self.nodes[p].seq < first:
                    continue
                ancestors.add(p)
                todo.append(p)
            if len(ancestors) > self.budget:
                self.budget = 0
                self.over_budget += 1
                return None
        self.budget -= len(ancestors)
        if source not in ancestors:
            return 0
        succ: dict[int, list[int]] = {}
        for i in ancestors:
            for p in self.preds[i]:
                if p in ancestors:
                    succ.setdefault(p, []).append(i)
        between = {source}
        todo = [source]
        while todo:
            for j in succ.get(todo.pop(), ()):
                if j not in between:
                    between.add(j)
                    todo.append(j)
        return self.layers_on([source, *sorted(between - {source})], merge_call)[0]


def _nearest_common(
    preds: list[list[int]], blocked: Callable[[int], bool], broadcast: set[tuple[int, int]], a: int, b: int
) -> tuple[tuple[int, int], int, list[int], list[int]] | None:
    """The node both ``a`` and ``b`` come from (through predecessors that are not
    ``blocked``) with the least sum of distances (ties go to the earlier node): ``((sum,
    node), node, chain to a, chain to b)``, each chain a shortest one, ``node`` first.
    Breadth-first from both at once, level by level; once the best sum is at most the
    level, every node with that sum has been seen by both.

    An addition's operand that was broadcast to its shape (``h + cond[:, :, None, None]``,
    a diffusion model's time embedding in every block) is not followed: what a later sum
    has from it is a conditioning, not the activation carried on, and following it made
    the time embedding the source of a skip around every earlier block."""
    dist = ({a: 0}, {b: 0})
    parent: tuple[dict[int, int | None], dict[int, int | None]] = ({a: None}, {b: None})
    frontier = ([a], [b])
    best = (0, a, a) if a == b else None
    level = visited = 0
    while (frontier[0] or frontier[1]) and not (best is not None and best[0] <= level):
        level += 1
        for side in (0, 1):
            mine, other = dist[side], dist[1 - side]
            nxt = []
            for cur in frontier[side]:
                for p in preds[cur]:
                    if p in mine or blocked(p) or (p, cur) in broadcast:
                        continue
                    mine[p] = level
                    parent[side][p] = cur
                    nxt.append(p)
                    if p in other:
                        cand = (level + other[p], p, p)
                        if best is None or cand < best:
                            best = cand
            visited += len(nxt)
            frontier[side][:] = nxt
        if visited > SEARCH_BUDGET:
            break
    if best is None:
        return None

    def chain(side: int) -> list[int]:
        out: list[int] = []
        cur: int | None = best[2]
        while cur is not None:
            out.append(cur)
            cur = parent[side][cur]
        return out

    return best[:2], best[2], chain(0), chain(1)
