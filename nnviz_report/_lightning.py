"""The Lightning callback, made for one namespace: ``lightning.pytorch``
(:mod:`nnviz_report.lightning`) or ``pytorch_lightning`` (:mod:`nnviz_report.pytorch_lightning`):
each module builds the class on its own package's ``Callback``, so that a project with only
one of the two packages installed imports only that one.

Order of events: ``on_train_start`` (after a checkpoint is restored and after the sanity
check) takes the snapshot; the example input is the argument, else the module's
``example_input_array``, else the first training batch; ``on_train_end`` (the loggers are
still open; ``on_fit_end`` comes after teardown) builds the report, and with
``every_n_epochs`` so does the end of every Nth epoch, with the snapshots taken so far as a
trajectory. Only global rank zero builds, on the LightningModule itself (never through the
DDP wrapper, whose forward is a collective); every rank reads ``trainer.log_dir`` (it
broadcasts) and meets the others at a barrier with a timeout afterwards.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from . import _integration as integ
from . import trackers
from .errors import NNVizError

_UNSUPPORTED = ("DeepSpeed", "ModelParallel")  # shardings build_report cannot gather (FSDP it can)
MAX_POINTS = 6  # snapshots kept for every_n_epochs trajectories: the first and the latest


def make_callback(pl: ModuleType, module_name: str) -> type:
    """``NNVizCallback`` subclassing ``pl.Callback``."""

    callback: Any = pl.Callback

    class NNVizCallback(callback):
        """Build an nnviz-report at the end of training (and every ``every_n_epochs``
        epochs), save it in the trainer's log dir and log it to every attached logger.

        ``example_input``: what the report runs the model on (a tensor, tuple or dict, as
        for ``build_report``); default ``pl_module.example_input_array``, else the first
        training batch: a tensor as it is, ``(x, y, ...)`` -> ``x``, a dict without its
        ``labels``/``label``/``target``/``targets``/``y`` keys. ``filename``: the page's name
        in the log dir (``report.json``'s is the same with ``.json``); epoch reports add
        ``-epochN``. ``timeout``: seconds the other ranks wait for rank zero's build.
        Other keyword arguments go to :func:`nnviz_report.build_report` (``title``,
        ``layers``, ``max_channels``, ...).
        """

        def __init__(
            self,
            example_input: Any = None,
            every_n_epochs: int | None = None,
            filename: str = "nnviz-report.html",
            timeout: float = 600.0,
            **build_kwargs: Any,
        ) -> None:
            super().__init__()
            if every_n_epochs is not None and (
                isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1
            ):
                raise NNVizError(f"every_n_epochs must be a positive integer or None, not {every_n_epochs!r}")
            if not (isinstance(timeout, (int, float)) and timeout > 0):
                raise NNVizError(f"timeout must be a positive number of seconds, not {timeout!r}")
            self.example_input = example_input
            self.every_n_epochs = every_n_epochs
            self.filename = integ.check_filename(filename)
            self.timeout = float(timeout)
            self.build_kwargs = integ.check_build_kwargs(build_kwargs)
            self.saved: list[Path] = []  # pages written (on global rank zero)
            self._snapshots: list[Any] = []
            self._batches_since_snapshot = 0  # training batches since the last snapshot was taken
            self._example: Any = None
            self._no_example: str | None = None  # why the first batch gave no example
            self._lazy_start = False  # the "start" snapshot waits for Lazy modules' first call
            self._sharded = False  # FSDP: every rank snapshots and builds (rank zero writes)

        # ---- events -------------------------------------------------------------------
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            strategy = type(trainer.strategy).__name__
            if any(s in strategy for s in _UNSUPPORTED):
                raise integ.sharded_strategy(strategy)
            integ.cpu_group()  # a collective: every rank makes the barrier's group now
            self._snapshots = []
            self._example = None
            self._no_example = None
            # FSDP: snapshot() and build_report() gather the full parameters, collectives,
            # so every rank calls them (each with its own first batch); rank zero writes.
            self._sharded = integ.sharded(pl_module)
            if not (trainer.is_global_zero or self._sharded):
                return
            self._lazy_start = False
            self._take_snapshot(trainer, pl_module, "start")
            given = (
                self.example_input
                if self.example_input is not None
                else getattr(pl_module, "example_input_array", None)
            )
            if given is not None:
                self._example = integ.cpu_copy(given)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._batches_since_snapshot += 1

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if self._example is None and self._no_example is None and (trainer.is_global_zero or self._sharded):
                try:
                    self._example = integ.cpu_copy(integ.input_from_batch(batch))
                except NNVizError as exc:  # only rank zero is here: raising would hang the others
                    self._no_example = str(exc)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if not self.every_n_epochs or (trainer.current_epoch + 1) % self.every_n_epochs:
                return
            epoch = trainer.current_epoch + 1
            stem = self.filename[: -len(".html")]
            self._report(trainer, pl_module, f"{stem}-epoch{epoch}.html")
            if trainer.is_global_zero or self._sharded:
                self._take_snapshot(trainer, pl_module, f"epoch {epoch}")
                if len(self._snapshots) > MAX_POINTS:  # a full copy each: the first and the latest
                    del self._snapshots[1]

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            if self._lazy_start:  # Lazy modules have their values now, before the first step
                self._lazy_start = False
                self._take_snapshot(trainer, pl_module, "start", first=True)

        def _take_snapshot(self, trainer: Any, pl_module: Any, label: str, first: bool = False) -> None:
            """A snapshot added to the trajectory; one that fails is a warning (the training
            run goes on), except a model whose Lazy modules are not made yet: its "start" is
            taken before the first optimizer step."""
            from .capture.snapshot import has_lazy_parameters, snapshot

            if label == "start" and not first and has_lazy_parameters(pl_module):
                self._lazy_start = True
                return
            try:
                point = snapshot(pl_module, label=label)
            except Exception as exc:  # noqa: BLE001 - a failed snapshot must not end the training run
                integ.warn_failed(f"no {label!r} snapshot for the report", exc)
                return
            if point is not None:
                self._snapshots.insert(0 if first else len(self._snapshots), point)
                self._batches_since_snapshot = 0

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._report(trainer, pl_module, self.filename)

        # ---- the report ----------------------------------------------------------------
        def _report(self, trainer: Any, pl_module: Any, filename: str) -> None:
            folder = trainer.log_dir  # a broadcast: read on every rank
            folder = Path(folder if folder is not None else trainer.default_root_dir)
            if trainer.is_global_zero or self._sharded:
                try:
                    self._build_and_log(trainer, pl_module, folder, filename)
                except Exception as exc:  # noqa: BLE001 - the finished training run outlives a failed report
                    integ.warn_failed("the report was not built", exc)
            integ.barrier(self.timeout, "rank zero's nnviz-report")

        def _build_and_log(self, trainer: Any, pl_module: Any, folder: Path, filename: str) -> None:
            from .report import build_report

            if self._example is None:
                raise NNVizError(
                    f"no example input ({self._no_example or 'no training batch was seen'}): pass "
                    "NNVizCallback(example_input=...) or set example_input_array on the LightningModule"
                )
            # A snapshot with no training batch after it (the last epoch's) is the model itself: not twice.
            last_is_now = len(self._snapshots) > 1 and not self._batches_since_snapshot
            before = self._snapshots[:-1] if last_is_now else list(self._snapshots)
            report = build_report(pl_module, self._example, before=before, **self.build_kwargs)
            if report is None:  # FSDP, not rank zero: the report is rank zero's
                return
            html, data = trackers.write_files(report, folder, filename[: -len(".html")])
            self.saved.append(html)
            for logger in trainer.loggers:
                if type(logger).__name__ == "DummyLogger":  # fast_dev_run
                    continue
                try:
                    target = trackers.resolve(logger)
                    if target.kind == "folder" and html.parent.resolve() == target.obj.parent.resolve():
                        continue  # the page is already in this logger's folder
                    trackers.log_files(target, html, data, report, step=trainer.global_step)
                except Exception as exc:  # noqa: BLE001 - any tracker's error: the page is saved, training goes on
                    integ.warn_failed(f"the report was saved to {html} but not logged to {type(logger).__name__}", exc)
            for text in report.warnings:
                warnings.warn(f"nnviz-report: {text}", RuntimeWarning, stacklevel=2)

    NNVizCallback.__module__ = module_name
    NNVizCallback.__qualname__ = "NNVizCallback"
    return NNVizCallback
