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

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..capture.calls import ModuleCall
from ..capture.graph import GraphCapture
from .graph_levels import Atom, Level, LevelBuilder, short_op
from .graph_simplify import MAX_BOXES, bundle, fold, group

MAX_VIEWS = 400  # module views drawn at most (the rest are named, not drawn)
MAX_VIEW_NODES = 12_000  # nodes in all module views together, at most
FULL_MAX_NODES = 3000  # torchviz's full graph is drawn up to this many nodes

__all__ = ["FULL_MAX_NODES", "MAX_BOXES", "Hierarchy", "View", "ViewNode", "build_hierarchy", "full_view", "short_op"]


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


def build_hierarchy(graph: GraphCapture, calls: Sequence[ModuleCall], model_name: str) -> Hierarchy:
    """The module views, breadth-first from the model, within MAX_VIEWS and MAX_VIEW_NODES."""
    b = LevelBuilder(graph, calls, model_name)
    views: list[View] = []
    located: dict[int, tuple[str, str]] = {}
    dropped = 0
    if b.cg.root is None:
        return Hierarchy(views, located, dropped)
    queue: deque[tuple[str, str | None, tuple]] = deque([("root", None, ("call", b.cg.root, None))])
    total = 0
    while queue:
        view_id, parent, spec = queue.popleft()
        if spec[0] == "call":
            level = b.call_level(spec[1], view_id, parent)
            level.note = spec[2]
        else:
            level = spec[1]
            level.id, level.parent = view_id, parent
        level = bundle(group(fold(level, b.cg), b.cg))
        view = View(view_id, level.title, level.parent, call=level.call, note=level.note)
        for atom in level.atoms.values():
            node = ViewNode(atom.key, atom.label, atom.kind, atom.call, atom.skip, members=atom.members, ops=atom.ops)
            view.nodes.append(node)
            if atom.kind == "module" and atom.call is not None:
                located[atom.call] = (view_id, atom.key)
            for c in atom.members:
                located.setdefault(c, (view_id, atom.key))
                for d in b.cg.subtree_calls(c):
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
    nested fan-ins go through junctions (:func:`.graph_simplify.bundle`), which keeps DenseNet's dense
    concatenations readable and fast to lay out."""
    per_call: dict[int, int] = {}
    for n in graph.nodes:
        if n.call is not None:
            per_call[n.call] = per_call.get(n.call, 0) + 1
    clusters = {c.id: c for c in calls if c.parent is not None and (not c.leaf or per_call.get(c.id, 0) >= 2)}
    skips = {s.node for s in graph.skips}
    on_path = {(a, c) for s in graph.skips for a, c in zip([*s.path, s.operand], [*s.path[1:], s.node, s.node])}
    atoms: dict[str, Atom] = {}
    for n in graph.nodes:
        if n.kind == "op":
            label = [n.op or "?"]
            if n.call is not None and n.call not in clusters and calls[n.call].parent is not None:
                label.insert(0, calls[n.call].name)  # a one-node module call: named on the node
            if n.id in skips:
                label.append("(skip connection)")
        else:
            label = [n.name or "", n.shape] if n.shape else [n.name or ""]
        atoms[f"n{n.id}"] = Atom(f"n{n.id}", label, n.kind, float(n.seq), None, call=n.call, skip=n.id in skips)
    edges: dict[tuple[str, str], tuple[str, bool]] = {}
    for e in graph.edges:
        edges.setdefault((f"n{e.src}", f"n{e.dst}"), (e.kind, (e.src, e.dst) in on_path))
    level = bundle(Level("full", "Autograd graph (torchviz)", None, atoms, edges), calls)
    view = View("full", level.title, None, clusters=clusters)
    view.nodes = [ViewNode(a.key, a.label, a.kind, a.call, a.skip) for a in level.atoms.values()]
    view.edges = [(a, c, kind, skip) for (a, c), (kind, skip) in level.edges.items()]
    return view
