"""What the graph section says about what it could not show: layouts not drawn, and segments
autograd recorded as one node."""

from __future__ import annotations

from .. import dot
from . import Notice
from ._format import plural
from .graph_views import Hierarchy

ID = "graph"

# The backward node of torch.utils.checkpoint(..., use_reentrant=True): its forward ran
# under no_grad, so the graph holds one node where the segment's operations would be.
REENTRANT_CHECKPOINT = "CheckpointFunctionBackward"


def checkpoint_text(count: int) -> str:
    return (
        f"{plural(count, 'activation-checkpoint segment')} with use_reentrant=True "
        f"{'is one opaque node' if count == 1 else 'are one opaque node each'} "
        "(CheckpointFunctionBackward) in the autograd graph: the operations inside, and any skip "
        "connection among them, are not drawn or counted (their layers' feature maps are shown); "
        "torch.utils.checkpoint(..., use_reentrant=False) records them"
    )


def layout_notices(views: list[dict], results: dict[str, dot.SvgResult], hierarchy: Hierarchy) -> list[Notice]:
    errors = {v["error"] for v in views if v["error"]}
    if dot.INSTALL_HINT in errors:
        return [Notice("warning", dot.INSTALL_HINT, ID)]
    out = []
    full = next((v for v in views if v["id"] == "full"), None)
    modules = [v for v in views if v["id"] != "full"]
    failed = [v for v in modules if not v["rendered"]]
    if full is not None and not full["rendered"]:
        shown = (
            "the module views show every module and operation"
            if len(failed) < len(modules)
            else "no other view was drawn either"
        )
        out.append(
            Notice(
                "warning" if "budget" not in (full["error"] or "") else "info",
                f"torchviz's full graph ({full['nodes']:,} nodes) was not drawn: {full['error']}; {shown}",
                ID,
            )
        )
    if failed:
        root_failed = any(v["id"] == "root" for v in failed)
        first = failed[0]
        out.append(
            Notice(
                "warning",
                f"{plural(len(failed), 'module view')} of {len(modules)} not drawn "
                f"({first['title']}: {first['error']})"
                + ("; the model's own view is among them" if root_failed else ""),
                ID,
            )
        )
    if hierarchy.dropped:
        out.append(
            Notice(
                "info",
                f"{plural(hierarchy.dropped, 'box')} do not open a view of their own: the page "
                "draws at most a few hundred module views; search still finds every module",
                ID,
            )
        )
    return out
