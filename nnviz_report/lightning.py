"""``NNVizCallback`` for Lightning (``import lightning.pytorch``). For the older
``pytorch_lightning`` package use :mod:`nnviz_report.pytorch_lightning`: the two packages'
classes do not mix.

>>> from nnviz_report.lightning import NNVizCallback
>>> trainer = lightning.pytorch.Trainer(callbacks=[NNVizCallback()])
"""

from __future__ import annotations

from ._integration import require
from ._lightning import make_callback

_pl = require("lightning.pytorch", "'nnviz-report[lightning]'")

NNVizCallback = make_callback(_pl, __name__)

__all__ = ["NNVizCallback"]
