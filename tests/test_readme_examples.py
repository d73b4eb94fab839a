"""The README's integration examples, run as they are written (offline: MLflow in a SQLite
file, W&B offline, no Hugging Face hub), and what each promises checked. The notebook
example runs in tests/test_notebook.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, need, page_json


def example(heading: str) -> str:
    """The first ```python block under ``### heading`` in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    part = text.split(f"\n### {heading}\n", 1)[1]
    part = re.split(r"\n##+ ", part, maxsplit=1)[0]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


def run(code: str, name: str) -> dict:
    namespace = {"__name__": f"readme_{name}"}
    exec(compile(code, f"README.md ({name})", "exec"), namespace)
    return namespace


def mlflow_runs(uri: str) -> list:
    mlflow = need("mlflow")
    client = mlflow.MlflowClient(uri)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def artifact(uri: str, run_id: str, path: str, dst: Path) -> bytes:
    mlflow = need("mlflow")
    return Path(mlflow.MlflowClient(uri).download_artifacts(run_id, path, str(dst))).read_bytes()


@pytest.mark.parametrize("package", ["lightning.pytorch", "pytorch_lightning"])
def test_lightning(package, tmp_path, monkeypatch):
    need(package)
    need("tensorboard")
    monkeypatch.chdir(tmp_path)
    code = example("Lightning")
    if package == "pytorch_lightning":
        code = code.replace("lightning.pytorch", "pytorch_lightning").replace(
            "nnviz_report.lightning", "nnviz_report.pytorch_lightning"
        )
        assert "lightning.pytorch" not in code
    run(code, package)
    folder = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert sorted(p.name for p in folder.glob("nnviz-report*")) == [
        "nnviz-report-epoch1.html",
        "nnviz-report-epoch1.json",
        "nnviz-report-epoch2.html",
        "nnviz-report-epoch2.json",
        "nnviz-report.html",
        "nnviz-report.json",
    ]
    data = json.loads((folder / "nnviz-report.json").read_bytes())
    assert data["title"] == "classifier" and data["model"]["inputs"][0]["shape"] == [8, 20]
    assert [p["label"] for p in data["parameters"][0]["history"]] == ["start", "epoch 1", "after"]  # epoch 2 is "after"


def test_huggingface(offline_trackers, tmp_path):
    need("transformers")
    run(example("Hugging Face Trainer"), "huggingface")
    page = (tmp_path / "out" / "nnviz-report.html").read_bytes()
    data = json.loads((tmp_path / "out" / "nnviz-report.json").read_bytes())
    assert data == page_json(page.decode(), "nnviz-data")
    # The example batch: the collated first examples, without the labels.
    assert [i["name"] for i in data["model"]["inputs"]] == ["input['input_ids']", "input['attention_mask']"]
    assert data["model"]["inputs"][0]["shape"] == [8, 16]
    assert any(p["relative_change"] for p in data["parameters"])
    # The page is in the MLflow run that has the Trainer's metrics (ended before our callback ran).
    [metrics_run] = [r for r in mlflow_runs(offline_trackers) if "loss" in r.data.metrics]
    assert metrics_run.info.status == "FINISHED"
    assert (
        artifact(offline_trackers, metrics_run.info.run_id, "nnviz-report/nnviz-report.html", tmp_path / "dl") == page
    )


def test_accelerate_one_process(tmp_path, monkeypatch):
    accelerate = need("accelerate")
    monkeypatch.chdir(tmp_path)
    try:
        namespace = run(example("accelerate"), "accelerate")
    finally:
        accelerate.state.AcceleratorState._reset_state(True)
    report = namespace["r"]
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == report.html
    assert all(p["relative_change"] > 0 for p in report.data["parameters"])


def test_accelerate_two_processes(tmp_path):
    """torchrun, two CPU processes (gloo): the model is DDP-wrapped, the main process builds,
    the other waits; one file, no hang."""
    need("accelerate")
    (tmp_path / "example.py").write_text(example("accelerate"), encoding="utf-8")
    # ACCELERATE_USE_CPU: what `accelerate launch --cpu` sets; without it, accelerate under
    # torchrun on a machine without a GPU runs every process as its own main process.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.py", "report.html"]
    data = page_json((tmp_path / "report.html").read_text(encoding="utf-8"), "nnviz-data")
    assert data["model"]["class_name"] == "Sequential"  # the unwrapped model, not DistributedDataParallel


def test_trackers(offline_trackers, tmp_path):
    need("mlflow"), need("wandb"), need("tensorboard"), need("dvclive")
    namespace = run(example("Experiment trackers"), "trackers")
    page = namespace["report"].html.encode("utf-8")
    [mlflow_run] = mlflow_runs(offline_trackers)
    assert artifact(offline_trackers, mlflow_run.info.run_id, "nnviz-report/report.html", tmp_path / "dl") == page
    [media] = (tmp_path / "wandb").glob("offline-run-*/files/media/html/nnviz-report_*.html")
    assert media.read_bytes() == page
    assert (tmp_path / "runs" / "example" / "nnviz-report" / "report.html").read_bytes() == page
    assert (tmp_path / "dvclive" / "nnviz-report" / "report.html").read_bytes() == page
