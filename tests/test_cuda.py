"""On a CUDA GPU: the report of a model on the GPU holds the numbers its CPU twin's report
holds, reads only small results back to the host, and leaves the model on its device.

Skipped where torch sees no CUDA GPU (CI has none). The tests in the other files that
check numbers against an independent computation run on the GPU too (``DEVICES``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import nnviz_report
from helpers import ROOT, page_json
from models import ResNet18, ResNet50, TransformerClassifier
from nnviz_report.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def exact_float32():
    """Full float32 convolutions and matrix products (no TF32), so GPU and CPU agree to
    float32 rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _close(a, b, path: str) -> None:
    """Equal structure; numbers equal to float32 rounding of differently ordered sums;
    histogram counts equal but for values that fall on a bin edge."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            _close(u, v, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=2e-3, abs_tol=2e-5), f"{path}: cpu {a} cuda {b}"
    elif ".counts[" in path:
        assert abs(a - b) <= 2, f"{path}: cpu {a} cuda {b}"
    else:
        assert a == b, f"{path}: cpu {a!r} cuda {b!r}"


@pytest.mark.parametrize(
    "model_fn,x",
    [
        (ResNet18, torch.randn(2, 3, 32, 32)),
        (lambda: TransformerClassifier(layers=2), torch.randint(0, 1000, (2, 12))),
    ],
    ids=["resnet18", "transformer-encoder-2"],
)
def test_the_gpu_report_holds_the_cpu_reports_numbers(model_fn, x, exact_float32):
    torch.manual_seed(0)
    model = model_fn().eval()
    before = nnviz_report.snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    on_cpu = nnviz_report.build_report(model, x, before=before).data
    model.cuda()
    on_gpu = nnviz_report.build_report(model, x, before=before).data
    assert on_cpu["model"]["device"] == "cpu" and on_gpu["model"]["device"] == "cuda:0"
    assert on_gpu["model"]["device_name"] == torch.cuda.get_device_name(0)
    for section in ("feature_maps", "activations", "parameters"):
        _close(on_cpu[section], on_gpu[section], section)
    # The autograd graphs may differ by a node or two (CUDA's attention kernels have other
    # backward nodes than the CPU's); the skip connections found in them must not.
    g_cpu, g_gpu = on_cpu["graph"], on_gpu["graph"]
    assert abs(g_gpu["nodes"] - g_cpu["nodes"]) <= 0.05 * g_cpu["nodes"]
    assert (g_gpu["residual_connections"], g_gpu["concat_skips"]) == (
        g_cpu["residual_connections"],
        g_cpu["concat_skips"],
    )
    skips = lambda g: sorted((s["kind"], s["module"], s["source"], s["projection"]) for s in g["skips"])  # noqa: E731
    assert skips(g_gpu) == skips(g_cpu)


def _device_to_host_bytes(fn, tmp_path) -> int:
    """Bytes copied from the GPU to the host while ``fn`` runs, as the CUDA profiler
    records them (every memcpy, whichever call caused it)."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    trace = tmp_path / "trace.json"
    prof.export_chrome_trace(str(trace))
    events = json.loads(trace.read_text())["traceEvents"]
    copies = [e for e in events if e.get("cat") == "gpu_memcpy"]
    assert copies, "the profiler recorded no memcpy at all"
    return sum(e["args"]["bytes"] for e in copies if "DtoH" in e["name"])


def test_only_small_results_leave_the_gpu(tmp_path):
    """ResNet-50 at batch 8, 224x224: every layer output is reduced on the GPU; what comes
    back is statistics, histogram counts and the drawn channels of one example."""
    torch.manual_seed(0)
    model = ResNet50().cuda().eval()
    x = torch.randn(8, 3, 224, 224, device="cuda")
    sizes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size()))
        for m in model.modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    layer_bytes = sum(sizes)
    nnviz_report.build_report(model, x)  # warm-up: cuDNN, lazy modules
    copied = _device_to_host_bytes(lambda: nnviz_report.build_report(model, x), tmp_path)
    print(
        f"\nlayer outputs {layer_bytes / 1e6:.0f} MB, copied to the host {copied / 1e6:.2f} MB "
        f"({copied / layer_bytes:.2%})"
    )
    assert copied < 0.02 * layer_bytes


def test_the_model_stays_on_its_device_in_its_dtype():
    model = ResNet18().cuda().half().eval()
    report = nnviz_report.build_report(model, torch.randn(2, 3, 32, 32).half())
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    entries = report.data["feature_maps"]
    assert report.data["model"]["dtype"] == "float16"
    assert entries and all(e["mean"] is not None and math.isfinite(e["mean"]) for e in entries)
    assert report.data["graph"]["views"], "the graph of a half-precision model is drawn"


def test_the_command_line_runs_the_model_on_the_gpu(tmp_path, capsys):
    torch.save(ResNet18().state_dict(), tmp_path / "epoch0.pt")
    out = tmp_path / "r.html"
    code = main(
        [
            "build",
            f"{ROOT / 'examples' / 'models.py'}:ResNet18",
            "--input-shape",
            "2,3,32,32",
            "--before",
            str(tmp_path / "epoch0.pt"),
            "--device",
            "cuda",
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    html = out.read_text(encoding="utf-8")
    data = page_json(html, "nnviz-data")
    assert data["model"]["device"] == "cuda:0"
    assert f"on cuda:0 ({torch.cuda.get_device_name(0)})" in html
    assert data["parameters"][0]["before"] is not None
