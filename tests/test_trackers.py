"""Report.log_to: the page and report.json reach each tracker byte for byte, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import nnviz_report
from helpers import need, page_json
from models import DeadReLUNet
from nnviz_report import NNVizError


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    model = DeadReLUNet()
    return nnviz_report.build_report(model, torch.randn(16, 20), before=nnviz_report.snapshot(model), graph=False)


def test_findings_are_in_the_data(report):
    findings = report.data["findings"]
    assert findings and {"level", "section", "text"} == set(findings[0])
    assert any(f["level"] == "warning" and "fc1" in f["text"] for f in findings)
    assert page_json(report.html, "nnviz-data")["findings"] == findings


def check_pair(html_bytes: bytes, json_bytes: bytes, report) -> None:
    assert html_bytes == report.html.encode("utf-8")
    assert json.loads(json_bytes) == page_json(report.html, "nnviz-data")


def test_mlflow_run_and_run_id(report, offline_trackers, tmp_path):
    mlflow = need("mlflow")
    with mlflow.start_run() as run:
        where = report.log_to(run)
    other = mlflow.MlflowClient().create_run(run.info.experiment_id).info.run_id
    report.log_to(other)
    assert where == f"runs:/{run.info.run_id}/nnviz-report/report.html"
    with pytest.raises(NNVizError, match=r"no MLflow run with id 'report.html' at sqlite:"):
        report.log_to("report.html")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")  # the run object is of another store
    with pytest.raises(NNVizError, match=rf"no MLflow run with id '{run.info.run_id}' at sqlite:.*other.db"):
        report.log_to(run)
    mlflow.set_tracking_uri(offline_trackers)
    for run_id in (run.info.run_id, other):
        folder = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="nnviz-report", dst_path=str(tmp_path / run_id)
        )
        names = sorted(p.name for p in Path(folder).iterdir())
        assert names == ["report.html", "report.json"]
        check_pair(
            (tmp_path / run_id / "nnviz-report" / "report.html").read_bytes(),
            (tmp_path / run_id / "nnviz-report" / "report.json").read_bytes(),
            report,
        )


def test_wandb_offline_run(report, offline_trackers, tmp_path):
    wandb = need("wandb")
    run = wandb.init(project="nnviz-test", dir=str(tmp_path), mode="offline")
    try:
        report.log_to(run)
        media = list((tmp_path / "wandb").glob("offline-run-*/files/media/html/nnviz-report_*.html"))
        assert len(media) == 1
        # inject=False: no stylesheet from W&B's host, no <base target="_blank">.
        assert media[0].read_bytes() == report.html.encode("utf-8")
    finally:
        run.finish()
    with pytest.raises(NNVizError, match=rf"cannot log to the W&B run {run.id}: .*finished.*before run.finish"):
        report.log_to(run)
    with pytest.raises(NNVizError, match=r"wandb.run are None outside a run"):
        report.log_to(wandb.run)
    staged = [p for p in (tmp_path / "wandb-data").rglob("*") if p.is_file()]
    assert report.html.encode("utf-8") in {
        p.read_bytes() for p in staged if p.stat().st_size == len(report.html.encode())
    }


def test_summary_writer(report, tmp_path):
    need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    where = report.log_to(writer)
    writer.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    [event] = acc.Tensors("nnviz-report/text_summary")
    text = event.tensor_proto.string_val[0].decode("utf-8")
    assert where in text and where == str((tmp_path / "tb" / "nnviz-report" / "report.html").resolve())
    assert "warning" in text and "fc1" in text
    check_pair(
        (tmp_path / "tb" / "nnviz-report" / "report.html").read_bytes(),
        (tmp_path / "tb" / "nnviz-report" / "report.json").read_bytes(),
        report,
    )


def test_dvclive(report, tmp_path, monkeypatch):
    dvclive = need("dvclive")
    monkeypatch.chdir(tmp_path)
    with dvclive.Live(dir=str(tmp_path / "dvclive"), save_dvc_exp=False) as live:
        where = report.log_to(live)
    assert where == str(tmp_path / "dvclive" / "nnviz-report" / "report.html")
    check_pair(
        (tmp_path / "dvclive" / "nnviz-report" / "report.html").read_bytes(),
        (tmp_path / "dvclive" / "nnviz-report" / "report.json").read_bytes(),
        report,
    )


def test_dvclive_lightning_logger(report, tmp_path, monkeypatch):
    need("dvclive"), need("lightning.pytorch")
    from dvclive.lightning import DVCLiveLogger

    monkeypatch.chdir(tmp_path)
    logger = DVCLiveLogger(dir=str(tmp_path / "live"), save_dvc_exp=False)
    assert report.log_to(logger) == str(tmp_path / "live" / "nnviz-report" / "report.html")
    check_pair(
        (tmp_path / "live" / "nnviz-report" / "report.html").read_bytes(),
        (tmp_path / "live" / "nnviz-report" / "report.json").read_bytes(),
        report,
    )


@pytest.mark.parametrize(
    "target, message",
    [
        (None, "mlflow.active_run() and wandb.run are None outside a run"),
        (object(), "cannot log to a object"),
        (3.5, "cannot log to a float"),
    ],
)
def test_unknown_targets_are_refused(report, target, message):
    with pytest.raises(NNVizError, match=message.replace("(", r"\(").replace(")", r"\)")):
        report.log_to(target)


def test_markdown_escapes_the_title(report):
    from dataclasses import replace

    from nnviz_report.trackers import findings_markdown

    hostile = replace(report, data={**report.data, "title": "<img src=x onerror=alert(1)> *bold*\n# heading"})
    text = findings_markdown(hostile, None)
    first = text.split("\n")[0]
    assert "\\# heading" in first and "\n# " not in text  # a newline in the title starts no heading
    assert first.startswith("**nnviz-report: ") and first.endswith("**")
    title = first[len("**nnviz-report: ") : -2]
    assert re.search(r"(?<!\\)[<>*]", title) is None  # every markup character escaped
    assert "\\<img" in text and "\\*bold\\*" in text
