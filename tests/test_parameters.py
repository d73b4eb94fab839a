"""Parameters before vs after: numbers read back exactly, flags, trajectories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import nnviz_report
from helpers import DEVICES, page_json, page_view
from models import TwoLayerNet
from nnviz_report.capture.parameters import compare


def _train(model: nn.Module, steps: int = 5) -> None:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    gen = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    for _ in range(steps):
        x = torch.randn(16, 20, generator=gen).to(device)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _by_name(report) -> dict:
    return {p["name"]: p for p in report.data["parameters"]}


@pytest.mark.parametrize("device", DEVICES)
def test_numbers_match_values_read_independently(tmp_path, device):
    model = TwoLayerNet().to(device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(before, tmp_path / "epoch0.pt")  # from a GPU model: a checkpoint of CUDA tensors
    _train(model)
    report = nnviz_report.build_report(model, torch.randn(4, 20), before=tmp_path / "epoch0.pt")
    params = _by_name(report)
    for name, p in model.named_parameters():
        entry = params[name]
        b, a = before[name].double(), p.detach().double()
        assert entry["before"]["norm"] == pytest.approx(b.norm().item(), rel=1e-5)
        assert entry["after"]["norm"] == pytest.approx(a.norm().item(), rel=1e-5)
        assert entry["relative_change"] == pytest.approx(((a - b).norm() / b.norm()).item(), rel=1e-4)
        assert entry["max_abs_change"] == pytest.approx((a - b).abs().max().item(), rel=1e-5)
    # Bias vectors are complete and exact float32 values, also after a JSON round trip
    # through the page, so an archived report can be compared by a script.
    data = page_json(report.html, "nnviz-data")
    fc1 = next(p for p in data["parameters"] if p["name"] == "fc1.bias")
    assert np.array_equal(np.array(fc1["bias_before"], dtype=np.float32), before["fc1.bias"].cpu().numpy())
    assert np.array_equal(np.array(fc1["bias_after"], dtype=np.float32), model.fc1.bias.detach().cpu().numpy())


def test_before_as_snapshot_or_state_dict_agree():
    model = TwoLayerNet()
    snap = nnviz_report.snapshot(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model)
    x = torch.randn(4, 20)
    a = _by_name(nnviz_report.build_report(model, x, before=snap, graph=False))
    b = _by_name(nnviz_report.build_report(model, x, before=state, graph=False))
    assert {k: v["relative_change"] for k, v in a.items()} == {k: v["relative_change"] for k, v in b.items()}


class WithFrozenAndNaN(nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(20, 8)
        self.unused = nn.Linear(8, 8)  # never called: gets no gradient
        self.out = nn.Linear(8, 2)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.out(self.frozen(x))


def test_frozen_unchanged_nan_and_exploded_are_flagged():
    model = WithFrozenAndNaN()
    snap = nnviz_report.snapshot(model)
    _train(model)
    with torch.no_grad():
        model.out.bias[0] = float("nan")
        model.out.weight.mul_(1000.0)
    report = nnviz_report.build_report(model, torch.randn(2, 20), before=snap, graph=False)
    p = _by_name(report)
    assert p["frozen.weight"]["flags"] == ["frozen (requires_grad=False)", "unchanged"]
    assert p["unused.weight"]["flags"] == ["unchanged: it got no updates (dead or unused?)"]
    assert "NaN in the trained values" in p["out.bias"]["flags"]
    assert any(f.startswith("exploded") for f in p["out.weight"]["flags"])
    html = report.html
    assert "with NaN/Inf values: out.bias" in html
    assert "that exploded: out.weight" in html
    assert "frozen (requires_grad=False): frozen.weight, frozen.bias" in html


def test_trajectory_through_several_checkpoints(tmp_path):
    model = TwoLayerNet()
    paths = []
    for epoch in range(3):
        path = tmp_path / f"epoch{epoch}.pt"
        torch.save(model.state_dict(), path)
        paths.append(path)
        _train(model, steps=2)
    report = nnviz_report.build_report(model, torch.randn(4, 20), before=paths, graph=False)
    fc2 = _by_name(report)["fc2.bias"]
    assert [h["label"] for h in fc2["history"]] == ["epoch0", "epoch1", "epoch2", "after"]
    assert fc2["history"][0]["relative_change"] == 0.0
    saved = [torch.load(p, weights_only=True)["fc2.bias"] for p in paths] + [model.fc2.bias.detach()]
    assert len(fc2["bias_history"]) == 4
    for values, t in zip(fc2["bias_history"], saved):
        assert np.array_equal(np.array(values, dtype=np.float32), t.numpy())
    first = saved[0].double()
    assert fc2["history"][2]["relative_change"] == pytest.approx(
        ((saved[2].double() - first).norm() / first.norm()).item(), rel=1e-5
    )
    assert "par-trajectory" in report.html


def test_without_before_the_section_says_how_to_get_one():
    report = nnviz_report.build_report(TwoLayerNet(), torch.randn(2, 20), graph=False)
    assert all(p["before"] is None for p in report.data["parameters"])
    assert "nnviz_report.snapshot(model)" in report.html and "--before" in report.html


def test_partial_checkpoint_is_compared_where_it_can_be_and_says_what_is_missing(tmp_path):
    model = TwoLayerNet()
    state = model.state_dict()
    del state["fc2.weight"]
    state["old.layer"] = torch.zeros(3)
    torch.save(state, tmp_path / "partial.pt")
    report = nnviz_report.build_report(model, torch.randn(2, 20), before=tmp_path / "partial.pt", graph=False)
    p = _by_name(report)
    assert p["fc2.weight"]["before"] is None and p["fc1.weight"]["before"] is not None
    assert "missing 1 (fc2.weight); unexpected 1 (old.layer)" in report.html


def test_a_checkpoint_of_another_model_is_an_error(tmp_path):
    torch.save(nn.Conv2d(3, 3, 3).state_dict(), tmp_path / "conv.pt")
    with pytest.raises(nnviz_report.NNVizError, match="shares no parameter with TwoLayerNet"):
        nnviz_report.build_report(TwoLayerNet(), torch.randn(2, 20), before=tmp_path / "conv.pt")


def test_before_must_not_be_the_live_model():
    model = TwoLayerNet()
    with pytest.raises(nnviz_report.NNVizError, match="snapshot"):
        nnviz_report.build_report(model, torch.randn(2, 20), before=model)


def test_a_live_state_dict_is_refused():
    model = TwoLayerNet()
    live = model.state_dict()  # shares storage with the parameters
    _train(model)
    with pytest.raises(nnviz_report.NNVizError, match=r"live state_dict.*snapshot"):
        nnviz_report.build_report(model, torch.randn(2, 20), before=live)


@pytest.mark.parametrize("fmt", ["bare", "state_dict", "model_state_dict", "model", "ddp", "compile", "safetensors"])
def test_reports_from_every_checkpoint_format(tmp_path, fmt):
    from safetensors.torch import save_file

    model = TwoLayerNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model)
    path = tmp_path / ("ckpt.safetensors" if fmt == "safetensors" else "ckpt.pt")
    wrapped = {
        "bare": before,
        "state_dict": {"state_dict": before, "epoch": 0},
        "model_state_dict": {"model_state_dict": before},
        "model": {"model": before},
        "ddp": {"module." + k: v for k, v in before.items()},
        "compile": {"_orig_mod." + k: v for k, v in before.items()},
    }
    if fmt == "safetensors":
        save_file(before, str(path))
    else:
        torch.save(wrapped[fmt], path)
    params = _by_name(nnviz_report.build_report(model, torch.randn(2, 20), before=path, graph=False))
    for name, p in model.named_parameters():
        b, a = before[name].double(), p.detach().double()
        assert params[name]["relative_change"] == pytest.approx(((a - b).norm() / b.norm()).item(), rel=1e-4), name
    assert np.array_equal(np.array(params["fc2.bias"]["bias_before"], dtype=np.float32), before["fc2.bias"].numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_histograms_and_scatter_match_the_sampled_values(device):
    # One weight large enough to be sampled (every > 1), small ones counted whole, a bias,
    # and a parameter that did not move (a one-value range). On a GPU the snapshot stays on
    # the CPU and is compared on the model's device.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.LayerNorm(200), nn.Linear(200, 3)).to(device)
    snap = nnviz_report.snapshot(model)
    with torch.no_grad():
        model[0].weight.mul_(1.5).add_(0.1)
        model[2].bias.add_(torch.randn(3, device=device))
        model[1].weight.fill_(2.0)
    comp = compare(model, [snap])
    for rec in comp.records:
        after = dict(model.named_parameters())[rec.name].detach().cpu().reshape(-1)
        before = snap.tensors[rec.name].reshape(-1)
        for hist, values in ((rec.hist_before, before), (rec.hist_after, after)):
            sample = values[:: hist.every].double().numpy()
            assert hist.lo == pytest.approx(min(before.min().item(), after.min().item()))
            assert hist.hi == pytest.approx(max(before.max().item(), after.max().item()))
            assert sum(hist.counts) == sample.size
            if hist.hi > hist.lo:
                expected, _ = np.histogram(sample, bins=len(hist.counts), range=(hist.lo, hist.hi))
                assert np.abs(np.array(hist.counts) - expected).max() <= 2  # edges: float32 vs float64
        if rec.name == "0.weight":
            assert rec.hist_after.every > 1
            step = rec.scatter_every
            assert np.allclose(rec.scatter_before, before[::step].numpy(), rtol=5e-3, atol=0)  # 3 significant digits
            assert np.allclose(rec.scatter_after, after[::step].numpy(), rtol=5e-3, atol=0)  # 3 significant digits
    by_name = {r.name: r for r in comp.records}
    assert by_name["1.weight"].hist_after.counts == [0] * 39 + [200]  # 1.0 -> 2.0: both edges


def test_sampled_charts_say_which_values_they_count():
    from nnviz_report.sections._format import ordinal

    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 93, 111, 112)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "93rd",
        "111th",
        "112th",
    ]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200))  # 60 000 weights: sampled
    snap = nnviz_report.snapshot(model)
    report = nnviz_report.build_report(model, torch.randn(2, 300), before=snap, graph=False)
    rec = _by_name(report)["0.weight"]
    texts = json.dumps(page_view(report.html))
    assert f"every {ordinal(rec['hist_after']['every'])})" in texts
    assert f"every {ordinal(150)} value" in texts  # 60 000 / 400 scatter points


def test_snapshot_tensors_move_to_the_model_device_in_bounded_groups(monkeypatch):
    # On a GPU model the CPU snapshot is moved over group by group; here "meta" stands for
    # the other device (this machine may have no GPU). Tensors already on the parameter's
    # device move nothing.
    from nnviz_report.capture import parameters

    monkeypatch.setattr(parameters, "MOVE_BUDGET", 1000 * 4)
    model = nn.Sequential(nn.Linear(10, 30), nn.Linear(30, 30), nn.Linear(30, 2))  # 330, 930, 62
    named = list(model.named_parameters())
    keys = [{n: n for n, _ in named}]
    elsewhere = {n: torch.empty(p.shape, device="meta") for n, p in named}
    chunks = list(parameters._chunks(named, [elsewhere], keys))
    assert [n for c in chunks for n, _ in c] == [n for n, _ in named]
    for c in chunks:
        assert len(c) == 1 or sum(p.numel() for _, p in c) <= 1000
    assert len(chunks) > 1
    same = {n: p.detach().clone() for n, p in named}
    assert len(list(parameters._chunks(named, [same], keys))) == 1
    # On the CPU too, float32 copies of half-precision tensors count against the budget.
    half = {n: p.detach().to(torch.bfloat16) for n, p in named}
    assert len(list(parameters._chunks(named, [half], keys))) > 1


def test_a_model_without_parameters_or_buffers_can_be_snapshotted():
    model = nn.Sequential(nn.ReLU(), nn.Tanh())
    report = nnviz_report.build_report(model, torch.randn(2, 3), before=nnviz_report.snapshot(model), graph=False)
    assert report.data["parameters"] == [] and not report.warnings


class Wider(nn.Module):
    """Another architecture that shares two layer names (and, built from the same seed, their first values)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 3)
        self.extra = nn.Linear(3, 3)

    def forward(self, x):
        return self.extra(self.fc2(self.act(self.fc1(x))))


