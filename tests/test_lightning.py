"""NNVizCallback in real Lightning Trainers on the CPU, offline: one report, logged to MLflow
(SQLite store), W&B (offline) and TensorBoard byte for byte; two DDP processes make exactly
one file and no hang. The pytorch_lightning package's class runs in the README example's
test (tests/test_readme_examples.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from helpers import ROOT, need, page_json
from nnviz_report import NNVizError

pl = need("lightning.pytorch")
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger  # noqa: E402

from nnviz_report.lightning import NNVizCallback  # noqa: E402

MODULE = """
import torch
import lightning.pytorch as pl


class Classifier(pl.LightningModule):
    def __init__(self, with_example=True):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        if with_example:
            self.example_input_array = torch.randn(5, 20)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def loader():
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 20, generator=g), torch.randint(0, 3, (64,), generator=g))
    return torch.utils.data.DataLoader(data, batch_size=8)
"""
namespace: dict = {}
exec(compile(MODULE, "lightning_module", "exec"), namespace)  # the DDP test runs the same text
Classifier, loader = namespace["Classifier"], namespace["loader"]


def trainer(tmp_path, callbacks, loggers, **kwargs):
    kwargs = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "limit_train_batches": 2,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(tmp_path),
        "log_every_n_steps": 1,
        **kwargs,
    }
    return pl.Trainer(callbacks=callbacks, logger=loggers, **kwargs)


def test_one_report_logged_to_mlflow_wandb_and_tensorboard(offline_trackers, tmp_path):
    need("mlflow"), need("wandb"), need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mlf = MLFlowLogger(experiment_name="nnviz", tracking_uri=offline_trackers)
    wb = WandbLogger(project="nnviz", save_dir=str(tmp_path), offline=True)
    tb = TensorBoardLogger(str(tmp_path / "tb"))
    callback = NNVizCallback(title="three loggers")
    model = Classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer(tmp_path, [callback], [tb, mlf, wb]).fit(model, loader())
    wb.experiment.finish()

    [page] = callback.saved
    assert page == tmp_path / "tb" / "lightning_logs" / "version_0" / "nnviz-report.html"
    html = page.read_bytes()
    data = json.loads(page.with_suffix(".json").read_bytes())
    assert data == page_json(html.decode(), "nnviz-data") and data["title"] == "three loggers"
    # The example is example_input_array; the snapshot was taken before training moved the weights.
    assert data["model"]["inputs"][0]["shape"] == [5, 20]
    assert [p["relative_change"] > 0 for p in data["parameters"]] == [True] * 4
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())

    mlflow = need("mlflow")
    got = mlflow.artifacts.download_artifacts(
        run_id=mlf.run_id, artifact_path="nnviz-report", tracking_uri=offline_trackers, dst_path=str(tmp_path / "mlf")
    )
    assert (tmp_path / "mlf" / "nnviz-report" / "nnviz-report.html").read_bytes() == html, got
    assert json.loads((tmp_path / "mlf" / "nnviz-report" / "nnviz-report.json").read_bytes()) == data
    assert mlflow.MlflowClient(offline_trackers).get_run(mlf.run_id).data.metrics  # the metrics' run

    [media] = (tmp_path / "wandb").glob("offline-run-*/files/media/html/nnviz-report_*.html")
    assert media.read_bytes() == html

    acc = EventAccumulator(str(page.parent), size_guidance={"tensors": 0})
    acc.Reload()
    [event] = acc.Tensors("nnviz-report/text_summary")
    assert str(page.resolve()) in event.tensor_proto.string_val[0].decode()


def test_first_batch_every_n_epochs_and_csv_logger(tmp_path):
    callback = NNVizCallback(every_n_epochs=1, graph=False)
    trainer(tmp_path, [callback], [CSVLogger(str(tmp_path))], max_epochs=2).fit(
        Classifier(with_example=False), loader()
    )
    folder = tmp_path / "lightning_logs" / "version_0"
    assert callback.saved == [
        folder / "nnviz-report-epoch1.html",
        folder / "nnviz-report-epoch2.html",
        folder / "nnviz-report.html",
    ]
    data = json.loads((folder / "nnviz-report.json").read_bytes())
    assert data["model"]["inputs"][0]["shape"] == [8, 20]  # (x, y) batch -> x
    labels = [point["label"] for point in data["parameters"][0]["history"]]
    assert labels == ["start", "epoch 1", "after"]  # epoch 2's snapshot, the last, is "after" itself
    epoch2 = json.loads((folder / "nnviz-report-epoch2.json").read_bytes())
    assert [point["label"] for point in epoch2["parameters"][0]["history"]] == ["start", "epoch 1", "after"]
    assert not (folder / "nnviz-report").exists()  # no second copy for the CSV logger's own folder


def test_every_n_epochs_keeps_the_first_and_the_latest_snapshots(tmp_path, monkeypatch):
    """Each trajectory point is a full copy of the model: a long run keeps the first and the
    latest few, not one per epoch."""
    from nnviz_report import _lightning

    monkeypatch.setattr(_lightning, "MAX_POINTS", 3)
    callback = NNVizCallback(every_n_epochs=1, graph=False)
    trainer(tmp_path, [callback], False, max_epochs=4).fit(Classifier(), loader())
    data = json.loads(callback.saved[-1].with_suffix(".json").read_bytes())
    labels = [point["label"] for point in data["parameters"][0]["history"]]
    assert labels == ["start", "epoch 3", "after"]  # epoch 4's snapshot is "after" itself


def test_manual_optimization_keeps_every_epochs_point(tmp_path):
    """With the raw optimizer, global_step stays 0: the last snapshot is told from 'after' by
    the batches trained since, not by the step."""

    class Manual(Classifier):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers(use_pl_optimizer=False)
            opt.zero_grad()
            x, y = batch
            self.manual_backward(torch.nn.functional.cross_entropy(self(x), y))
            opt.step()

    callback = NNVizCallback(every_n_epochs=1, graph=False)
    trainer(tmp_path, [callback], False, max_epochs=3).fit(Manual(), loader())
    data = json.loads(callback.saved[-1].with_suffix(".json").read_bytes())
    assert [p["label"] for p in data["parameters"][0]["history"]] == ["start", "epoch 1", "epoch 2", "after"]


def test_a_failed_build_is_a_warning_and_training_ends(tmp_path):
    callback = NNVizCallback(example_input=torch.randn(4, 7))  # the wrong width for Linear(20, ...)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, [callback], False).fit(Classifier(), loader())
    assert callback.saved == []
    assert any("nnviz-report: the report was not built" in str(w.message) and "net.0" in str(w.message) for w in caught)
    assert not list(tmp_path.rglob("*.html"))


def test_a_batch_without_an_input_is_a_warning_at_the_end(tmp_path):
    class OnlyLabels(Classifier):
        def training_step(self, batch, batch_idx):
            return self(batch["target"]).sum()

    data = [{"target": torch.randn(8, 20)} for _ in range(2)]
    callback = NNVizCallback()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, [callback], False).fit(
            OnlyLabels(with_example=False), torch.utils.data.DataLoader(data, batch_size=None)
        )
    assert callback.saved == []
    [message] = [str(w.message) for w in caught if "nnviz-report" in str(w.message)]
    assert "no example input (the training batch has only label keys (target)" in message
    assert "example_input_array" in message


def test_lazy_modules_get_their_start_snapshot_before_the_first_step(tmp_path):
    """A LazyLinear has no values at on_train_start: the snapshot there failed and ended the
    training run; it is taken before the first optimizer step instead."""

    class Lazy(Classifier):
        def __init__(self):
            super().__init__()
            self.net[0] = torch.nn.LazyLinear(16)

    callback = NNVizCallback()
    trainer(tmp_path, [callback], False).fit(Lazy(), loader())
    [page] = callback.saved
    params = json.loads(page.with_suffix(".json").read_bytes())["parameters"]
    assert [p["name"] for p in params] == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    assert all(p["relative_change"] > 0 for p in params), "compared with the values before the first step"


def test_a_failed_snapshot_is_a_warning_and_training_goes_on(tmp_path, monkeypatch):
    import nnviz_report.capture.snapshot as snapshots

    def broken(model, label="before", **kwargs):
        raise RuntimeError(f"cannot copy ({label})")

    monkeypatch.setattr(snapshots, "snapshot", broken)
    callback = NNVizCallback(every_n_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, [callback], False).fit(Classifier(), loader())
    assert [str(w.message) for w in caught if "snapshot" in str(w.message)] == [
        "nnviz-report: no 'start' snapshot for the report: RuntimeError: cannot copy (start)",
        "nnviz-report: no 'epoch 1' snapshot for the report: RuntimeError: cannot copy (epoch 1)",
    ]
    assert [p.name for p in callback.saved] == ["nnviz-report-epoch1.html", "nnviz-report.html"]


def test_arguments_are_checked_when_the_callback_is_made():
    with pytest.raises(NNVizError, match="every_n_epochs"):
        NNVizCallback(every_n_epochs=0)
    with pytest.raises(NNVizError, match="filename"):
        NNVizCallback(filename="../report.html")
    with pytest.raises(NNVizError, match=r"unknown build_report option.*max_chanels"):
        NNVizCallback(max_chanels=4)


def test_one_class_per_package():
    ptl = need("pytorch_lightning")
    from nnviz_report.pytorch_lightning import NNVizCallback as OtherCallback

    assert issubclass(NNVizCallback, pl.Callback) and not issubclass(NNVizCallback, ptl.Callback)
    assert issubclass(OtherCallback, ptl.Callback) and not issubclass(OtherCallback, pl.Callback)
    assert OtherCallback.__module__ == "nnviz_report.pytorch_lightning"  # found again when pickled (ddp_spawn)


DDP_SCRIPT = (
    MODULE
    + """
