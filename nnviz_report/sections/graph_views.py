"""Views of the autograd graph: the module hierarchy one level at a time, and torchviz's graph.

A *module view* shows one module call: the calls its ``forward`` made (boxes that open their
own view), the operations it wrote itself (additions, concatenations, reshapes: torchviz's
nodes), the parameters it uses directly, and ports for where its inputs come from and where
its output goes. Consecutive calls identical in structure are folded into one box "x N" (a
pattern of up to ``MAX_PERIOD`` calls or operations, as in ``for layer in layers``); a view
that still has more than ``MAX_BOXES`` boxes is split into groups, each a box with a view of
its own. A leaf module's view is its autograd operations, node for node. So every view stays
small enough to lay out fast and to read, whatever the size of the model.

The *full view* is torchviz's graph node for node, boxed by module call; it is drawn for
graphs of up to ``FULL_MAX_NODES`` nodes.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..capture.forward import ModuleCall
from ..capture.graph import GraphCapture, GraphNode

MAX_BOXES = 60  # boxes in a view before its members are split into groups
GROUP_SIZE = 30  # members per group
MAX_PERIOD = 6  # the longest repeating pattern of calls/operations that is folded
LEAF_VIEW_OPS = 3  # a leaf module with at least this many operations gets a view of them
MAX_VIEWS = 400  # module views drawn at most (the rest are named, not drawn)
MAX_VIEW_NODES = 12_000  # nodes in all module views together, at most
FULL_MAX_NODES = 3000  # torchviz's full graph is drawn up to this many nodes

HIDDEN_IN_MODULE_VIEWS = ("saved", "view")  # tensor nodes shown only in op views


@dataclass
class ViewNode:
    id: str  # DOT identifier, unique in its view
    label: list[str]  # lines
    kind: str  # op | param | input | output | leaf | saved | view | module | fold | group | port
    call: int | None = None  # the ModuleCall it stands for or was created by
    skip: bool = False  # closes a skip connection (or holds one, for a box)
    opens: str | None = None  # id of the view this box opens
    members: list[int] = field(default_factory=list)  # calls a fold or group box stands for
    ops: list[str] = field(default_factory=list)  # a leaf box without a view: its operations


@dataclass
class View:
    id: str
    title: str
    parent: str | None  # the view one level up
    nodes: list[ViewNode] = field(default_factory=list)
    edges: list[tuple[str, str, str, bool]] = field(default_factory=list)  # src, dst, kind, skip
    clusters: dict[int, ModuleCall] = field(default_factory=dict)  # full view: call id -> call
    call: int | None = None
    note: str | None = None


@dataclass
class Hierarchy:
    views: list[View]
    located: dict[int, tuple[str, str]]  # call id -> (view id, node id) where the call is drawn
    dropped: int  # boxes whose view was not built (budget)


def short_op(op: str) -> str:
    return re.sub(r"Backward\d*$", "", op)


def _relative(name: str, parent: str) -> str:
    return name[len(parent) + 1:] if parent and name.startswith(parent + ".") else name


def _span(names: Sequence[str]) -> str:
    """``layer.1``..``layer.5`` -> ``layer.1–5``; otherwise ``first … last``."""
    if len(names) == 1:
        return names[0]
    a, b = re.match(r"(.*?)(\d+)$", names[0]), re.match(r"(.*?)(\d+)$", names[-1])
    if a and b and a.group(1) == b.group(1):
        return f"{names[0]}–{b.group(2)}"
    return f"{names[0]} … {names[-1]}"


def _shape(shape: Sequence[int] | None) -> str:
    return f"({', '.join(map(str, shape))})" if shape else ""


@dataclass
class _Atom:
    """One box of a view before folding: a child call, an own node, or a port."""

    key: str
    label: list[str]
    kind: str
    order: float  # when it ran (autograd's creation order)
    sig: object  # equal for atoms identical in structure (None: never folded)
    call: int | None = None
    skip: bool = False
    opens: tuple | None = None  # what its view is built from: ("call", id, note) or ("level", _Level)
    members: list[int] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)


@dataclass
class _Level:
    """The atoms of one view and the edges between them."""

    id: str
    title: str
    parent: str | None
    atoms: dict[str, _Atom]
    edges: dict[tuple[str, str], tuple[str, bool]]  # (src, dst) -> (kind, skip)
    call: int | None = None
    note: str | None = None


class _Builder:
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
            self.chains.append(parent + (c.id,))
        self.owner = [n.call if n.call is not None else self.root for n in nodes]
        # Module views hide accumulators and saved/view tensors: edges pass through them.
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
            c = s.call
            while c is not None:
                self.skips_in[c] = self.skips_in.get(c, 0) + 1
                c = calls[c].parent
        self.subtree_size: dict[int, int] = {}
        for c in reversed(calls):
            self.subtree_size[c.id] = len(self.own.get(c.id, ())) + sum(
                self.subtree_size[k] for k in self.children.get(c.id, ()))

    # -- structure ------------------------------------------------------------------------
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
        chain = self.chains[self.owner[node]] if self.owner[node] is not None else ()
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
        out, todo = [], [call]
        while todo:
            c = todo.pop()
            out.extend(self.own.get(c, ()))
            todo.extend(self.children.get(c, ()))
        return out

    # -- labels -------------------------------------------------------------------------
    def call_name(self, c: int) -> str:
        return self.calls[c].name or self.model_name

    def call_atom(self, c: int, parent: int) -> _Atom:
        call = self.calls[c]
        name = _relative(call.name, self.calls[parent].name) + (f" (call {call.call + 1})" if call.call else "")
        label = [name, f"{call.type} {_shape(call.output_shape)}".strip()]
        if self.skips_in.get(c):
            k = self.skips_in[c]
            label.append(f"↷ {k} skip{'s' if k > 1 else ''}")
        kids = self.children.get(c)
        ops = [n for n in self.own.get(c, ()) if self.g.nodes[n].kind == "op" and not self.hidden[n]]
        opens = ("call", c, None) if kids or len(ops) >= LEAF_VIEW_OPS else None
        atom = _Atom(f"m{c}", label, "module", self.order[c], self.sig[c], call=c, skip=c in self.skips_own,
                     opens=opens)
        if opens is None:
            atom.ops = [self.node_text(self.g.nodes[n]) for n in self.own.get(c, ()) if not self.hidden[n]]
        return atom

    def node_text(self, n: GraphNode) -> str:
        if n.kind == "op":
            return short_op(n.op or "?")
        return " ".join(x for x in (n.name, n.shape) if x)

    def node_atom(self, i: int, op_view: bool) -> _Atom:
        n = self.g.nodes[i]
        skip = i in self.skip_nodes
        if n.kind == "op":
            name = (n.op or "?") if op_view else short_op(n.op or "?")
            label = [name] + (["(skip connection)"] if skip and any(s.node == i for s in self.g.skips) else [])
            order = n.seq if n.seq >= 0 else -0.5
            sig = None if op_view and n.op == "AccumulateGrad" else ("op", n.op)
        else:
            label = [n.name or "", n.shape or ""] if n.shape else [n.name or ""]
            order = {"input": -2.0, "output": float("inf")}.get(n.kind, -1.0)
            sig = None
        return _Atom(f"n{i}", label, n.kind, order, sig, call=n.call, skip=skip)

    def port_label(self, container: int, u: int) -> tuple[str, list[str], str]:
        """Key, label and kind of the inbound port for an outside node ``u``."""
        n = self.g.nodes[u]
        if n.kind == "input":
            return f"i{u}", [n.name or "input", n.shape or ""], "input"
        if n.op == "AccumulateGrad":  # a parameter used here, first used elsewhere
            held = [w for w, _ in self.preds[u] if self.g.nodes[w].kind in ("param", "leaf", "input")]
            if held:
                return self.port_label(container, held[0])
        if n.kind in ("param", "leaf"):
            return f"i{u}", [n.name or "parameter", n.shape or ""], "param"
        mine = self.chains[container]
        theirs = self.chains[self.owner[u]] if self.owner[u] is not None else ()
        k = 0
        while k < min(len(mine), len(theirs)) and mine[k] == theirs[k]:
            k += 1
        if k < len(theirs):
            c = theirs[k]
            return f"c{c}", [f"from {self.call_name(c)}"], "port"
        owner = self.call_name(theirs[-1]) if theirs else self.model_name
        return f"o{u}", [f"from {short_op(n.op or '?')}", f"in {owner}"], "port"

    # -- one level ------------------------------------------------------------------------
    def call_level(self, c: int, view_id: str, parent: str | None) -> _Level:
        is_root = c == self.root
        call = self.calls[c]
        op_view = not self.children.get(c)
        title = (f"{call.name} · {call.type}" if call.name else self.model_name) + (
            f" (call {call.call + 1})" if call.call else "")
        level = _Level(view_id, title, parent, {}, {}, call=c)
        atoms, edges = level.atoms, level.edges
        members = self.subtree(c)
        inside = set(members)
        for i in members:
            if not op_view and self.hidden[i]:
                continue
            b = self.rep(c, i)
            if b not in atoms:
                atoms[b] = self.node_atom(i, op_view) if b[0] == "n" else self.call_atom(int(b[1:]), c)
            preds = self.preds[i] if op_view else self.visible_preds(i)
            for u, kind in preds:
                if u in inside:
                    a = self.rep(c, u)
                    if a is not None and a != b and (op_view or not self.hidden[u]):
                        edges.setdefault((a, b), (kind, False))
                    continue
                key, label, kind_ = self.port_label(c, u)
                key = "p" + key
                if key not in atoms:
                    atoms[key] = _Atom(key, label, kind_, -3.0, None)
                edges.setdefault((key, b), ("data", False))
            label = self.g.nodes[i].entry
            if label is not None:  # it read the model's input outside the graph (token ids)
                key = f"x{list(self.g.data_inputs).index(label)}" if label in self.g.data_inputs else "x"
                text = [label, self.g.data_inputs.get(label, "")] if is_root else [label]
                key = key if is_root else "p" + key
                if key not in atoms:
                    atoms[key] = _Atom(key, text, "input", -3.0, None)
                edges.setdefault((key, b), ("data", False))
            if not is_root and not self.shared(i) and any(j not in inside for j in self.succs[i]):
                if "out" not in atoms:
                    atoms["out"] = _Atom("out", ["output", _shape(call.output_shape)], "port", float("inf"), None)
                edges.setdefault((b, "out"), ("data", False))
        self.mark_skips(c, level)
        return level

    def mark_skips(self, c: int, level: _Level) -> None:
        """The skip path of every skip whose merge this call wrote, in its atoms."""
        for s in self.g.skips:
            if s.call != c and not (s.call is None and c == self.root):
                continue
            chain: list[str] = []
            for i in [*s.path, s.node]:
                a = self.rep(c, i)
                if a is None:
                    key = "p" + self.port_label(c, i)[0]
                    a = key if key in level.atoms else None
                if a is not None and (not chain or chain[-1] != a):
                    chain.append(a)
            for a, b in zip(chain, chain[1:]):
                if (a, b) in level.edges:
                    level.edges[(a, b)] = (level.edges[(a, b)][0], True)

    def sub_level(self, parent: _Level, keys: list[str], title: str, note: str | None) -> _Level:
        """A view of some of ``parent``'s atoms (a fold's first repeat, a group); its id and
        parent are set when it is queued."""
        level = _Level("", title, parent.id, {k: parent.atoms[k] for k in keys}, {}, call=parent.call, note=note)
        chosen = set(keys)
        for (a, b), value in parent.edges.items():
            if a in chosen and b in chosen:
                level.edges[(a, b)] = value
            elif b in chosen:
                src = parent.atoms[a]
                key = "q" + a
                if key not in level.atoms:
                    text = src.label[0] if src.kind in ("port", "input", "param") else f"from {src.label[0]}"
                    level.atoms[key] = _Atom(key, [text], src.kind if src.kind in ("input", "param") else "port",
                                             -3.0, None)
                level.edges.setdefault((key, b), value)
            elif a in chosen:
                if "out" not in level.atoms:
                    level.atoms["out"] = _Atom("out", ["output"], "port", float("inf"), None)
                level.edges.setdefault((a, "out"), (value[0], False))
        return level


FIXED = ("port", "input", "param", "output", "leaf", "junction")  # atoms never folded or grouped


def _fold(level: _Level, b: _Builder) -> _Level:
    """Consecutive repeats of a pattern of up to MAX_PERIOD atoms, each repeat feeding the
    next (``for block in blocks: x = block(x)``), become one box "x N" that opens the first
    repeat: the first call's view, or a view of the pattern's atoms."""
    seq = sorted((a for a in level.atoms.values() if a.sig is not None), key=lambda a: (a.order, a.key))
    sigs = [a.sig for a in seq]
    linked = set(level.edges)

    def chained(i: int, p: int, r: int) -> int:
        """How many of ``r`` repeats of ``seq[i:i+p]`` each feed the next."""
        for k in range(1, r):
            if not any((x.key, y.key) in linked for x in seq[i + (k - 1) * p:i + k * p]
                       for y in seq[i + k * p:i + (k + 1) * p]):
                return k
        return r

    folds = []
    i = 0
    while i < len(seq):
        best = None
        for p in range(1, min(MAX_PERIOD, (len(seq) - i) // 2) + 1):
            r = 1
            while i + (r + 1) * p <= len(seq) and all(sigs[i + r * p + j] == sigs[i + j] for j in range(p)):
                r += 1
            block = p == 1 and seq[i].kind == "module" and bool(b.children.get(seq[i].call))
            need = 2 if block else 3
            if r >= need and (best is None or p * r > best[0] * best[1]):
                r = chained(i, p, r)
                if r >= need and (best is None or p * r > best[0] * best[1]):
                    best = (p, r)
        if best is None:
            i += 1
            continue
        folds.append((i, *best))
        i += best[0] * best[1]
    if not folds:
        return level
    atoms = dict(level.atoms)
    rename: dict[str, str] = {}
    for i, p, r in folds:
        group, first = seq[i:i + p * r], seq[i:i + p]
        key = f"f{first[0].key}"
        calls = [a.call for a in group if a.kind == "module" and a.call is not None]
        if p == 1 and first[0].kind == "module":
            c = first[0].call
            parent = b.calls[c].parent
            names = [_relative(b.calls[m].name, b.calls[parent].name if parent is not None else "") for m in calls]
            last = b.calls[calls[-1]]
            label = [_span(names), f"{b.calls[c].type} ×{r} {_shape(last.output_shape)}".strip()]
            skips = sum(b.skips_in.get(m, 0) for m in calls)  # members are siblings: no overlap
            if skips:
                label.append(f"↷ {skips} skip{'s' if skips > 1 else ''}")
            full = [b.calls[m].name for m in calls]
            opens = None if first[0].opens is None else (
                "call", c, f"{r} calls identical in structure ({_span(full)}): the first is shown")
        elif p == 1:
            label, opens = [f"{first[0].label[0]} ×{r}"], None
        else:
            pattern = " → ".join(b.calls[a.call].type if a.kind == "module" else a.label[0] for a in first)
            label = [_span([group[0].label[0], group[-1].label[0]]), f"{pattern} ×{r}"]
            opens = ("level", b.sub_level(level, [a.key for a in first], f"{level.title}: {label[0]}",
                                          f"the pattern is repeated {r} times; the first repeat is shown"))
        atoms[key] = _Atom(key, label, "fold", first[0].order, None, skip=any(a.skip for a in group), opens=opens,
                           members=calls)
        for a in group:
            del atoms[a.key]
            rename[a.key] = key
    return _Level(level.id, level.title, level.parent, atoms, _renamed(level.edges, rename), level.call, level.note)


def _renamed(edges: dict, rename: dict[str, str]) -> dict:
    out: dict[tuple[str, str], tuple[str, bool]] = {}
    for (a, c), (kind, skip) in edges.items():
        a2, c2 = rename.get(a, a), rename.get(c, c)
        if a2 != c2:
            old = out.get((a2, c2))
            out[(a2, c2)] = (kind, skip or (old is not None and old[1]))
    return out


def _group(level: _Level, b: _Builder) -> _Level:
    """More than MAX_BOXES boxes: consecutive ones (in the order they ran) become groups,
    each a box that opens a view of its members (grouped again if still too many)."""
    movable = sorted((a for a in level.atoms.values() if a.kind not in FIXED), key=lambda a: (a.order, a.key))
    if len(movable) <= MAX_BOXES:
        return level
    size = max(GROUP_SIZE, -(-len(movable) // MAX_BOXES))
    atoms = {k: a for k, a in level.atoms.items() if a.kind in FIXED}
    rename: dict[str, str] = {}
    for start in range(0, len(movable), size):
        chunk = movable[start:start + size]
        key = f"g{start}"
        label = [_span([chunk[0].label[0], chunk[-1].label[0]]), f"{len(chunk)} steps"]
        sub = b.sub_level(level, [a.key for a in chunk], f"{level.title}: {label[0]}", None)
        calls = [c for a in chunk for c in ([a.call] if a.kind == "module" and a.call is not None else a.members)]
        atoms[key] = _Atom(key, label, "group", chunk[0].order, None, skip=any(a.skip for a in chunk),
                           opens=("level", sub), members=calls)
        for a in chunk:
            rename[a.key] = key
    return _Level(level.id, level.title, level.parent, atoms, _renamed(level.edges, rename), level.call, level.note)


BUNDLE_MIN = 3  # an atom fed by at least this many others may take them through a junction


def _bundle(level: _Level, calls: Sequence[ModuleCall] | None = None) -> _Level:
    """Edges into atoms fed by nested sets of atoms (DenseNet: layer k takes the outputs of
    every earlier layer of its block) go through junctions, small points that each stand
    for "these outputs together": layer k's junction takes layer k-1's junction and layer
    k-1's output. The same paths, with a number of edges that grows linearly instead of
    quadratically. Skip edges are left as they are."""
    preds: dict[str, set[str]] = {}
    for (a, c), (kind, _) in level.edges.items():
        if kind == "data":
            preds.setdefault(c, set()).add(a)
    if not any(len(p) >= BUNDLE_MIN for p in preds.values()):
        return level
    order = {k: (a.order, k) for k, a in level.atoms.items()}
    targets = sorted(preds, key=lambda k: order[k])
    known: list[frozenset[str]] = []  # in-sets met so far, in order
    junctions: dict[frozenset[str], str] = {}
    feeds: dict[str, set[str]] = {}  # junction -> what enters it

    def largest_within(members: frozenset[str]) -> frozenset[str] | None:
        best = None
        for s in known:
            if len(s) >= 2 and s < members and (best is None or len(s) > len(best)):
                best = s
        return best

    def junction(members: frozenset[str]) -> str:
        if members not in junctions:
            key = f"j{len(junctions)}"
            junctions[members] = key
            inner = largest_within(members)
            feeds[key] = ({junction(inner)} | (members - inner)) if inner else set(members)
        return junctions[members]

    rewired: dict[str, set[str]] = {}
    for t in targets:
        members = frozenset(preds[t])
        if len(members) >= BUNDLE_MIN:
            inner = largest_within(members)
            if inner is not None:
                rewired[t] = {junction(inner)} | (members - inner)
        known.append(members)
    for t in targets:  # an atom fed by exactly a junction's members takes the junction
        members = frozenset(preds[t])
        if t not in rewired and members in junctions and len(members) >= 2:
            rewired[t] = {junctions[members]}
    if not junctions:
        return level
    edges = {(a, c): v for (a, c), v in level.edges.items() if not (c in rewired and a in preds[c] and not v[1])}
    for t, sources in rewired.items():
        for a in sources:
            edges.setdefault((a, t), ("data", False))
    atoms = dict(level.atoms)
    for members, key in junctions.items():
        first = min(order[m] for m in members if m in order)
        names = [level.atoms[m].label[0] for m in sorted(members, key=lambda m: order.get(m, (0.0, m)))
                 if m in level.atoms]
        atoms[key] = _Atom(key, names, "junction", first[0], None,
                           call=_common_call([level.atoms[m].call for m in members if m in level.atoms], calls))
        for a in feeds[key]:
            edges.setdefault((a, key), ("data", False))
    return _Level(level.id, level.title, level.parent, atoms, edges, level.call, level.note)


def _common_call(ids: list[int | None], calls: Sequence[ModuleCall] | None) -> int | None:
    """The innermost call that every one of ``ids`` ran within (for the full view's boxes)."""
    if calls is None or not ids or any(c is None for c in ids):
        return None
    chains = []
    for c in ids:
        chain = []
        while c is not None:
            chain.append(c)
            c = calls[c].parent
        chains.append(chain[::-1])
    common = None
    for level in zip(*chains):
        if len(set(level)) != 1:
            break
        common = level[0]
    return common


def build_hierarchy(graph: GraphCapture, calls: Sequence[ModuleCall], model_name: str) -> Hierarchy:
    """The module views, breadth-first from the model, within MAX_VIEWS and MAX_VIEW_NODES."""
    b = _Builder(graph, calls, model_name)
    views: list[View] = []
    located: dict[int, tuple[str, str]] = {}
    dropped = 0
    if b.root is None:
        return Hierarchy(views, located, dropped)
    queue: deque[tuple[str, str | None, tuple]] = deque([("root", None, ("call", b.root, None))])
    total = 0
    while queue:
        view_id, parent, spec = queue.popleft()
        if spec[0] == "call":
            level = b.call_level(spec[1], view_id, parent)
            level.note = spec[2]
        else:
            level = spec[1]
            level.id, level.parent = view_id, parent
        level = _bundle(_group(_fold(level, b), b))
        view = View(view_id, level.title, level.parent, call=level.call, note=level.note)
        for atom in level.atoms.values():
            node = ViewNode(atom.key, atom.label, atom.kind, atom.call, atom.skip, members=atom.members, ops=atom.ops)
            view.nodes.append(node)
            if atom.kind == "module" and atom.call is not None:
                located[atom.call] = (view_id, atom.key)
            for c in atom.members:
                located.setdefault(c, (view_id, atom.key))
                for d in b.subtree_calls(c):
                    located.setdefault(d, (view_id, atom.key))
            if atom.opens is None:
                continue
            if len(views) + 1 + len(queue) >= MAX_VIEWS or total + len(level.atoms) >= MAX_VIEW_NODES:
                dropped += 1
                continue
            node.opens = f"c{atom.opens[1]}" if atom.opens[0] == "call" else f"{view_id}.{atom.key}"
            queue.append((node.opens, view_id, atom.opens))
        view.edges = [(x, y, kind, skip) for (x, y), (kind, skip) in level.edges.items()]
        total += len(view.nodes)
        views.append(view)
    return Hierarchy(views, located, dropped)


def full_view(graph: GraphCapture, calls: Sequence[ModuleCall]) -> View:
    """torchviz's graph, node for node, boxed by the module calls that created the nodes;
    nested fan-ins go through junctions (:func:`_bundle`), which keeps DenseNet's dense
    concatenations readable and fast to lay out."""
    per_call: dict[int, int] = {}
    for n in graph.nodes:
        if n.call is not None:
            per_call[n.call] = per_call.get(n.call, 0) + 1
    clusters = {c.id: c for c in calls
                if c.parent is not None and (not c.leaf or per_call.get(c.id, 0) >= 2)}
    skips = {s.node for s in graph.skips}
    on_path = {(a, c) for s in graph.skips for a, c in zip([*s.path, s.operand], [*s.path[1:], s.node, s.node])}
    atoms: dict[str, _Atom] = {}
    for n in graph.nodes:
        if n.kind == "op":
            label = [n.op or "?"]
            if n.call is not None and n.call not in clusters and calls[n.call].parent is not None:
                label.insert(0, calls[n.call].name)  # a one-node module call: named on the node
            if n.id in skips:
                label.append("(skip connection)")
        else:
            label = [n.name or "", n.shape] if n.shape else [n.name or ""]
        atoms[f"n{n.id}"] = _Atom(f"n{n.id}", label, n.kind, float(n.seq), None, call=n.call, skip=n.id in skips)
    edges = {}
    for e in graph.edges:
        edges.setdefault((f"n{e.src}", f"n{e.dst}"), (e.kind, (e.src, e.dst) in on_path))
    level = _bundle(_Level("full", "Autograd graph (torchviz)", None, atoms, edges), calls)
    view = View("full", level.title, None, clusters=clusters)
    view.nodes = [ViewNode(a.key, a.label, a.kind, a.call, a.skip) for a in level.atoms.values()]
    view.edges = [(a, c, kind, skip) for (a, c), (kind, skip) in level.edges.items()]
    return view