def test_a_snapshot_of_another_architecture_warns_about_the_keys_first():
    torch.manual_seed(0)
    wider = Wider()
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(20, 32))
    model.add_module("head", nn.Linear(32, 3))
    report = nnviz_report.build_report(model, torch.randn(2, 20), before=nnviz_report.snapshot(wider), graph=False)
    # fc1 is compared (and, untrained, unchanged); head has nothing to be compared with.
    assert report.warnings and report.warnings[0].startswith(
        "snapshot() (before) holds 2 of the model's 4 parameters under the same name and shape"
    )
    assert "missing 2 (head.weight, head.bias)" in report.warnings[0]
    html = report.html
    assert html.index("holds 2 of the model&#39;s 4 parameters") < html.index("unchanged by training")


def test_every_shape_differs_is_an_error_naming_the_keys():
    other = nn.Sequential()
    other.add_module("fc1", nn.Linear(21, 33))
    other.add_module("act", nn.ReLU())
    other.add_module("fc2", nn.Linear(33, 4))
    with pytest.raises(nnviz_report.NNVizError) as err:
        nnviz_report.build_report(TwoLayerNet(), torch.randn(2, 20), before=other.state_dict())
    message = str(err.value)
    assert "shares no parameter with TwoLayerNet under the same name and shape" in message
    assert "fc1.weight: file (33, 21) vs model (32, 20)" in message and "\n" not in message