import sys
from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger
from nnviz_report.lightning import NNVizCallback

if __name__ == "__main__":
    root = Path(sys.argv[1])
    loggers = [TensorBoardLogger(str(root / "tb")), MLFlowLogger(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")]
    trainer = pl.Trainer(accelerator="cpu", strategy="ddp_spawn", devices=2, max_epochs=1, limit_train_batches=2,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         log_every_n_steps=1, default_root_dir=str(root), logger=loggers,
                         callbacks=[NNVizCallback(graph=False)])
    trainer.fit(Classifier(), loader())
"""
)


def test_ddp_spawn_two_processes_one_file_no_hang(tmp_path):
    need("mlflow"), need("tensorboard")
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pages = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.html") if "mlruns" not in p.parts)
    assert [str(p) for p in pages] == ["tb/lightning_logs/version_0/nnviz-report.html"]
    # The run that rank zero's logger made in its process holds the metrics and the page.
    mlflow = need("mlflow")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    [run] = [r for r in runs if r.data.metrics]
    got = client.download_artifacts(run.info.run_id, "nnviz-report", str(tmp_path))
    assert (tmp_path / "nnviz-report" / "nnviz-report.html").read_bytes() == (tmp_path / pages[0]).read_bytes(), got
    assert "nnviz-report: rank" not in done.stderr  # no rank gave up waiting
