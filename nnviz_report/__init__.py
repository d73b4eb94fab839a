"""nnviz-report: one self-contained HTML report of a PyTorch model.

>>> snap = nnviz_report.snapshot(model)          # before training
>>> ...                                          # train
>>> nnviz_report.build_report(model, x, before=snap).save("report.html")
"""

__version__ = "0.1.0"

from .capture.snapshot import Snapshot, snapshot  # noqa: E402
from .errors import NNVizError  # noqa: E402
from .report import Report, build_report  # noqa: E402

__all__ = ["build_report", "snapshot", "Snapshot", "Report", "NNVizError", "__version__"]
