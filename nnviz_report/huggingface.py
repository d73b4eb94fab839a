"""``NNVizTrainerCallback`` for the Hugging Face ``Trainer``.

>>> from nnviz_report.huggingface import NNVizTrainerCallback
>>> trainer = transformers.Trainer(model, args, train_dataset=ds, callbacks=[NNVizTrainerCallback()])

``on_train_begin`` (on the world process zero) takes the snapshot and the example batch;
``on_train_end`` builds the report into ``args.output_dir`` and logs it to the MLflow run
and the W&B run that were active when training began (the Trainer's ``MLflowCallback`` ends
its run in its own ``on_train_end``, before this callback's: the run is found at the
start). The model the Trainer hands to callbacks is the unwrapped one, so no rank runs a DDP
wrapper's forward (a collective) alone; every rank meets at a barrier with a timeout.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _integration as integ
from . import trackers
from .errors import NNVizError

_transformers = integ.require("transformers", "'nnviz-report[huggingface]'")

__all__ = ["NNVizTrainerCallback"]


TrainerCallback: Any = _transformers.TrainerCallback


class NNVizTrainerCallback(TrainerCallback):
    """Build an nnviz-report when ``Trainer.train()`` ends.

    ``example_input``: what the report runs the model on (a dict is passed as keyword
    arguments); default: the first ``per_device_train_batch_size`` examples of the training
    set, put together by the Trainer's data collator, without the keys in ``drop_keys``
    (random states are restored afterwards, so training sees the same data). ``filename``:
    the page's name in ``args.output_dir`` (``report.json``'s is the same with ``.json``).
    ``timeout``: seconds the other processes wait for the build. Other keyword arguments go
    to :func:`nnviz_report.build_report`.
    """

    def __init__(
        self,
        example_input: Any = None,
        drop_keys: tuple[str, ...] = ("labels",),
        filename: str = "nnviz-report.html",
        timeout: float = 600.0,
        **build_kwargs: Any,
    ) -> None:
        if isinstance(drop_keys, str) or not all(isinstance(k, str) for k in drop_keys):
            raise NNVizError(f"drop_keys must be a tuple of key names, not {drop_keys!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise NNVizError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.example_input = example_input
        self.drop_keys = tuple(drop_keys)
        self.filename = integ.check_filename(filename)
        self.timeout = float(timeout)
        self.build_kwargs = integ.check_build_kwargs(build_kwargs)
        self.saved: Path | None = None
        self._snapshot: Any = None
        self._example: Any = None
        self._targets: list[Any] = []
        self._sharded = False  # FSDP: every process snapshots and builds
        self._ready = False  # on_train_begin got what the report needs

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, train_dataloader: Any = None, **kwargs: Any
    ) -> None:
        if getattr(args, "deepspeed", None):
            raise integ.sharded_strategy("DeepSpeed")
        integ.cpu_group()  # a collective: every process makes the barrier's group now
        self._snapshot = self._example = None
        self._targets = []
        self._ready = False
        # FSDP (from TrainingArguments or accelerate's config): snapshot() gathers the full
        # parameters, a collective, so every process calls it; rank 0 gets the copy.
        self._sharded = integ.sharded(model)
        if self.example_input is None and not _indexable(train_dataloader):  # every process returns alike
            if state.is_world_process_zero:
                integ.warn_failed(
                    "no report will be made at the end of this training run",
                    NNVizError(
                        "the training set is not a sized, indexable dataset (an IterableDataset?), so it gives no "
                        "example input; pass NNVizTrainerCallback(example_input=...)"
                    ),
                )
            return
        if not (state.is_world_process_zero or self._sharded):
            return
        from .capture.snapshot import snapshot

        try:
            if model is None:
                raise NNVizError("the Trainer passed no model to the callback")
            if self.example_input is not None:
                example = integ.cpu_copy(self.example_input)
            else:
                example = self._first_examples(args, train_dataloader)
            self._snapshot = snapshot(model, label="start")
            self._example = example
            self._targets = _active_runs() if state.is_world_process_zero else []
            self._ready = True
        except Exception as exc:  # noqa: BLE001 - raising would leave the other processes waiting
            self._snapshot = None
            integ.warn_failed("no report will be made at the end of this training run", exc)

    def _first_examples(self, args: Any, loader: Any) -> Any:
        dataset, collate = loader.dataset, getattr(loader, "collate_fn", None)
        count = min(len(dataset), max(int(args.per_device_train_batch_size), 1))
        with integ.rng_kept():  # datasets with random augmentation draw random numbers
            items = [dataset[i] for i in range(count)]
            batch = collate(items) if collate is not None else items
        if isinstance(batch, Mapping):
            kept = {k: v for k, v in batch.items() if k not in self.drop_keys}
            if not kept:
                raise NNVizError(f"the batch holds only {', '.join(batch)}; pass example_input= or fewer drop_keys")
            return integ.cpu_copy(kept)
        return integ.cpu_copy(integ.input_from_batch(batch, self.drop_keys))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self._ready and (state.is_world_process_zero or self._sharded):
            try:
                self._build_and_log(args, state, model)
            except Exception as exc:  # noqa: BLE001 - the finished training run outlives a failed report
                integ.warn_failed("the report was not built", exc)
        integ.barrier(self.timeout, "the main process's nnviz-report")

    def _build_and_log(self, args: Any, state: Any, model: Any) -> None:
        from .report import build_report

        report = build_report(model, self._example, before=self._snapshot, **self.build_kwargs)
        if report is None:  # FSDP, not rank 0: the report is rank 0's
            return
        folder = Path(args.output_dir)
        html, data = trackers.write_files(report, folder, self.filename[: -len(".html")])
        self.saved = html
        for target in self._targets:
            try:
                trackers.log_files(target, html, data, report, step=state.global_step)
            except Exception as exc:  # noqa: BLE001 - any tracker's error: the page is saved, training goes on
                integ.warn_failed(f"the report was saved to {html} but not logged to {target.kind}", exc)
        for text in report.warnings:
            warnings.warn(f"nnviz-report: {text}", RuntimeWarning, stacklevel=2)


def _indexable(loader: Any) -> bool:
    """Whether the training set has a length and items by index, to take examples from."""
    import torch

    dataset = getattr(loader, "dataset", None)
    if dataset is None or isinstance(dataset, torch.utils.data.IterableDataset):
        return False
    try:
        len(dataset)
    except TypeError:
        return False
    return True


def _active_runs() -> list[trackers.Target]:
    """The MLflow and W&B runs active now (the Trainer's callbacks start theirs in
    ``on_train_begin``, before user callbacks), kept for ``on_train_end``."""
    found = []
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        run_id = mlflow.active_run().info.run_id
        found.append(trackers.Target("mlflow", mlflow.MlflowClient(tracking_uri=mlflow.get_tracking_uri()), run_id))
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            found.append(trackers.resolve(wandb.run))
        except NNVizError:  # a disabled run (WANDB_MODE=disabled): nothing to log to
            pass
    return found
