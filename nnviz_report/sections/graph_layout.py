"""Graphviz layouts of the graph's views, within the layout budget."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .. import dot, dot_source
from ..capture.calls import ModuleCall
from .graph_views import View

BATCH_NODES = 1500  # module views laid out by one dot process, at most this many nodes in all
NICE = 10  # dot's priority below ours: it yields the CPU to the rest of the report
FULL_SHARE = 0.4  # of the layout budget for torchviz's full graph: the module views show it all too


def lay_out(views: list[tuple[str, View, str]], calls: list[ModuleCall], timeout: float) -> dict[str, dot.SvgResult]:
    """SVG per view id. Module views go in batches (one dot each, two at a time); a batch
    that does not finish in time is retried view by view, with the cheapest settings."""
    prepared = []
    results: dict[str, dot.SvgResult] = {}
    for vid, view, prefix in views:
        attrs = dot_source.layout_attrs(dot_source.layout_cost(view))
        if attrs is None:
            results[vid] = dot.SvgResult(None, "too large to lay out within the layout budget", 0.0)
        else:
            prepared.append((vid, view, prefix, attrs))
    batches: list[list] = []
    size = BATCH_NODES
    for item in prepared:
        n = len(item[1].nodes)
        if size + n > BATCH_NODES or item[0] == "full":
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += n

    def lay_out(batch: list) -> list[tuple[str, dot.SvgResult]]:
        sources = [dot_source.source(view, calls, prefix, attrs) for _, view, prefix, attrs in batch]
        full = batch[0][0] == "full"
        out = dot.render_svgs(sources, timeout * FULL_SHARE if full else timeout, 0 if full else NICE)
        if len(batch) > 1 and all(r.error and "did not finish" in r.error for r in out):
            # One view held the batch up: each again, cheapest settings, until the batch has
            # had twice the budget; what is left keeps its error.
            cheapest = dot_source.LAYOUT_TIERS[-1][1]
            deadline = time.perf_counter() + timeout
            for k, (_, view, prefix, _) in enumerate(batch):
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                out[k] = dot.render_svg(dot_source.source(view, calls, prefix, cheapest), min(timeout, left), NICE)
        return [(item[0], r) for item, r in zip(batch, out)]

    if batches:
        with ThreadPoolExecutor(min(2, len(batches))) as pool:
            for pairs in pool.map(lay_out, batches):
                results.update(pairs)
    return results
