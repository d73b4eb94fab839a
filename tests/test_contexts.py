"""Reports built from odd calling contexts and odd models: inside no_grad or
inference_mode, models made in inference mode, TorchScript, the meta device, nested
inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nnviz_report
from helpers import assert_same_state, state_of
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
    with pytest.raises(NNVizError, match=r"created under torch.inference_mode.*use mode='eval'"):
        nnviz_report.build_report(model, torch.randn(2, 3, 8, 8), mode="train")
    assert_same_state(before, state_of(model))


class Detector(nn.Module):
    """Takes one list of images, as torchvision's detectors do, and rewrites the first in
    place."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images, targets=None):
        if targets is not None:
            targets = {k: v for k, v in targets.items()}
        images[0].mul_(0.5)
        return [self.conv(image[None]) for image in images]


def test_nested_inputs_are_copied_and_described():
    from helpers import page_view

    a, b = torch.randn(3, 8, 8), torch.randn(3, 10, 10)
    keep = a.clone()
    images = [a, b]
    report = nnviz_report.build_report(Detector(), (images,))
    assert torch.equal(a, keep) and images == [a, b] and not a.requires_grad, "the caller's data is untouched"
    assert report.data["model"]["inputs"] == [
        {"name": "input[0][0]", "shape": [3, 8, 8], "dtype": "float32"},
        {"name": "input[0][1]", "shape": [3, 10, 10], "dtype": "float32"},
    ]
    assert "<dt>Input</dt><dd><code>3×8×8</code> float32, <code>3×10×10</code> float32</dd>" in report.html
    graph = str(page_view(report.html)["assets"]["graph"])
    assert "input[0][0]" in graph and "input[0][1]" in graph, "the graph starts at both images"


def test_inputs_in_dicts_and_named_tuples_and_shared_tensors():
    from collections import OrderedDict, namedtuple

    Pair = namedtuple("Pair", "left right")
    seen = {}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, batch, pair):
            seen["types"] = (type(batch), type(pair))
            seen["same"] = batch["x"] is pair.left
            return self.fc(batch["x"] + pair.right)

    x, y = torch.randn(2, 4), torch.randn(2, 4)
    report = nnviz_report.build_report(Net(), (OrderedDict(x=x), Pair(x, y)))
    assert seen == {"types": (OrderedDict, Pair), "same": True}
    assert [i["name"] for i in report.data["model"]["inputs"]] == ["input[0]['x']", "input[1].right"]


def test_a_bare_list_for_a_detector_suggests_the_tuple():
    images = [torch.randn(3, 8, 8), torch.randn(3, 8, 8)]
    with pytest.raises(NNVizError, match=r"a list is passed as positional arguments.*\(\[img1, img2\],\)") as err:
        nnviz_report.build_report(Detector(), images)
    assert "'Tensor' object has no attribute 'items'" in str(err.value) and "\n" not in str(err.value)


TORCHSCRIPT_DEPRECATED = "ignore:`torch.jit.*is deprecated:DeprecationWarning"  # torch 2.13 says so


@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATED)
@pytest.mark.parametrize("compile_", ["script", "trace"])
def test_a_torchscript_model_gets_a_report_that_says_what_it_cannot_show(compile_):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    scripted = torch.jit.script(model) if compile_ == "script" else torch.jit.trace(model, x)
    before = state_of(scripted)
    report = nnviz_report.build_report(scripted, x, before=nnviz_report.snapshot(scripted))
    assert_same_state(before, state_of(scripted))
    assert report.data["title"] == "Sequential report"
    assert report.data["feature_maps"] == [] and report.data["activations"]["calls"] == []
    assert report.data["graph"]["nodes"] > 5 and len(report.data["parameters"]) == 4
    assert "the model is a TorchScript module (Sequential): compiled code runs without Python hooks" in report.html


