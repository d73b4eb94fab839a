"""What the tests share: paths, the devices to run on, reading a report's page, the state a
report must leave a model in, and optional packages. (The examples are importable as
modules: pyproject.toml puts tests/ and examples/ on pytest's path.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def with_examples(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a child process that imports the examples (``from models import``)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLES), env.get("PYTHONPATH", "")) if p)
    return env


# Tests that check numbers against an independent computation also run on a CUDA GPU where
# there is one (they are skipped elsewhere; CI has none): the report reduces on the model's
# device, so the GPU path has its own arithmetic to get right.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
]


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

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("NNVIZ_REQUIRE_INTEGRATIONS"):
            raise
        pytest.skip(f"{module} is not installed (pip install -r requirements-integrations.txt)")
