"""Activation detection, gallery, and the numbers measured on real inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnviz_report
from helpers import DEVICES
from models import DeadReLUNet, FunctionalNet, LSTMTagger, SaturatedSigmoidNet, TransformerClassifier


def activations(model, x, **kw):
    return nnviz_report.build_report(model, x, graph=False, **kw).data["activations"]


def test_functional_tutorial_lists_relu_and_sigmoid_with_histograms():
    data = activations(FunctionalNet(), torch.randn(16, 20))
    assert data["used"] == ["ReLU", "Sigmoid"]
    calls = data["calls"]
    assert [(c["function"], c["where"]) for c in calls] == [
        ("torch.relu", ""),
        ("torch.relu", ""),
        ("torch.sigmoid", ""),
    ]
    for c in calls:
        h = c["input_histogram"]
        assert sum(h["counts"]) == c["shape"][0] * c["shape"][1] and h["lo"] < h["hi"]
        assert c["curve"] in data["curves"]


class Everything(nn.Module):
    """Activations written every way a forward method can call them."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.leaky = nn.LeakyReLU(0.2)
        self.custom = MyReLU()

    def forward(self, x):
        x = self.fc(x)
        x = F.gelu(x, approximate="tanh")
        x = x.tanh()
        x = F.leaky_relu(x, 0.3)
        x = self.leaky(x)
        x = F.softplus(x, beta=2.0)
        x = self.custom(x)
        x = F.silu(x)
        return torch.softmax(x, dim=-1)


class MyReLU(nn.ReLU):
    pass


def test_detects_modules_functions_methods_and_their_parameters():
    data = activations(Everything(), torch.randn(4, 8))
    got = [(c["activation"], c["function"], c["params"]) for c in data["calls"]]
    assert got == [
        ("GELU", "F.gelu", {"approximate": "tanh"}),
        ("Tanh", "Tensor.tanh", {}),
        ("LeakyReLU", "F.leaky_relu", {"negative_slope": 0.3}),
        ("LeakyReLU", "LeakyReLU", {"negative_slope": 0.2}),
        ("Softplus", "F.softplus", {"beta": 2.0, "threshold": 20.0}),
        ("ReLU", "MyReLU (ReLU subclass)", {}),
        ("SiLU", "F.silu", {}),
        ("Softmax", "torch.softmax", {"dim": -1}),
    ]
    assert data["used"] == ["GELU", "Tanh", "LeakyReLU", "Softplus", "ReLU", "SiLU", "Softmax"]


def test_gallery_covers_every_torch_nn_activation_used_first():
    data = activations(Everything(), torch.randn(4, 8))
    gallery = data["gallery"]
    names = {g["name"] for g in gallery}
    expected = set(nn.modules.activation.__all__) - {"MultiheadAttention"}
    assert expected <= names
    gelu = [g["params"].get("approximate") for g in gallery if g["name"] == "GELU"]
    assert sorted(gelu) == ["none", "tanh"], "both GELU approximations"
    used = [g["used"] for g in gallery]
    assert used == sorted(used, reverse=True), "used activations come first"
    leaky = [g for g in gallery if g["name"] == "LeakyReLU" and g["used"]]
    assert sorted(g["params"]["negative_slope"] for g in leaky) == [0.2, 0.3]


@pytest.mark.parametrize(
    "name,fn,deriv",
    [
        ("Sigmoid", torch.sigmoid, lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x))),
        ("Tanh", torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
        ("ReLU", torch.relu, lambda x: (x > 0).double()),
        ("Softplus", F.softplus, torch.sigmoid),
    ],
)
def test_gallery_curves_match_analytic_derivatives(name, fn, deriv):
    data = activations(nn.Sequential(nn.Linear(2, 2)), torch.randn(1, 2))
    entry = next(g for g in data["gallery"] if g["name"] == name)
    x = torch.tensor(data["gallery_x"], dtype=torch.float64)
    assert torch.tensor(entry["y"], dtype=torch.float64) == pytest.approx(fn(x), abs=1e-3, rel=1e-3)
    keep = x != 0  # ReLU's derivative at the kink is a convention
    assert torch.tensor(entry["dy"], dtype=torch.float64)[keep] == pytest.approx(deriv(x)[keep], abs=1e-3, rel=1e-3)


def test_output_ranges_and_derivative_maxima():
    data = activations(nn.Sequential(nn.Linear(2, 2)), torch.randn(1, 2))
    by = {(g["name"], g["params"].get("approximate")): g for g in data["gallery"]}
    assert by[("Sigmoid", None)]["output_range"] == [0.0, 1.0]
    assert by[("Sigmoid", None)]["derivative_max"] == pytest.approx(0.25)
    assert by[("ReLU", None)]["output_range"] == [0.0, None]
    assert by[("LeakyReLU", None)]["output_range"] == [None, None]
    assert by[("Tanh", None)]["output_range"] == [-1.0, 1.0]


