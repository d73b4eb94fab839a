"""Feature maps hold the true numbers of every module output, as the module returned it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nnviz_report
from helpers import DEVICES, page_view
from models import LSTMTagger, ResNet50, SmallCNN, TransformerClassifier
from nnviz_report.capture.histograms import stats_and_histogram


def independent_stats(t: torch.Tensor) -> dict:
    x = t.detach()
    if x.is_complex():
        x = x.abs()
    x = x.double()
    return {
        "mean": x.mean().item(),
        "std": x.std().item() if x.numel() > 1 else math.nan,
        "min": x.min().item(),
        "max": x.max().item(),
        "zero_fraction": (x == 0).double().mean().item(),
    }


def hook_truth(model: nn.Module, x) -> list[tuple[str, dict]]:
    """Stats computed by our own hooks at hook time, in call order (leaf modules only)."""
    seen = []
    names = {m: n for n, m in model.named_modules()}
    handles = [
        m.register_forward_hook(lambda mod, i, o: seen.append((names[mod], independent_stats(o))))
        for m in model.modules()
        if not list(m.children())
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def assert_close(a, b, what):
    if b is None or (isinstance(b, float) and math.isnan(b)):
        assert a is None, what
    else:
        assert a == pytest.approx(b, rel=2e-4, abs=1e-6), what


class InPlaceNet(nn.Module):
    """ReLU(inplace=True) and ``out += identity`` rewrite tensors a hook already saw."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        out = self.bn(self.conv1(x))  # the bn output is rewritten in place by relu below
        identity = out.clone()
        out = self.relu(out)
        out = self.conv2(out)
        out += identity  # rewrites conv2's output in place
        return self.relu(out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "model_fn,x",
    [
        (InPlaceNet, torch.randn(2, 3, 16, 16)),
        (SmallCNN, torch.randn(4, 1, 28, 28)),
    ],
)
def test_stats_match_an_independent_computation_at_hook_time(model_fn, x, device):
    model = model_fn().to(device).eval()
    x = x.to(device)
    truth = hook_truth(model, x)
    entries = nnviz_report.build_report(model, x, graph=False).data["feature_maps"]
    assert [(e["name"]) for e in entries] == [n for n, _ in truth]
    for e, (name, t) in zip(entries, truth):
        for key in ("mean", "std", "min", "max", "zero_fraction"):
            assert_close(e[key], t[key], f"{name}.{key}")


def test_in_place_ops_do_not_change_what_was_recorded():
    model = InPlaceNet().eval()
    entries = nnviz_report.build_report(model, torch.randn(2, 3, 16, 16), graph=False).data["feature_maps"]
    bn = next(e for e in entries if e["name"] == "bn")
    assert bn["min"] < 0, "the BatchNorm output before ReLU(inplace=True) zeroed its negatives"
    assert bn["zero_fraction"] == 0
    # Its picture too: its channels were copied in the hook, and pooled after the pass.
    assert all(lo < 0 for lo in bn["channels"]["min"]) and all(abs(m) < 0.5 for m in bn["channels"]["mean"])


def test_a_shared_module_gets_one_entry_per_call():
    entries = nnviz_report.build_report(SmallCNN(), torch.randn(1, 1, 28, 28), graph=False).data["feature_maps"]
    relu = [e for e in entries if e["name"] == "relu"]
    assert [e["call"] for e in relu] == [0, 1]
    assert relu[0]["shape"] == [1, 8, 28, 28] and relu[1]["shape"] == [1, 16, 14, 14]


def test_lstm_outputs_every_tensor_of_the_nested_result():
    model = LSTMTagger()
    ids = torch.randint(0, 500, (3, 7))
    entries = nnviz_report.build_report(model, ids, graph=False).data["feature_maps"]
    lstm = {e["output"]: e for e in entries if e["name"] == "lstm"}
    assert set(lstm) == {"[0]", "[1][0]", "[1][1]"}
    assert lstm["[0]"]["shape"] == [3, 7, 48]
    assert lstm["[1][0]"]["shape"] == [2, 3, 48]
    with torch.no_grad():
        _out, (_h, c) = model.lstm(model.embed(ids))
    assert_close(lstm["[1][1]"]["mean"], c.mean().item(), "c mean")