def test_numbers_do_not_depend_on_how_the_comparison_is_grouped(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from nnviz_report.capture import parameters

    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)).to(
        torch.bfloat16
    )
    save_file({k: v.clone() for k, v in model.state_dict().items()}, str(tmp_path / "before.safetensors"))
    torch.save(model.state_dict(), tmp_path / "before.pt")
    _train_any(model)
    x = torch.randn(4, 20, dtype=torch.bfloat16)
    one = nnviz_report.build_report(
        model, x, before=[tmp_path / "before.safetensors", tmp_path / "before.pt"], graph=False
    ).data["parameters"]
    monkeypatch.setattr(parameters, "MOVE_BUDGET", 1)  # every parameter a group of its own
    each = nnviz_report.build_report(
        model, x, before=[tmp_path / "before.safetensors", tmp_path / "before.pt"], graph=False
    ).data["parameters"]
    assert one == each and one[0]["history"] and one[0]["relative_change"] > 0


def _train_any(model: nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def test_snapshot_to_disk(tmp_path):
    from safetensors.torch import load_file

    from models import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM().to(torch.bfloat16)
    in_memory = nnviz_report.snapshot(model)
    on_disk = nnviz_report.snapshot(model, path=tmp_path / "before.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.safetensors"]  # no temporary file left
    # An ordinary safetensors file, with the tied lm_head written once.
    saved = load_file(str(tmp_path / "before.safetensors"))
    assert "lm_head.weight" not in saved
    assert all(torch.equal(saved[k], v) for k, v in in_memory.tensors.items() if k != "lm_head.weight")
    _train_any(model)
    tokens = torch.arange(12).reshape(2, 6)
    a = nnviz_report.build_report(model, tokens, before=in_memory, graph=False)
    b = nnviz_report.build_report(model, tokens, before=on_disk, graph=False)
    assert a.data["parameters"] == b.data["parameters"]
    assert not b.warnings and "saves tied weights once: lm_head.weight = model.embed_tokens.weight" in b.html
    with pytest.raises(nnviz_report.NNVizError, match="is a folder"):
        nnviz_report.snapshot(model, path=tmp_path)


def _close(a, b, path="") -> None:
    """Equal JSON trees, floats to 2e-5 relative: the one-pass variance of a whole tensor is
    accurate to about 1e-5 (tensors.stats_many), slices are summed in another order."""
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=2e-5, abs=1e-12), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_tensors_reduced_slice_by_slice_give_the_same_numbers(tmp_path, monkeypatch, dtype):
    from safetensors.torch import save_file

    from nnviz_report.capture import parameter_stats

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 300), nn.ReLU(), nn.Linear(300, 300), nn.ReLU(), nn.Linear(300, 3)).to(dtype)
    save_file({k: v.clone() for k, v in model.state_dict().items()}, str(tmp_path / "epoch0.safetensors"))
    _train_any(model)
    torch.save(model.state_dict(), tmp_path / "epoch1.pt")
    _train_any(model)
    with torch.no_grad():  # non-finite values take the other way through the statistics
        model[2].weight[5, 7] = float("nan")
        model[0].weight[0, 0] = float("inf")
    x = torch.randn(4, 20, dtype=dtype)
    before = [tmp_path / "epoch0.safetensors", tmp_path / "epoch1.pt"]
    whole = nnviz_report.build_report(model, x, before=before, graph=False).data["parameters"]
    monkeypatch.setattr(parameter_stats, "SLICE", 1000)  # 6 000 and 90 000 values: 6 and 90 slices
    sliced = nnviz_report.build_report(model, x, before=before, graph=False).data["parameters"]
    _close(sliced, whole)
    assert whole[2]["after"]["nan_count"] == 1 and whole[0]["after"]["inf_count"] == 1
    assert whole[2]["history"] and whole[2]["relative_change"] is None and whole[4]["relative_change"] > 0