@pytest.mark.parametrize("device", DEVICES)
def test_dead_units_are_flagged_and_match_an_independent_count(device):
    model = DeadReLUNet().to(device)
    x = torch.randn(32, 20, device=device)
    report = nnviz_report.build_report(model, x, graph=False)
    call = report.data["activations"]["calls"][0]
    with torch.no_grad():
        out = model.relu(model.fc1(x))
    assert call["dead_fraction"] == pytest.approx((out == 0).all(dim=0).double().mean().item())
    assert call["dead_fraction"] == 1.0 and call["batch"] == 32
    flags = report.data["activations"]["flags"]
    assert len(flags) == 1 and "relu (ReLU): 100% of units are dead" in flags[0] and "all 32 examples" in flags[0]
    assert "100% of units are dead" in report.html


def test_healthy_relu_is_not_flagged():
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))
    data = activations(model, torch.randn(64, 20))
    assert data["flags"] == []
    assert data["calls"][0]["dead_fraction"] < 0.2


@pytest.mark.parametrize("device", DEVICES)
def test_saturation_and_mean_derivative_match_an_independent_computation(device):
    model = SaturatedSigmoidNet().to(device)
    x = torch.randn(64, 20, device=device)
    data = activations(model, x)
    call = data["calls"][0]
    with torch.no_grad():
        pre = model.fc1(x).double()
    d = torch.sigmoid(pre) * (1 - torch.sigmoid(pre))
    assert call["saturated_fraction"] == pytest.approx((d < 0.01 * 0.25).double().mean().item(), abs=1e-6)
    assert call["mean_derivative"] == pytest.approx(d.mean().item(), rel=1e-3, abs=1e-6)
    assert call["saturated_fraction"] > 0.5
    assert any("saturated" in f for f in data["flags"])


def test_non_finite_inputs_are_left_out_of_the_mean_derivative_and_never_saturated():
    """Several calls of two functions, one call fed NaN and Inf: its mean derivative is over
    the derivatives that are not NaN; the other calls are not disturbed."""

    class Net(nn.Module):
        def forward(self, x):
            return [torch.sigmoid(x[0]), torch.sigmoid(x[1]), torch.tanh(x[2]), torch.relu(x[1])]

    x = torch.randn(3, 50, 20) * 3
    x[1, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), float("nan")])
    calls = {(c["function"], c["call"]): c for c in activations(Net(), x)["calls"]}
    for (function, i), row in [
        (("torch.sigmoid", 0), 0),
        (("torch.sigmoid", 1), 1),
        (("torch.tanh", 0), 2),
        (("torch.relu", 0), 1),
    ]:
        v = x[row].double().requires_grad_(True)
        f = {"torch.sigmoid": torch.sigmoid, "torch.tanh": torch.tanh, "torch.relu": torch.relu}[function]
        (d,) = torch.autograd.grad(f(v).sum(), v)
        call = calls[(function, i)]
        assert call["mean_derivative"] == pytest.approx(d[~d.isnan()].mean().item(), rel=1e-4), function
        if function != "torch.relu":  # the ReLU family reports dead units instead
            limit = 0.01 * (0.25 if function == "torch.sigmoid" else 1.0)
            assert call["saturated_fraction"] == pytest.approx((d.abs() < limit).double().mean().item()), function


def test_rnn_internals_are_listed_and_said_to_be_unobservable():
    data = activations(LSTMTagger(), torch.randint(0, 500, (2, 6)))
    assert data["internal"] == [
        {
            "module": "lstm",
            "type": "LSTM",
            "activations": ["Sigmoid", "Tanh"],
            "note": data["internal"][0]["note"],
        }
    ]
    assert "cannot see" in data["internal"][0]["note"]
    assert {"Sigmoid", "Tanh"} <= set(data["used"])


def test_transformer_activation_inside_the_encoder_layer():
    data = activations(TransformerClassifier(layers=2), torch.randint(0, 1000, (2, 8)))
    gelu = [c for c in data["calls"] if c["activation"] == "GELU"]
    assert [c["where"] for c in gelu] == ["encoder.layers.0", "encoder.layers.1"]
    assert all(c["source"] == "functional" for c in gelu)


