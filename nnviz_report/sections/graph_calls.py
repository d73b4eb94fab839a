"""The module calls of a forward pass laid over its autograd graph, for the module views."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..capture.calls import ModuleCall
from ..capture.graph import GraphCapture

HIDDEN_IN_MODULE_VIEWS = ("saved", "view")  # tensor nodes shown only in op views


class CallGraph:
    """The module calls over the autograd graph: which call owns each node (``owner``; the
    root call owns the nodes of no call), how calls nest (``children``, ``chains``: the
    calls from the root down to each), when each ran first (``order``) and which are
    identical in structure (``sig``); module views hide accumulators and saved/view tensors
    (``hidden``), and their edges pass through them."""

    def __init__(self, graph: GraphCapture, calls: Sequence[ModuleCall], model_name: str):
        self.g = graph
        self.calls = calls
        self.model_name = model_name
        nodes = graph.nodes
        self.children: dict[int | None, list[int]] = {}
        for c in calls:
            self.children.setdefault(c.parent, []).append(c.id)
        roots = self.children.get(None, [])
        self.root = roots[0] if len(roots) == 1 else None
        self.chains: list[tuple[int, ...]] = []
        for c in calls:
            parent = () if c.parent is None else self.chains[c.parent]
            self.chains.append((*parent, c.id))
        self.owner = [n.call if n.call is not None else self.root for n in nodes]
        self.hidden = [n.op == "AccumulateGrad" or n.kind in HIDDEN_IN_MODULE_VIEWS for n in nodes]
        self.preds: list[list[tuple[int, str]]] = [[] for _ in nodes]
        self.succs: list[list[int]] = [[] for _ in nodes]
        for e in graph.edges:
            self.preds[e.dst].append((e.src, e.kind))
            self.succs[e.src].append(e.dst)
        self.own: dict[int | None, list[int]] = {}
        for n in nodes:
            self.own.setdefault(self.owner[n.id], []).append(n.id)
        self.order = self._orders()
        self.sig = self._signatures()
        self.skip_nodes = {s.node for s in graph.skips} | {m.node for m in graph.merges}
        self.skips_own = {s.call for s in graph.skips}  # calls that wrote a skip's merge
        self.skips_in: dict[int | None, int] = {}  # skips whose merge the call's subtree wrote
        for s in graph.skips:
            cid = s.call
            while cid is not None:
                self.skips_in[cid] = self.skips_in.get(cid, 0) + 1
                cid = calls[cid].parent

    def _orders(self) -> dict[int, float]:
        """Per call: when its first operation was created (autograd's sequence numbers)."""
        inf = float("inf")
        first: dict[int, float] = {}
        for c in reversed(self.calls):
            own = [self.g.nodes[i].seq for i in self.own.get(c.id, ()) if self.g.nodes[i].seq >= 0]
            kids = [first[k] for k in self.children.get(c.id, ())]
            first[c.id] = min(own + kids, default=inf)
        return first

    def _signatures(self) -> dict[int, object]:
        """Per call: equal for calls identical in structure (type, own parameters' shapes and
        operations, the children's structures), so that they can be folded."""
        sig: dict[int, object] = {}
        for c in reversed(self.calls):
            own = [self.g.nodes[i] for i in self.own.get(c.id, ())]
            params = tuple(sorted(n.shape or "" for n in own if n.kind == "param"))
            ops = tuple(n.op for n in sorted((n for n in own if n.kind == "op" and n.seq >= 0), key=lambda n: n.seq))
            sig[c.id] = hash((c.type, params, ops, tuple(sig[k] for k in self.children.get(c.id, ()))))
        return sig

    def rep(self, container: int, node: int) -> str | None:
        """The atom ``node`` is part of in ``container``'s view, or None when outside."""
        owner = self.owner[node]
        chain = self.chains[owner] if owner is not None else ()
        d = len(self.chains[container]) - 1
        if len(chain) > d and chain[d] == container:
            return f"n{node}" if len(chain) == d + 1 else f"m{chain[d + 1]}"
        return None

    def visible_preds(self, v: int) -> Iterable[tuple[int, str]]:
        """Predecessors in a module view: through hidden nodes (a parameter's accumulator)."""
        for u, kind in self.preds[v]:
            if self.hidden[u]:
                if self.g.nodes[u].op == "AccumulateGrad":
                    for w, _ in self.preds[u]:
                        yield w, "data"
            else:
                yield u, kind

    def shared(self, i: int) -> bool:
        """A parameter (or its accumulator): used by other calls too, not an output."""
        n = self.g.nodes[i]
        return n.kind in ("param", "leaf") or n.op == "AccumulateGrad"

    def subtree_calls(self, call: int) -> list[int]:
        out, todo = [], list(self.children.get(call, ()))
        while todo:
            c = todo.pop()
            out.append(c)
            todo.extend(self.children.get(c, ()))
        return out

    def subtree(self, call: int) -> list[int]:
        out: list[int] = []
        todo = [call]
        while todo:
            c = todo.pop()
            out.extend(self.own.get(c, ()))
            todo.extend(self.children.get(c, ()))
        return out

    def call_name(self, c: int) -> str:
        return self.calls[c].name or self.model_name