def test_attention_block_output_is_captured_although_out_proj_is_functional():
    model = TransformerClassifier(layers=2)
    report = nnviz_report.build_report(model, torch.randint(0, 1000, (2, 10)), graph=False)
    entries = report.data["feature_maps"]
    attn = [e for e in entries if e["name"].endswith("self_attn")]
    assert [e["name"] for e in attn if e["output"] == "[0]"] == [
        "encoder.layers.0.self_attn",
        "encoder.layers.1.self_attn",
    ]
    assert all("out_proj" in " ".join(e["notes"]) for e in attn)
    assert not any(e["name"].endswith("out_proj") for e in entries)
    assert "out_proj is applied functionally inside MultiheadAttention" in report.html


class OddOutputs(nn.Module):
    """Outputs of every kind: dict, None, int, bool, complex, half precision."""

    def __init__(self):
        super().__init__()
        self.dict_out = DictOut()
        self.none_out = NoneOut()
        self.argmax = ArgMax()
        self.positive = Positive()
        self.spectrum = Spectrum()
        self.to_bf16 = Half()

    def forward(self, x):
        d = self.dict_out(x)
        self.none_out(x)
        return (
            d["a"].sum()
            + self.argmax(x).sum()
            + self.positive(x).sum()
            + self.spectrum(x).abs().sum()
            + self.to_bf16(x).float().sum()
        )


class DictOut(nn.Module):
    def forward(self, x):
        return {"a": x * 2, "b": None, "c": 3}


class NoneOut(nn.Module):
    def forward(self, x):
        return None


class ArgMax(nn.Module):
    def forward(self, x):
        return x.argmax(dim=1)


class Positive(nn.Module):
    def forward(self, x):
        return x > 0


class Spectrum(nn.Module):
    def forward(self, x):
        return torch.fft.fft(x)


class Half(nn.Module):
    def forward(self, x):
        return x.to(torch.bfloat16)


def test_every_output_kind():
    x = torch.randn(4, 6)
    report = nnviz_report.build_report(OddOutputs(), x, graph=False)
    entries = {(e["name"], e["output"]): e for e in report.data["feature_maps"]}
    assert entries[("dict_out", "['a']")]["mean"] == pytest.approx((x * 2).mean().item(), rel=1e-5)
    assert ("dict_out", "['b']") not in entries and ("none_out", "") not in entries
    assert entries[("argmax", "")]["dtype"] == "int64"
    assert entries[("argmax", "")]["mean"] == pytest.approx(x.argmax(1).double().mean().item())
    assert entries[("positive", "")]["mean"] == pytest.approx((x > 0).double().mean().item())
    assert entries[("spectrum", "")]["max"] == pytest.approx(torch.fft.fft(x).abs().max().item(), rel=1e-5)
    assert entries[("to_bf16", "")]["dtype"] == "bfloat16"
    assert entries[("to_bf16", "")]["mean"] == pytest.approx(x.to(torch.bfloat16).float().mean().item(), rel=1e-3)
    html = report.html
    assert "none_out" in html and "not a tensor" in html


@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf_are_reported_not_hidden(device):
    s, histogram = stats_and_histogram(torch.tensor([1.0, float("nan"), float("inf"), 0.0], device=device), bins=4)
    assert (s.nan_count, s.inf_count, s.mean, s.max) == (1, 1, None, None)
    assert s.zero_fraction == 0.25
    assert sum(histogram.counts) == 2  # the finite values


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(5, 3)

    def forward(self, x, y, scale=1.0):
        return self.a(x) * scale + self.b(y)


@pytest.mark.parametrize(
    "example",
    [
        (torch.randn(2, 4), torch.randn(2, 5)),
        {"x": torch.randn(2, 4), "y": torch.randn(2, 5), "scale": 2.0},
    ],
)
def test_several_and_keyword_inputs(example):
    report = nnviz_report.build_report(TwoInputs(), example)
    assert [e["name"] for e in report.data["feature_maps"]] == ["a", "b"]
    assert len(report.data["model"]["inputs"]) == 2


