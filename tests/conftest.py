"""Fixtures for every test: a fixed seed, and trackers that stay offline. The helpers the
tests import are in helpers.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch):
    """Trackers that write only under tmp_path and reach no host: MLflow in a SQLite file,
    W&B offline, Hugging Face without its hub."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name, value in {
        "MLFLOW_TRACKING_URI": uri,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "DISABLE_MLFLOW_INTEGRATION": "FALSE",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        monkeypatch.setenv(name, value)
    import sys

    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(uri)
    yield uri
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    wandb = sys.modules.get("wandb")
    if wandb is not None:  # W&B keeps its settings (WANDB_DIR among them) for the process
        wandb.finish()
        wandb.teardown()