def test_a_snapshot_label_reaches_plotly_as_text():
    """Plotly reads tags in trace names and hover templates, and %{...} in templates:
    a label (from the caller, or from a checkpoint's file name) must show literally."""
    label = "<b>epoch</b> %{y} <a href='javascript:alert(1)'>x</a>"
    model = TwoLayerNet()
    before = nnviz_report.snapshot(model, label=label)
    _train(model, steps=1)
    report = nnviz_report.build_report(model, torch.randn(4, 20), before=before, graph=False)
    traces = [t for f in page_view(report.html)["figures"].values() for t in f["data"]]
    named = [t for t in traces if "epoch" in str(t.get("name", ""))]
    assert named, "the label names the before-histograms"
    for t in traces:
        for key in ("name", "hovertemplate", "text", "x", "y"):
            assert "<b>" not in str(t.get(key, "")) and "<a " not in str(t.get(key, "")), (key, t.get(key))
        assert "%{y} <" not in str(t.get("hovertemplate", "")), "the label is not part of a template"
    assert all(
        t["name"] == "&lt;b&gt;epoch&lt;/b&gt; %{y} &lt;a href='javascript:alert(1)'&gt;x&lt;/a&gt;" for t in named
    )


def test_a_last_slice_of_one_value_still_gives_mean_and_std(monkeypatch):
    """A tensor of k * SLICE + 1 values: its last slice holds one value, which has no std
    of its own; the report's statistics must still be those of the whole tensor."""
    from nnviz_report.capture import parameter_stats

    model = nn.Linear(3, 3)  # a 9-value weight
    before = nnviz_report.snapshot(model)
    with torch.no_grad():
        model.weight.add_(0.1)
    x = torch.randn(2, 3)
    whole = nnviz_report.build_report(model, x, before=before, graph=False).data["parameters"]
    monkeypatch.setattr(parameter_stats, "SLICE", 4)  # 4 + 4 + 1 values
    sliced = nnviz_report.build_report(model, x, before=before, graph=False).data["parameters"]
    assert sliced[0]["after"]["std"] is not None
    _close(sliced, whole)