def test_layer_selection_channels_and_example():
    model = SmallCNN()
    x = torch.randn(3, 1, 28, 28)
    report = nnviz_report.build_report(
        model, x, layers="conv*", layer_types=["Linear"], max_channels=4, example_index=2, graph=False
    )
    entries = report.data["feature_maps"]
    assert [e["name"] for e in entries] == ["conv1", "conv2", "fc"]
    assert entries[0]["channels"]["index"] == [0, 1, 2, 3]
    with torch.no_grad():
        conv1 = model.conv1(x)[2]
    assert entries[0]["channels"]["mean"][1] == pytest.approx(conv1[1].mean().item(), rel=1e-3)


def test_sequence_pictures_are_laid_out_by_what_the_dimensions_mean():
    from helpers import page_json  # the pictures sit in #nnviz-images

    report = nnviz_report.build_report(LSTMTagger(), torch.randint(0, 500, (3, 7)), graph=False)
    images = page_json(report.html, "nnviz-images")["feature_maps"]["pictures"]
    entries = report.data["feature_maps"]
    by = {(e["name"], e["output"]): images[str(i)] for i, e in enumerate(entries)}
    out = by[("lstm", "[0]")]
    assert (out["row_label"], out["col_label"], out["source_hw"]) == ("position", "feature", [7, 48])
    h = by[("lstm", "[1][0]")]
    assert (h["row_label"], h["col_label"], h["source_hw"]) == ("layer", "feature", [2, 48])
    tokens = by[("embed", "")]
    assert tokens["source_hw"] == [7, 32]