@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATED)
def test_a_torchscript_block_inside_a_model():
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.GELU()))
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.block(x))

    report = nnviz_report.build_report(Outer(), torch.randn(3, 4))
    assert [e["name"] for e in report.data["feature_maps"]] == ["head"]
    assert "TorchScript modules: block: compiled code runs without Python hooks" in report.html


def test_a_compiled_block_inside_a_model_runs_eagerly_for_the_report():
    """A ``torch.compile``d submodule would hide its layers from the hooks and its operations
    from the graph (one CompiledFunctionBackward), and Dynamo would trace the hooks. The
    build runs it eagerly; compiled code runs compiled again afterwards."""
    torch._dynamo.reset()

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.compile(nn.Sequential(Residual(), Residual()), backend="aot_eager")
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.body(x))

    model, x = Outer(), torch.randn(3, 4)
    model(x)  # compiled once, as after training
    before = state_of(model)
    report = nnviz_report.build_report(model, x)
    assert_same_state(before, state_of(model))
    names = [e["name"] for e in report.data["feature_maps"]]
    assert names[:2] == ["body._orig_mod.0.fc", "body._orig_mod.1.fc"] and names[-1] == "head"
    assert report.data["graph"]["residual_connections"] == 2
    compiled = model.body(x.clone().requires_grad_())
    assert type(compiled.grad_fn).__name__ == "CompiledFunctionBackward", "compiled code runs compiled again"


def test_a_model_on_the_meta_device_is_a_clear_error():
    with pytest.raises(NNVizError, match=r"on the meta device \(weight: a shape without values\).*to_empty"):
        nnviz_report.build_report(nn.Linear(3, 2, device="meta"), torch.randn(2, 3))


def test_text_that_is_not_unicode_shows_as_a_replacement_character(tmp_path):
    """A title from a non-UTF-8 argument and a module whose name holds a lone surrogate:
    the page is valid UTF-8 and shows U+FFFD where they were."""
    model = nn.Sequential()
    model.add_module("lin\udcffear", nn.Linear(3, 2))
    report = nnviz_report.build_report(model, torch.randn(2, 3), title="run \udcff42")
    path = report.save(tmp_path / "r.html")
    html = path.read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "<h1>run \ufffd42</h1>" in html and "lin\ufffdear" in html
    from helpers import page_json

    data = page_json(html, "nnviz-data")
    assert data["title"] == "run \ufffd42" and data["feature_maps"][0]["name"] == "lin\ufffdear"
    assert report.data["graph"]["views"][0]["error"] is None, "the graph was drawn"


def test_cli_title_from_a_non_utf8_argument(tmp_path, capsys):
    from helpers import ROOT, page_json
    from nnviz_report.cli import main

    out = tmp_path / "r.html"
    code = main(
        [
            "build",
            f"{ROOT}/examples/models.py:TwoLayerNet",
            "--input-shape",
            "2,20",
            "--no-graph",
            "--title",
            b"run \xff".decode("utf-8", "surrogateescape"),
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert page_json(out.read_text(encoding="utf-8"), "nnviz-data")["title"] == "run \ufffd"


def test_meta_tensors_where_values_are_needed_are_clear_errors():
    model = nn.Linear(4, 2)
    with pytest.raises(NNVizError, match=r"example input's tensor input\[1\] is on the meta device"):
        nnviz_report.build_report(model, (torch.randn(2, 4), torch.empty(3, device="meta")))
    state = model.state_dict()
    meta = {k: torch.empty_like(v, device="meta") for k, v in state.items()}
    with pytest.raises(NNVizError, match=r"weight is on the meta device \(a shape without values\)"):
        nnviz_report.build_report(model, torch.randn(2, 4), before=meta)


def test_a_lazy_module_before_its_first_call_is_a_clear_error():
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU())
    for call in (lambda: nnviz_report.build_report(model, torch.randn(2, 3)), lambda: nnviz_report.snapshot(model)):
        with pytest.raises(NNVizError, match=r"lazy parameters not made yet \(0.weight.*run it once first"):
            call()
    model(torch.randn(2, 3))
    assert nnviz_report.build_report(model, torch.randn(2, 3)).data["feature_maps"][0]["name"] == "0"


def test_modules_called_inside_vmap_are_listed_as_not_captured():
    """torch.func.vmap runs modules on wrapper tensors whose values cannot be read: the
    statistics used to fail the whole build, blaming the input."""
    from torch.func import functional_call, stack_module_state, vmap

    class Ensemble(nn.Module):
        def __init__(self):
            super().__init__()
            self.members = nn.ModuleList(nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8)) for _ in range(3))
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            params, buffers = stack_module_state(list(self.members))
            call = lambda p, b, x: functional_call(self.members[0], (p, b), (x,))  # noqa: E731
            return self.head(torch.relu(vmap(call, in_dims=(0, 0, None))(params, buffers, x).mean(0)))

    model = Ensemble()
    before = state_of(model)
    report = nnviz_report.build_report(model, torch.randn(5, 8))
    assert_same_state(before, state_of(model))
    assert [e["name"] for e in report.data["feature_maps"]] == ["head"]
    assert [c["function"] for c in report.data["activations"]["calls"]] == ["torch.relu"]  # not the GELUs in vmap
    assert report.data["graph"]["nodes"] > 20
    assert "members.0.0" in report.html and "inside torch.func.vmap / grad" in report.html


