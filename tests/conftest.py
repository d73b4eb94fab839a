from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


# Tests that check numbers against an independent computation also run on a CUDA GPU where
# there is one (they are skipped elsewhere; CI has none): the report reduces on the model's
# device, so the GPU path has its own arithmetic to get right.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def page_json(html: str, element_id: str):
    """The JSON a report embeds in ``<script id=element_id>``."""
    m = re.search(rf'<script[^>]*id="{re.escape(element_id)}"[^>]*>(.*?)</script>', html, re.S)
    assert m, f"no #{element_id} in the page"
    return json.loads(m.group(1))


def page_view(html: str):
    """Figures and view payloads: each section's gzip+base64 JSON (script.nnviz-view), merged
    as the browser merges them."""
    from nnviz_report.render import unpacked

    parts = re.findall(r'<script[^>]*class="nnviz-view"[^>]*data-section="([^"]+)"[^>]*>(.*?)</script>', html, re.S)
    assert parts, "no script.nnviz-view in the page"
    view = {"figures": {}, "assets": {}}
    for section, text in parts:
        v = unpacked(text)
        assert not view["figures"].keys() & v["figures"].keys()
        view["figures"].update(v["figures"])
        view["assets"][section] = v["assets"]
    return view


def state_of(model: torch.nn.Module) -> dict:
    """Everything about a model that a report must leave as it was."""
    return {
        "training": [(n, m.training) for n, m in model.named_modules()],
        "params": {
            n: (p.detach().clone(), p.requires_grad, None if p.grad is None else p.grad.clone())
            for n, p in model.named_parameters()
        },
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "hooks": [
            (n, attr, list(getattr(m, attr).items()))
            for n, m in model.named_modules()
            for attr in vars(m)
            if "hooks" in attr and isinstance(getattr(m, attr), dict)
        ],
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["params"].keys() == after["params"].keys()
    for name, (value, rg, grad) in before["params"].items():
        v2, rg2, g2 = after["params"][name]
        assert torch.equal(value, v2), name
        assert rg == rg2, name
        assert (grad is None) == (g2 is None), name
        if grad is not None:
            assert torch.equal(grad, g2), name
    assert before["buffers"].keys() == after["buffers"].keys()
    for name, value in before["buffers"].items():
        assert torch.equal(value, after["buffers"][name]), name
    assert before["hooks"] == after["hooks"]


def need(module: str):
    """An optional integration's package (requirements-integrations.txt; `make test` installs
    it). Missing: the test is skipped, unless NNVIZ_REQUIRE_INTEGRATIONS is set (as in CI)."""
    import importlib
    import os

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("NNVIZ_REQUIRE_INTEGRATIONS"):
            raise
        pytest.skip(f"{module} is not installed (pip install -r requirements-integrations.txt)")


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