@pytest.mark.parametrize("full_copy", [0, 2**20], ids=["pooled-in-hook", "pooled-after"])
def test_histograms_and_channel_stats_against_torch(full_copy):
    from nnviz_report.capture.pictures import channel_parts, draw_pictures

    x = torch.randn(50000) * 3 + 1
    _, h = stats_and_histogram(x, bins=32)
    expected = torch.histc(x[:: h.every], bins=32, min=h.lo, max=h.hi)
    assert h.counts == [int(c) for c in expected.tolist()]
    maps = torch.randn(2, 5, 9, 7) * 0.01 + 1000.0  # |mean| >> std: no cancellation allowed
    (grid,) = draw_pictures([channel_parts(maps, example=1, max_channels=3, tile=32, full_copy=full_copy)])
    for c, (mean, std, lo, hi) in enumerate(grid.channel_stats):  # 4 significant digits, for display
        ch = maps[1, c].double()
        assert mean == pytest.approx(ch.mean().item(), rel=5e-4)
        assert std == pytest.approx(ch.std().item(), rel=2e-3), "no cancellation"
        assert (lo, hi) == (pytest.approx(ch.min().item(), rel=5e-4), pytest.approx(ch.max().item(), rel=5e-4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_pictures_drawn_after_the_pass_equal_those_drawn_in_the_hook(dtype):
    """A hook either pools the channels it draws itself or keeps them at full resolution
    (within a budget) for draw_pictures, which pools them in stacks: same pictures, same
    channel numbers, whatever the model does to its output after the hook."""
    from nnviz_report.capture.pictures import FullResolution, channel_parts, draw_pictures

    g = torch.Generator().manual_seed(0)
    maps = [
        torch.randn(shape, generator=g).to(dtype) * 2 + 0.5
        for shape in [
            (2, 20, 56, 56),
            (1, 20, 56, 56),
            (2, 3, 9, 7),
            (1, 16, 112, 100),
            (2, 4, 6, 30, 40),
            (1, 16, 7, 7),
        ]
    ]
    maps.append(torch.relu(maps[0]))  # same shape as the first: stacked with it
    now = draw_pictures([channel_parts(m, m.shape[0] - 1, 16, 32) for m in maps])
    kept = [channel_parts(m, m.shape[0] - 1, 16, 32, full_copy=2**20) for m in maps]
    assert all(isinstance(p, FullResolution) for p in kept)
    for m in maps:
        m.zero_()  # e.g. a later ReLU(inplace=True) or ``out += identity``
    later = draw_pictures(kept)
    for a, b in zip(now, later, strict=True):
        assert (a.tile_h, a.tile_w, a.tiles, a.source_hw) == (b.tile_h, b.tile_w, b.tiles, b.source_hw)
        assert a.vmin == pytest.approx(b.vmin, rel=1e-5) and a.vmax == pytest.approx(b.vmax, rel=1e-5)
        pa, pb = (torch.frombuffer(bytearray(p.pixels), dtype=torch.uint8).int() for p in (a, b))
        assert (pa - pb).abs().max() <= 1  # the same pixel, rounded either side of a level
        flat_a = [v for row in a.channel_stats for v in row]  # 4 significant digits
        flat_b = [v for row in b.channel_stats for v in row]
        assert flat_a == pytest.approx(flat_b, rel=1e-3, abs=1e-6)
        assert all(row[2] <= 0 < row[3] for row in b.channel_stats)  # min and max from before the zeroing


def test_full_resolution_copies_stay_within_their_budget(monkeypatch):
    """Past the budget, hooks pool their pictures themselves: memory stays bounded, and the
    pictures are the same."""
    from nnviz_report.capture import forward, layers
    from nnviz_report.capture.options import CaptureOptions
    from nnviz_report.capture.pictures import FullResolution, ImageParts

    model = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(6)]).eval()
    x = torch.randn(1, 4, 40, 40)

    def parts_and_pictures(budget):
        monkeypatch.setattr(layers, "FULL_COPY_BUDGET", budget)
        fwd, trace = forward.run_forward(model, x, CaptureOptions())
        trace.release()
        parts = [layer.picture for layer in fwd.layers]
        assert all(isinstance(p, (ImageParts, FullResolution)) for p in parts)
        kept = sum(p.values.numel() for p in parts if isinstance(p, FullResolution))
        pictures = layers.draw_layer_pictures(fwd.layers)
        return kept, [(image.pixels, image.channel_stats) for image in pictures]

    budget = 3 * 4 * 40 * 40 + 1  # room for three of the six pictures
    kept, pictures = parts_and_pictures(budget)
    assert kept == 3 * 4 * 40 * 40
    kept_all, pictures_all = parts_and_pictures(2**24)
    assert kept_all == 6 * 4 * 40 * 40
    flat = lambda pics: [v for _, stats in pics for row in stats for v in row]  # noqa: E731
    assert flat(pictures) == pytest.approx(flat(pictures_all), rel=1e-3, abs=1e-6)
    assert all(max(abs(a - b) for a, b in zip(p, q)) <= 1 for (p, _), (q, _) in zip(pictures, pictures_all))