def test_builds_overlapping_in_two_threads_leave_torch_compile_on():
    """Each build put back the stance it found: B, starting while A ran, found force_eager
    and put it back after A had ended, so torch.compile stayed off for the whole process."""
    import threading

    import torch._dynamo  # as after any torch.compile: the builds set the eager stance

    a_in, b_in, a_done = threading.Event(), threading.Event(), threading.Event()

    class Gate(nn.Module):
        def __init__(self, arrive, wait):
            super().__init__()
            self.fc, self.arrive, self.wait = nn.Linear(4, 4), arrive, wait

        def forward(self, x):
            self.arrive.set()
            self.wait.wait(20)
            return self.fc(x)

    def build_a():
        nnviz_report.build_report(Gate(a_in, b_in), torch.randn(2, 4), graph=False)
        a_done.set()

    first = threading.Thread(target=build_a)
    second = threading.Thread(
        target=lambda: nnviz_report.build_report(Gate(b_in, a_done), torch.randn(2, 4), graph=False)
    )
    first.start()
    a_in.wait(20)
    second.start()  # B starts while A runs, and ends after A
    first.join(30)
    second.join(30)
    graphs = []
    torch.compile(nn.Linear(4, 4), backend=lambda gm, example: graphs.append(gm) or gm.forward)(torch.randn(2, 4))
    assert len(graphs) == 1, "torch.compile compiles again after the builds"


def test_sparse_tensors_in_the_model_and_in_checkpoints(tmp_path):
    """A graph network's sparse adjacency buffer (the guard's flat copy of buffers failed on
    it), and a checkpoint whose weight was saved sparse (compared as dense values)."""

    class GCN(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("adj", torch.eye(5).to_sparse())
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.sparse.mm(self.adj, self.fc(x))

    model = GCN()
    before = state_of(model)
    snap = nnviz_report.snapshot(model)
    with torch.no_grad():
        model.fc.weight.add_(0.5)
    saved = {k: v.clone() for k, v in snap.tensors.items()}
    saved["fc.weight"] = saved["fc.weight"].to_sparse()
    torch.save(saved, tmp_path / "sparse.pt")
    for given in (snap, saved, tmp_path / "sparse.pt"):
        report = nnviz_report.build_report(model, torch.randn(5, 4), before=given)
        weight = next(p for p in report.data["parameters"] if p["name"] == "fc.weight")
        assert weight["relative_change"] > 0 and weight["before"]["mean"] == pytest.approx(
            snap.tensors["fc.weight"].mean().item(), abs=1e-6
        )
    after = state_of(model)
    assert torch.equal(after["buffers"]["adj"].to_dense(), before["buffers"]["adj"].to_dense())
