"""The atoms of one module view: what a module call's view shows before it is simplified.

A call's *level* holds its atoms (the calls its ``forward`` made, the operations it wrote
itself, the parameters it uses, ports for its inputs and its output) and the edges between
them, collapsed from the autograd graph. :mod:`.graph_simplify` folds, groups and bundles
a level; :mod:`.graph_views` turns levels into views.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..capture.calls import ModuleCall
from ..capture.graph import GraphCapture, GraphNode
from .graph_calls import CallGraph

LEAF_VIEW_OPS = 3  # a leaf module with at least this many operations gets a view of them


def short_op(op: str) -> str:
    return re.sub(r"Backward\d*$", "", op)


def relative(name: str, parent: str) -> str:
    return name[len(parent) + 1 :] if parent and name.startswith(parent + ".") else name


def span(names: Sequence[str]) -> str:
    """``layer.1``..``layer.5`` -> ``layer.1–5``; otherwise ``first … last``."""
    if len(names) == 1:
        return names[0]
    a, b = re.match(r"(.*?)(\d+)$", names[0]), re.match(r"(.*?)(\d+)$", names[-1])
    if a and b and a.group(1) == b.group(1):
        return f"{names[0]}–{b.group(2)}"
    return f"{names[0]} … {names[-1]}"


def shape_text(shape: Sequence[int] | None) -> str:
    return f"({', '.join(map(str, shape))})" if shape else ""


@dataclass
class Atom:
    """One box of a view before folding: a child call, an own node, or a port."""

    key: str
    label: list[str]
    kind: str
    order: float  # when it ran (autograd's creation order)
    sig: object  # equal for atoms identical in structure (None: never folded)
    call: int | None = None
    skip: bool = False
    opens: tuple | None = None  # what its view is built from: ("call", id, note) or ("level", Level)
    members: list[int] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)


@dataclass
class Level:
    """The atoms of one view and the edges between them."""

    id: str
    title: str
    parent: str | None
    atoms: dict[str, Atom]
    edges: dict[tuple[str, str], tuple[str, bool]]  # (src, dst) -> (kind, skip)
    call: int | None = None
    note: str | None = None


class LevelBuilder:
    """Builds the level of a module call: the atoms of its view and the edges between them."""

    def __init__(self, graph: GraphCapture, calls: Sequence[ModuleCall], model_name: str):
        self.cg = CallGraph(graph, calls, model_name)

    def call_atom(self, c: int, parent: int) -> Atom:
        cg = self.cg
        call = cg.calls[c]
        name = relative(call.name, cg.calls[parent].name) + (f" (call {call.call + 1})" if call.call else "")
        label = [name, f"{call.type} {shape_text(call.output_shape)}".strip()]
        if cg.skips_in.get(c):
            k = cg.skips_in[c]
            label.append(f"↷ {k} skip{'s' if k > 1 else ''}")
        kids = cg.children.get(c)
        ops = [n for n in cg.own.get(c, ()) if cg.g.nodes[n].kind == "op" and not cg.hidden[n]]
        opens = ("call", c, None) if kids or len(ops) >= LEAF_VIEW_OPS else None
        atom = Atom(f"m{c}", label, "module", cg.order[c], cg.sig[c], call=c, skip=c in cg.skips_own, opens=opens)
        if opens is None:
            atom.ops = [self.node_text(cg.g.nodes[n]) for n in cg.own.get(c, ()) if not cg.hidden[n]]
        return atom

    def node_text(self, n: GraphNode) -> str:
        if n.kind == "op":
            return short_op(n.op or "?")
        return " ".join(x for x in (n.name, n.shape) if x)

    def node_atom(self, i: int, op_view: bool) -> Atom:
        cg = self.cg
        n = cg.g.nodes[i]
        skip = i in cg.skip_nodes
        if n.kind == "op":
            name = (n.op or "?") if op_view else short_op(n.op or "?")
            label = [name] + (["(skip connection)"] if skip and any(s.node == i for s in cg.g.skips) else [])
            order = n.seq if n.seq >= 0 else -0.5
            sig = None if op_view and n.op == "AccumulateGrad" else ("op", n.op)
        else:
            label = [n.name or "", n.shape or ""] if n.shape else [n.name or ""]
            order = {"input": -2.0, "output": float("inf")}.get(n.kind, -1.0)
            sig = None
        return Atom(f"n{i}", label, n.kind, order, sig, call=n.call, skip=skip)

    def port_label(self, container: int, u: int) -> tuple[str, list[str], str]:
        """Key, label and kind of the inbound port for an outside node ``u``."""
        cg = self.cg
        n = cg.g.nodes[u]
        if n.kind == "input":
            return f"i{u}", [n.name or "input", n.shape or ""], "input"
        if n.op == "AccumulateGrad":  # a parameter used here, first used elsewhere
            held = [w for w, _ in cg.preds[u] if cg.g.nodes[w].kind in ("param", "leaf", "input")]
            if held:
                return self.port_label(container, held[0])
        if n.kind in ("param", "leaf"):
            return f"i{u}", [n.name or "parameter", n.shape or ""], "param"
        mine = cg.chains[container]
        owner = cg.owner[u]
        theirs = cg.chains[owner] if owner is not None else ()
        k = 0
        while k < min(len(mine), len(theirs)) and mine[k] == theirs[k]:
            k += 1
        if k < len(theirs):
            c = theirs[k]
            return f"c{c}", [f"from {cg.call_name(c)}"], "port"
        owner_name = cg.call_name(theirs[-1]) if theirs else cg.model_name
        return f"o{u}", [f"from {short_op(n.op or '?')}", f"in {owner_name}"], "port"

    # -- one level ------------------------------------------------------------------------
    def call_level(self, c: int, view_id: str, parent: str | None) -> Level:
        cg = self.cg
        is_root = c == cg.root
        call = cg.calls[c]
        op_view = not cg.children.get(c)
        title = (f"{call.name} · {call.type}" if call.name else cg.model_name) + (
            f" (call {call.call + 1})" if call.call else ""
        )
        level = Level(view_id, title, parent, {}, {}, call=c)
        atoms, edges = level.atoms, level.edges
        members = cg.subtree(c)
        inside = set(members)
        for i in members:
            if not op_view and cg.hidden[i]:
                continue
            b = cg.rep(c, i)
            assert b is not None  # i is in c's subtree
            if b not in atoms:
                atoms[b] = self.node_atom(i, op_view) if b[0] == "n" else self.call_atom(int(b[1:]), c)
            preds = cg.preds[i] if op_view else cg.visible_preds(i)
            for u, kind in preds:
                if u in inside:
                    a = cg.rep(c, u)
                    if a is not None and a != b and (op_view or not cg.hidden[u]):
                        edges.setdefault((a, b), (kind, False))
                    continue
                key, label, kind_ = self.port_label(c, u)
                key = "p" + key
                if key not in atoms:
                    atoms[key] = Atom(key, label, kind_, -3.0, None)
                edges.setdefault((key, b), ("data", False))
            entry = cg.g.nodes[i].entry
            if entry is not None:  # it read the model's input outside the graph (token ids)
                key = f"x{list(cg.g.data_inputs).index(entry)}" if entry in cg.g.data_inputs else "x"
                text = [entry, cg.g.data_inputs.get(entry, "")] if is_root else [entry]
                key = key if is_root else "p" + key
                if key not in atoms:
                    atoms[key] = Atom(key, text, "input", -3.0, None)
                edges.setdefault((key, b), ("data", False))
            if not is_root and not cg.shared(i) and any(j not in inside for j in cg.succs[i]):
                if "out" not in atoms:
                    atoms["out"] = Atom("out", ["output", shape_text(call.output_shape)], "port", float("inf"), None)
                edges.setdefault((b, "out"), ("data", False))
        self.mark_skips(c, level)
        return level

    def mark_skips(self, c: int, level: Level) -> None:
        """The skip path of every skip whose merge this call wrote, in its atoms."""
        cg = self.cg
        for s in cg.g.skips:
            if s.call != c and not (s.call is None and c == cg.root):
                continue
            chain: list[str] = []
            for i in [*s.path, s.node]:
                a = cg.rep(c, i)
                if a is None:
                    key = "p" + self.port_label(c, i)[0]
                    a = key if key in level.atoms else None
                if a is not None and (not chain or chain[-1] != a):
                    chain.append(a)
            for a, b in itertools.pairwise(chain):
                if (a, b) in level.edges:
                    level.edges[(a, b)] = (level.edges[(a, b)][0], True)


def sub_level(parent: Level, keys: list[str], title: str, note: str | None) -> Level:
    """A view of some of ``parent``'s atoms (a fold's first repeat, a group); its id and
    parent are set when it is queued."""
    level = Level("", title, parent.id, {k: parent.atoms[k] for k in keys}, {}, call=parent.call, note=note)
    chosen = set(keys)
    for (a, b), value in parent.edges.items():
        if a in chosen and b in chosen:
            level.edges[(a, b)] = value
        elif b in chosen:
            src = parent.atoms[a]
            key = "q" + a
            if key not in level.atoms:
                text = src.label[0] if src.kind in ("port", "input", "param") else f"from {src.label[0]}"
                level.atoms[key] = Atom(key, [text], src.kind if src.kind in ("input", "param") else "port", -3.0, None)
            level.edges.setdefault((key, b), value)
        elif a in chosen:
            if "out" not in level.atoms:
                level.atoms["out"] = Atom("out", ["output"], "port", float("inf"), None)
            level.edges.setdefault((a, "out"), (value[0], False))
    return level