def assert_counts_up_to_edges(got: torch.Tensor, sample: torch.Tensor, lo: float, hi: float, where: str) -> None:
    """Counts of equal bins over [lo, hi] (the last closed) as exact arithmetic gives them,
    except that a value within 1e-4 of a bin's width from an edge may fall either side: the
    report bins in the tensor's precision, and an independent forward pass (here under
    no_grad) can differ from the report's in the last bits, so its extremes may lie just
    outside [lo, hi] (they count in the end bins; torch.histc would drop them)."""
    bins = len(got)
    pos = (sample.double() - lo) / (hi - lo) * bins
    assert pos.min() > -1e-4 and pos.max() < bins + 1e-4, where
    expected = torch.bincount(pos.floor().clamp(0, bins - 1).long(), minlength=bins)
    edge = pos.round()
    near = edge[((pos - edge).abs() < 1e-4) & (edge > 0) & (edge < bins)].long()
    slack = torch.bincount(near, minlength=bins + 1)  # edge k lies between bins k-1 and k
    slack = slack[:bins] + slack[1:]
    assert ((got - expected).abs() <= slack).all(), where


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "model_fn,x",
    [
        (ResNet50, torch.randn(2, 3, 64, 64)),
        (lambda: TransformerClassifier(layers=6), torch.randint(0, 1000, (2, 12))),
    ],
    ids=["resnet50", "transformer-encoder-6"],
)
def test_big_models_match_independent_hooks(model_fn, x, device):
    """ResNet-50 (in-place ReLU, ``out += identity``, a ReLU module called 3 times per block)
    and a 6-layer TransformerEncoder: every entry matches stats taken by our own hooks."""
    model = model_fn().to(device).eval()
    x = x.to(device)
    truth = {}
    values = {}
    counts = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(mod, args, out):
        n = names[mod]
        k = counts.get(n, 0)
        counts[n] = k + 1
        t = out[0] if isinstance(out, tuple) else out
        truth[(n, k)] = independent_stats(t)
        values[(n, k)] = t.detach().flatten().clone()

    targets = [m for m in model.modules() if not list(m.children()) or isinstance(m, nn.MultiheadAttention)]
    handles = [m.register_forward_hook(hook) for m in targets]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    entries = nnviz_report.build_report(model, x, graph=False).data["feature_maps"]
    checked = 0
    for e in entries:
        if e["output"] not in ("", "[0]"):
            continue
        t = truth[(e["name"], e["call"])]
        for key in ("mean", "std", "min", "max", "zero_fraction"):
            assert_close(e[key], t[key], f"{e['name']} call {e['call']} {key}")
        h = e["histogram"]
        if h["hi"] > h["lo"]:  # counted after the forward pass, from the sample kept in the hook
            sample = values[(e["name"], e["call"])][:: h["every"]].float().cpu()
            got = torch.tensor(h["counts"])
            assert got.sum() == sample.numel(), e["name"]
            assert_counts_up_to_edges(got, sample, h["lo"], h["hi"], f"{e['name']} call {e['call']} histogram")
        checked += 1
    assert checked == len([k for k in truth if k[0] in {e["name"] for e in entries}]) and checked >= 50


def test_picture_sheets_hold_every_picture_where_the_browser_looks():
    """Pictures are stacked into a few image files; each one is cut back out at its sheet,
    row offset and tile stride: PNG exactly, JPEG within its compression error."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from nnviz_report.capture.pictures import GridImage
    from nnviz_report.sections.feature_maps import SHEET_MAX_HEIGHT, encode_all

    images = {}
    for i in range(300):  # enough 32-pixel strips to need more than one JPEG sheet
        h, w, tiles = [(32, 32, 16), (7, 7, 16), (28, 28, 16), (5, 40, 1), (14, 14, 16)][i % 5]
        smooth = np.add.outer(np.arange(h), np.arange(tiles * w)) * 255 // (h + tiles * w) + i % 7
        images[str(i)] = GridImage("channels", smooth.astype(np.uint8).tobytes(), h, w, tiles, 0.0, 1.0, False, (h, w))
    packed = encode_all(images)
    sheets = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1])))) for s in packed["sheets"]]
    assert len(sheets) < 10 and all(s.shape[0] <= SHEET_MAX_HEIGHT for s in sheets)
    for key, image in images.items():
        p = packed["pictures"][key]
        sheet = sheets[p["sheet"]]
        cut = np.concatenate(
            [
                sheet[p["y"] : p["y"] + p["tile_h"], t * p["stride"] : t * p["stride"] + p["tile_w"]]
                for t in range(p["tiles"])
            ],
            axis=1,
        ).astype(int)
        want = np.frombuffer(image.pixels, dtype=np.uint8).reshape(image.tile_h, -1).astype(int)
        if packed["sheets"][p["sheet"]].startswith("data:image/png"):
            assert (cut == want).all(), key
        else:
            assert np.abs(cut - want).mean() < 3, key


def test_a_5d_map_says_which_slice_is_drawn():
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU())
    outputs = []
    model[0].register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    report = nnviz_report.build_report(model, torch.randn(2, 3, 6, 10, 10), graph=False)
    conv = report.data["feature_maps"][0]
    assert conv["shape"] == [2, 4, 4, 8, 8]
    drawn = outputs[0][0, :, 2]  # example 0, every channel, depth index 2
    assert conv["channels"]["mean"] == pytest.approx(drawn.mean(dim=(1, 2)).tolist(), rel=1e-3)
    note = (
        "5-D output: each channel picture is its middle slice, dimension 2 (size 4): index 2 "
        "(e.g. the middle frame or depth); the numbers cover the whole output"
    )
    assert conv["notes"] == [note]
    assert note in report.html


def test_complex_values_are_summarised_by_magnitude_and_the_page_says_so():
    class Spectral(nn.Module):
        """A Fourier layer: complex weights and a complex output."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, dtype=torch.cfloat))

        def forward(self, x):
            return torch.fft.rfft(x) * self.w

    class FNO(nn.Module):
        def __init__(self):
            super().__init__()
            self.spectral = Spectral()

        def forward(self, x):
            return torch.fft.irfft(self.spectral(x), n=8)

    model, x = FNO(), torch.randn(3, 8)
    report = nnviz_report.build_report(model, x)
    (entry,) = report.data["feature_maps"]
    z = model.spectral(x).detach()
    assert entry["dtype"] == "complex64" and entry["mean"] == pytest.approx(z.abs().mean().item(), rel=1e-5)
    (param,) = report.data["parameters"]
    assert param["dtype"] == "complex64"
    assert param["after"]["min"] == pytest.approx(model.spectral.w.detach().abs().min().item(), rel=1e-6)
    texts = {f["section"]: f["text"] for f in report.data["findings"] if "complex" in f["text"]}
    assert texts == {
        "feature_maps": "1 complex layer output is summarised by magnitude, |z| (statistics, histograms and "
        "pictures): spectral",
        "parameters": "1 complex parameter is summarised by magnitude, |w| (statistics, histograms and changes): "
        "spectral.w",
    }