@pytest.mark.parametrize("act", [nn.ReLU(), nn.Hardshrink(0.5)], ids=["relu", "hardshrink"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("device", DEVICES)
def test_dead_channels_of_conv_maps_match_an_independent_count(act, batch, device):
    # Channels 0-2 dead (pushed far below zero: ReLU gives 0; scaled to ~0: Hardshrink
    # gives 0), the rest alive; a Hardshrink output also has negative values, and one of
    # its channels is zero or negative everywhere.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        if isinstance(act, nn.ReLU):
            conv.bias[:3] = -100.0
        else:
            conv.weight[:3] *= 1e-4
            conv.bias[:3] = 0.0
            conv.weight[3:] *= 5
            conv.weight[3] *= 0.06  # ~ -0.55 +- 0.17: shrunk to 0 or below -0.5, never above
            conv.bias[3] = -0.55  # zero at most positions, its maximum: alive all the same
    model = nn.Sequential(conv, act).to(device)
    x = torch.randn(batch, 3, 10, 10, device=device)
    call = activations(model, x)["calls"][0]
    with torch.no_grad():
        out = model(x)
    units_dead = (out == 0).all(dim=0)
    assert call["dead_fraction"] == pytest.approx(units_dead.double().mean().item())
    assert call["dead_channel_fraction"] == pytest.approx(units_dead.flatten(1).all(dim=1).double().mean().item())
    assert call["dead_channel_fraction"] == pytest.approx(3 / 8)


class Swish(nn.Module):
    """A user's activation with a learned parameter."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(1.7))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


class ClampAct(nn.Module):
    """A user's activation that zeroes negative inputs: its dead units are counted."""

    def forward(self, x):
        return torch.relu(x).clamp(max=4.0)


class SigmoidLoss(nn.Module):
    """Named like an activation, but not elementwise: not an activation."""

    def forward(self, x):
        return torch.sigmoid(x).mean()


class CustomActivations(nn.Module):
    def __init__(self):
        super().__init__()
        from zoo import NewGELU

        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 32), nn.Linear(32, 32), nn.Linear(32, 32)
        self.gelu, self.swish, self.clamp, self.loss = NewGELU(), Swish(), ClampAct(), SigmoidLoss()
        with torch.no_grad():
            self.fc3.bias.fill_(-50.0)  # every unit of the clamp's input is negative: dead

    def forward(self, x):
        return self.loss(self.clamp(self.fc3(self.swish(self.fc2(self.gelu(self.fc1(x)))))))


def test_modules_that_are_activations_in_practice_are_measured_as_themselves():
    """transformers' NewGELUActivation, a user's Swish: listed as themselves with their own
    curve (the module called on a range), not as the torch.tanh or torch.sigmoid inside."""
    model = CustomActivations()
    data = activations(model, torch.randn(64, 6))
    assert data["used"] == ["NewGELU", "Swish", "ClampAct", "Sigmoid"]
    calls = {c["where"]: c for c in data["calls"]}
    assert calls["gelu"]["function"] == "NewGELU (custom)" and calls["gelu"]["kind"] == "smooth"
    assert calls["swish"]["params"] == {"beta": pytest.approx(1.7)}
    assert calls["clamp"]["kind"] == "zeroing" and calls["clamp"]["dead_fraction"] == 1.0
    assert calls["loss"]["function"] == "torch.sigmoid", "the not-elementwise module's insides are listed"
    curves = data["curves"]
    x = torch.tensor(curves[calls["gelu"]["curve"]]["x"], dtype=torch.float64)
    assert curves[calls["gelu"]["curve"]]["y"] == pytest.approx(F.gelu(x, approximate="tanh").tolist(), abs=2e-3)
    x = torch.tensor(curves[calls["swish"]["curve"]]["x"], dtype=torch.float64).requires_grad_(True)
    y = x * torch.sigmoid(1.7 * x)
    (dy,) = torch.autograd.grad(y.sum(), x)
    assert curves[calls["swish"]["curve"]]["dy"] == pytest.approx(dy.tolist(), rel=2e-3, abs=2e-3)
    gallery = {g["name"]: g for g in data["gallery"] if g["used"]}
    assert gallery["Swish"]["custom"] and not gallery["Sigmoid"]["custom"]


def test_measuring_custom_activations_leaves_the_model_and_the_rng_alone():
    from helpers import assert_same_state, state_of

    model, x = CustomActivations().train(), torch.randn(8, 6)
    before = state_of(model)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    activations(model, x)
    assert torch.equal(torch.rand(3), expected)
    assert_same_state(before, state_of(model))


@pytest.mark.parametrize("batch", [1, 2, 16])
def test_dead_units_of_a_tiny_batch_say_what_they_mean(batch):
    """With one or two examples a healthy ReLU reads ~50% / ~25% dead: the table marks
    those figures and the section says why, with the batch size that gives a firm one."""
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    report = nnviz_report.build_report(model, torch.randn(batch, 16), graph=False)
    call = report.data["activations"]["calls"][0]
    assert call["batch"] == batch and call["dead_fraction"] < 0.9
    html = " ".join(report.html.split())
    marked = f"({batch} ex.)</a>" in html
    explained = "Pass a batch of 8 or more examples for a firm figure" in html
    assert marked == explained == (batch < 8)
    if batch == 1:
        assert "here 1 example (marked in the table): a unit that is merely 0 for that input counts as dead" in html
