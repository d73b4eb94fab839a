"""``NNVizCallback`` for the ``pytorch_lightning`` package. For ``lightning.pytorch`` use
:mod:`nnviz_report.lightning`: the two packages' classes do not mix.

>>> from nnviz_report.pytorch_lightning import NNVizCallback
>>> trainer = pytorch_lightning.Trainer(callbacks=[NNVizCallback()])
"""

from __future__ import annotations

from ._integration import require
from ._lightning import make_callback

_pl = require("pytorch_lightning", "'nnviz-report[pytorch-lightning]'")

NNVizCallback = make_callback(_pl, __name__)

__all__ = ["NNVizCallback"]
