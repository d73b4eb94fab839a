"""Module views kept small and readable, whatever the model: repeats folded into one box,
long sequences split into groups, nested fan-ins bundled through junctions."""

from __future__ import annotations

from collections.abc import Sequence

from ..capture.calls import ModuleCall
from .graph_calls import CallGraph
from .graph_levels import Atom, Level, relative, shape_text, span, sub_level

MAX_BOXES = 60  # boxes in a view before its members are split into groups
GROUP_SIZE = 30  # members per group
MAX_PERIOD = 6  # the longest repeating pattern of calls/operations that is folded


FIXED = ("port", "input", "param", "output", "leaf", "junction")  # atoms never folded or grouped


def fold(level: Level, cg: CallGraph) -> Level:
    """Consecutive repeats of a pattern of up to MAX_PERIOD atoms, each repeat feeding the
    next (``for block in blocks: x = block(x)``), become one box "x N" that opens the first
    repeat: the first call's view, or a view of the pattern's atoms."""
    seq = sorted((a for a in level.atoms.values() if a.sig is not None), key=lambda a: (a.order, a.key))
    sigs = [a.sig for a in seq]
    linked = set(level.edges)

    def chained(i: int, p: int, r: int) -> int:
        """How many of ``r`` repeats of ``seq[i:i+p]`` each feed the next."""
        for k in range(1, r):
            if not any(
                (x.key, y.key) in linked
                for x in seq[i + (k - 1) * p : i + k * p]
                for y in seq[i + k * p : i + (k + 1) * p]
            ):
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
            block = p == 1 and seq[i].kind == "module" and bool(cg.children.get(seq[i].call))
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
        group, first = seq[i : i + p * r], seq[i : i + p]
        key = f"f{first[0].key}"
        calls = [a.call for a in group if a.kind == "module" and a.call is not None]
        opens: tuple | None
        if p == 1 and first[0].kind == "module":
            c = calls[0]  # the first atom's call
            parent = cg.calls[c].parent
            names = [relative(cg.calls[m].name, cg.calls[parent].name if parent is not None else "") for m in calls]
            last = cg.calls[calls[-1]]
            label = [span(names), f"{cg.calls[c].type} ×{r} {shape_text(last.output_shape)}".strip()]
            skips = sum(cg.skips_in.get(m, 0) for m in calls)  # members are siblings: no overlap
            if skips:
                label.append(f"↷ {skips} skip{'s' if skips > 1 else ''}")
            full = [cg.calls[m].name for m in calls]
            opens = (
                None
                if first[0].opens is None
                else ("call", c, f"{r} calls identical in structure ({span(full)}): the first is shown")
            )
        elif p == 1:
            label, opens = [f"{first[0].label[0]} ×{r}"], None
        else:
            pattern = " → ".join(
                cg.calls[a.call].type if a.kind == "module" and a.call is not None else a.label[0] for a in first
            )
            label = [span([group[0].label[0], group[-1].label[0]]), f"{pattern} ×{r}"]
            opens = (
                "level",
                sub_level(
                    level,
                    [a.key for a in first],
                    f"{level.title}: {label[0]}",
                    f"the pattern is repeated {r} times; the first repeat is shown",
                ),
            )
        atoms[key] = Atom(
            key, label, "fold", first[0].order, None, skip=any(a.skip for a in group), opens=opens, members=calls
        )
        for a in group:
            del atoms[a.key]
            rename[a.key] = key
    return Level(level.id, level.title, level.parent, atoms, _renamed(level.edges, rename), level.call, level.note)


def _renamed(edges: dict, rename: dict[str, str]) -> dict:
    out: dict[tuple[str, str], tuple[str, bool]] = {}
    for (a, c), (kind, skip) in edges.items():
        a2, c2 = rename.get(a, a), rename.get(c, c)
        if a2 != c2:
            old = out.get((a2, c2))
            out[(a2, c2)] = (kind, skip or (old is not None and old[1]))
    return out


def group(level: Level, cg: CallGraph) -> Level:
    """More than MAX_BOXES boxes: consecutive ones (in the order they ran) become groups,
    each a box that opens a view of its members (grouped again if still too many)."""
    movable = sorted((a for a in level.atoms.values() if a.kind not in FIXED), key=lambda a: (a.order, a.key))
    if len(movable) <= MAX_BOXES:
        return level
    size = max(GROUP_SIZE, -(-len(movable) // MAX_BOXES))
    atoms = {k: a for k, a in level.atoms.items() if a.kind in FIXED}
    rename: dict[str, str] = {}
    for start in range(0, len(movable), size):
        chunk = movable[start : start + size]
        key = f"g{start}"
        label = [span([chunk[0].label[0], chunk[-1].label[0]]), f"{len(chunk)} steps"]
        sub = sub_level(level, [a.key for a in chunk], f"{level.title}: {label[0]}", None)
        calls = [c for a in chunk for c in ([a.call] if a.kind == "module" and a.call is not None else a.members)]
        atoms[key] = Atom(
            key,
            label,
            "group",
            chunk[0].order,
            None,
            skip=any(a.skip for a in chunk),
            opens=("level", sub),
            members=calls,
        )
        for a in chunk:
            rename[a.key] = key
    return Level(level.id, level.title, level.parent, atoms, _renamed(level.edges, rename), level.call, level.note)


BUNDLE_MIN = 3  # an atom fed by at least this many others may take them through a junction


def bundle(level: Level, calls: Sequence[ModuleCall] | None = None) -> Level:
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

    def in_order(keys: set[str]) -> list[str]:
        """Sets iterate in an order that changes between processes (string hashing): edges are
        added in the atoms' order, so that the same model gives the same SVG."""
        return sorted(keys, key=lambda k: order.get(k, (float("-inf"), k)))

    edges = {(a, c): v for (a, c), v in level.edges.items() if not (c in rewired and a in preds[c] and not v[1])}
    for t, sources in rewired.items():
        for a in in_order(sources):
            edges.setdefault((a, t), ("data", False))
    atoms = dict(level.atoms)
    for members, key in junctions.items():
        first = min(order[m] for m in members if m in order)
        names = [
            level.atoms[m].label[0] for m in sorted(members, key=lambda m: order.get(m, (0.0, m))) if m in level.atoms
        ]
        atoms[key] = Atom(
            key,
            names,
            "junction",
            first[0],
            None,
            call=_common_call([level.atoms[m].call for m in members if m in level.atoms], calls),
        )
        for a in in_order(feeds[key]):
            edges.setdefault((a, key), ("data", False))
    return Level(level.id, level.title, level.parent, atoms, edges, level.call, level.note)


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
