"""Reports built from odd calling contexts and odd models: inside no_grad or
inference_mode, models made in inference mode, TorchScript, the meta device, nested
inputs."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_same_state, state_of
from torch import nn

import nnviz_report
from nnviz_report import NNVizError


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + torch.relu(self.fc(x))


def _graph(report) -> tuple[int, int, list[str]]:
    g = report.data["graph"]
    return g["nodes"], g["residual_connections"], [i["name"] for i in report.data["model"]["inputs"]]


@pytest.mark.parametrize("context", [torch.no_grad, lambda: torch.set_grad_enabled(False), torch.inference_mode])
def test_the_callers_grad_mode_does_not_change_the_report(context):
    model, x = Residual(), torch.randn(3, 4)
    outside = nnviz_report.build_report(model, x)
    with context():
        inside = nnviz_report.build_report(model, x)
        assert not torch.is_grad_enabled(), "the caller's mode is left as it was"
    assert _graph(inside) == _graph(outside)
    assert _graph(outside)[1] == 1, "the input's skip connection is in the graph"
    assert inside.data["feature_maps"] == outside.data["feature_maps"]


def test_an_input_made_in_inference_mode():
    with torch.inference_mode():
        x = torch.randn(3, 4)
    report = nnviz_report.build_report(Residual(), x)
    assert report.data["graph"]["residual_connections"] == 1
    assert x.is_inference() and not x.requires_grad


def test_a_model_made_in_inference_mode_gets_every_section_but_the_graph():
    with torch.inference_mode():
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))
    model.eval()
    before = state_of(model)
    report = nnviz_report.build_report(model, torch.randn(2, 3, 8, 8), before=nnviz_report.snapshot(model))
    assert_same_state(before, state_of(model))
    assert [e["name"] for e in report.data["feature_maps"]] == ["0", "1", "2", "3", "4"]
    assert report.data["activations"]["calls"][0]["dead_fraction"] is not None
    assert len(report.data["parameters"]) == 6 and report.data["parameters"][0]["relative_change"] == 0
    note = report.data["graph"]["note"]
    assert "created under torch.inference_mode()" in note and "create the model outside inference mode" in note
    assert note in report.html
    # Training mode would update BatchNorm's statistics, which are inference tensors.
    with pytest.raises(NNVizError, match="created under torch.inference_mode.*use mode='eval'"):
        nnviz_report.build_report(model, torch.randn(2, 3, 8, 8), mode="train")
    assert_same_state(before, state_of(model))
