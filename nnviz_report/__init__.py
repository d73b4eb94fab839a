"""nnviz-report: one self-contained HTML report of a PyTorch model.

>>> snap = nnviz_report.snapshot(model)          # before training
>>> ...                                          # train
>>> nnviz_report.build_report(model, x, before=snap).save("report.html")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import NNVizError

__version__ = "0.1.0"
__all__ = ["NNVizError", "Report", "Snapshot", "__version__", "build_report", "read_report", "snapshot"]

# The names that need torch are imported on first use: `nnviz-report --help` or a usage
# error then answers at once instead of after torch's import (seconds).
_LAZY = {
    "build_report": ".report",
    "Report": ".report",
    "read_report": ".report",
    "snapshot": ".capture.snapshot",
    "Snapshot": ".capture.snapshot",
}

if TYPE_CHECKING:  # pragma: no cover
    from .capture.snapshot import Snapshot, snapshot
    from .report import Report, build_report, read_report


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nnviz_report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