def test_nan_made_by_the_models_own_forward_is_reported():
    """The model's output is no layer's output when the root's forward computes it."""

    class RootLog(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            return {"log": torch.log(y - y.max() - 1) * torch.tensor([1.0, 1.0, 0.0, 1.0]), "y": y / 0.0}

    report = nnviz_report.build_report(RootLog(), torch.randn(2, 4))
    (entry,) = report.data["feature_maps"]
    assert entry["nan_count"] == entry["inf_count"] == 0
    found = [f["text"] for f in report.data["findings"] if f["section"] == "feature_maps"]
    assert found == ["The model's output has NaN/Inf values: output['log'] (8 NaN), output['y'] (8 Inf)"]
    finite = nnviz_report.build_report(nn.Linear(4, 4), torch.randn(2, 4))
    assert not [f for f in finite.data["findings"] if f["section"] == "feature_maps"]


def test_nan_in_a_picture_does_not_stretch_its_colour_range():
    """A NaN was drawn as 0 and so widened the range to 0: an all-negative map with one NaN
    column read -0.5 to 0 and painted the NaN in the colour of the maximum."""
    from nnviz_report.capture.pictures import _quantise

    v = -np.linspace(0.15, 0.5, 16, dtype=np.float32).reshape(1, 4, 4)
    v[0, :, 2] = np.nan
    q, lo, hi, diverging = _quantise(v)
    finite = v[np.isfinite(v)]
    assert (lo[0], hi[0], diverging[0]) == (pytest.approx(finite.min()), pytest.approx(finite.max()), False)
    assert (q[0, :, 2] == 0).all(), "NaN at the low end, not the high one"


def test_charts_of_few_layers_tick_whole_positions_and_show_single_points():
    """One or two layer outputs had ticks at -0.5, 0.5 and |max| / zero-fraction lines of one
    point, which draw nothing."""
    model = nn.Linear(4, 3)
    report = nnviz_report.build_report(model, torch.randn(2, 4), before=nnviz_report.snapshot(model))
    figures = page_view(report.html)["figures"]
    depth = figures["fm-propagation"]
    assert (depth["layout"]["xaxis"]["dtick"], depth["layout"]["xaxis"]["tick0"]) == (1, 0)
    assert {t["mode"] for t in depth["data"]} == {"lines+markers", "markers"}
    bias = next(f for key, f in figures.items() if key.startswith("par-bias-"))
    assert bias["layout"]["xaxis"]["dtick"] == 1