def test_nan_in_the_before_state_is_blamed_on_the_before_state():
    model = nn.Linear(4, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    before["weight"][0, 0] = float("nan")
    texts = [f["text"] for f in nnviz_report.build_report(model, torch.randn(2, 4), before=before).data["findings"]]
    assert "1 parameter with NaN/Inf values in the before-state (the checkpoint or snapshot): weight" in texts
    assert not any(t.startswith("1 parameter with NaN/Inf values:") for t in texts), "the model itself is finite"
    with torch.no_grad():
        model.bias[0] = float("inf")
    texts = [f["text"] for f in nnviz_report.build_report(model, torch.randn(2, 4), before=before).data["findings"]]
    assert "1 parameter with NaN/Inf values: bias" in texts and "1 layer output with NaN/Inf: Linear" in texts


@pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated", "ignore:torch.quantize_per_tensor")
def test_a_dynamically_quantized_model_says_its_weights_are_packed():
    """torch.ao's quantization is deprecated (torch 2.13) but still in use: its Linear keeps
    its weights packed, with no nn.Parameter."""

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 8)

        def forward(self, x):
            return x + self.b(torch.relu(self.a(x)))

    model = torch.ao.quantization.quantize_dynamic(MLP(), {nn.Linear}, dtype=torch.qint8)
    report = nnviz_report.build_report(model, torch.randn(4, 8))
    assert report.data["parameters"] == []
    assert "2 quantized modules hold packed weights, not parameters, so they are not summarised or compared: a, b" in [
        f["text"] for f in report.data["findings"]
    ]
    assert report.data["graph"]["residual_connections"] == 1, "a quantized Linear is a layer"


