"""The report never changes the user's model, also when the forward pass fails."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES, assert_same_state, state_of
from models import ResNet18, TransformerClassifier
from torch import nn

import nnviz_report
from nnviz_report import NNVizError


def _mixed_state(model: nn.Module) -> list[int]:
    """Give the model state a report could disturb: mixed modes, a frozen parameter, a
    gradient on some parameters, and a forward hook and pre-hook of the user's."""
    model.train()
    mods = list(model.modules())
    mods[2].eval()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[1].grad = torch.ones_like(params[1])
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(1))
    mods[3].register_forward_pre_hook(lambda m, i: None)
    return calls


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["eval", "train", "as-is"])
def test_model_state_unchanged(mode, device):
    model = ResNet18().to(device)
    calls = _mixed_state(model)
    x = torch.randn(2, 3, 32, 32)
    before = state_of(model)
    rng = torch.get_rng_state()
    nnviz_report.build_report(model, x, mode=mode, graph=False)
    assert_same_state(before, state_of(model))
    assert torch.equal(rng, torch.get_rng_state())
    assert calls == [1], "the user's own hook ran once, in the report's forward pass"
    # The user's hook is still registered and still works.
    model.eval()(torch.randn(1, 3, 32, 32, device=device))
    assert calls == [1, 1]
    assert {p.device.type for p in model.parameters()} == {device}


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_statistics_survive_a_train_mode_forward(device):
    model = ResNet18().to(device).train()
    stats = {n: b.clone() for n, b in model.named_buffers()}
    nnviz_report.build_report(model, torch.randn(4, 3, 32, 32), mode="train", graph=False)
    for n, b in model.named_buffers():
        assert torch.equal(stats[n], b), n
    assert model.training


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, 4)
        self.bad = nn.Linear(3, 2)  # wrong input size: forward fails here

    def forward(self, x):
        return self.bad(self.fc(self.bn(x)))


@pytest.mark.parametrize("device", DEVICES)
def test_state_restored_when_forward_raises(device):
    model = Exploding().to(device).train()
    model.fc.weight.grad = torch.zeros_like(model.fc.weight)
    before = state_of(model)
    with pytest.raises(NNVizError) as err:
        nnviz_report.build_report(model, torch.randn(5, 4), mode="train")
    message = str(err.value)
    assert "bad (Linear)" in message and "\n" not in message
    assert_same_state(before, state_of(model))


def test_transformer_dropout_and_modes_untouched():
    model = TransformerClassifier(layers=2)
    model.train()
    model.encoder.layers[0].eval()
    before = state_of(model)
    nnviz_report.build_report(model, torch.randint(0, 1000, (2, 12)))
    assert_same_state(before, state_of(model))


def test_the_callers_input_is_not_modified():
    class InPlaceFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU(inplace=True)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.relu(x))

    x = torch.randn(3, 4)
    copy = x.clone()
    nnviz_report.build_report(InPlaceFirst(), x)
    assert torch.equal(x, copy)
    assert not x.requires_grad


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_it_was(enabled):
    """build_report pauses Python's cyclic collector while it runs; it is on again after,
    also when the build fails, and stays off for a caller who turned it off."""
    import gc

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        nnviz_report.build_report(nn.Linear(3, 2), torch.randn(2, 3), graph=False)
        assert gc.isenabled() == enabled
        with pytest.raises(NNVizError):
            nnviz_report.build_report(Exploding(), torch.randn(5, 4))
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()