@pytest.mark.filterwarnings(
    "ignore:torch.ao.quantization is deprecated", "ignore:torch.quantize_per_tensor", "ignore:Please use quant_min"
)
def test_a_statically_quantized_model_gets_its_report():
    """Its layers output quantized tensors (statistics failed: 'Creation of quantized tensor
    requires quantized dtype', blamed on the input); Quantize/DeQuantize hold no weights."""

    class Static(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.fc, self.dequant = (
                torch.ao.quantization.QuantStub(),
                nn.Linear(4, 4),
                torch.ao.quantization.DeQuantStub(),
            )

        def forward(self, x):
            return self.dequant(self.fc(self.quant(x)))

    model = Static().eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
    torch.ao.quantization.prepare(model, inplace=True)
    model(torch.randn(8, 4))
    torch.ao.quantization.convert(model, inplace=True)
    x = torch.randn(2, 4)
    report = nnviz_report.build_report(model, x)
    entries = {e["name"]: e for e in report.data["feature_maps"]}
    assert entries["fc"]["dtype"] == "quint8"
    assert entries["fc"]["mean"] == pytest.approx(model.fc(model.quant(x)).dequantize().mean().item(), rel=1e-5)
    assert "1 quantized module holds packed weights, not parameters, so it is not summarised or compared: fc" in [
        f["text"] for f in report.data["findings"]
    ]


def test_diverging_colours_mean_the_same_in_every_section():
    """Negative is blue and positive red in the feature maps' pictures; the bias trajectory
    heatmap had them the other way round (plotly.js's RdBu, reversed)."""
    model = TwoLayerNet()
    snaps = [nnviz_report.snapshot(model, label="start")]
    _train(model, steps=1)
    snaps.append(nnviz_report.snapshot(model, label="middle"))
    _train(model, steps=1)
    report = nnviz_report.build_report(model, torch.randn(4, 20), before=snaps, graph=False)
    heatmaps = [t for f in page_view(report.html)["figures"].values() for t in f["data"] if t["type"] == "heatmap"]
    assert heatmaps
    for t in heatmaps:  # plotly.js's "RdBu" runs from blue (rgb(5,10,172)) at the low end to red
        assert t["colorscale"] == "RdBu" and not t.get("reversescale") and t["zmid"] == 0
