"""Whole reports: the public API, every section with real content, one offline file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile

import plotly.graph_objects as go
import pytest
import torch

import nnviz_report
from helpers import ROOT, page_json, page_view
from models import ResNet18, TwoLayerNet
from nnviz_report import NNVizError
from nnviz_report.demo import train_demo
from nnviz_report.render import to_json


@pytest.fixture(scope="module")
def demo_report():
    model, example, before, _ = train_demo(steps=10)
    return nnviz_report.build_report(model, example, before=before, title="demo")


@pytest.fixture(scope="module")
def resnet_report():
    model = ResNet18()
    before = nnviz_report.snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return nnviz_report.build_report(model, torch.randn(2, 3, 32, 32), before=before)


def test_public_api_is_what_the_readme_documents():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    api = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(?:nnviz_report\.)?(\w+)", api, re.M))
    assert documented == set(nnviz_report.__all__) - {"__version__"}
    for name in nnviz_report.__all__:
        assert hasattr(nnviz_report, name)


@pytest.mark.parametrize("fixture", ["demo_report", "resnet_report"])
def test_every_section_has_real_content(fixture, request):
    report = request.getfixturevalue(fixture)
    data = report.data
    assert data["schema_version"] == 1
    assert set(data) >= {"title", "model", "activations", "feature_maps", "parameters", "graph"}
    assert data["model"]["num_parameters"] > 0 and data["model"]["input_shape"]
    assert data["activations"]["used"] and data["activations"]["calls"]
    assert all(
        {"name", "call", "type", "shape", "mean", "std", "min", "max", "zero_fraction"} <= e.keys()
        for e in data["feature_maps"]
    )
    assert sum("channels" in e for e in data["feature_maps"]) >= 5
    biases = [p for p in data["parameters"] if p["name"].endswith("bias")]
    assert biases and all(p["bias_before"] and p["bias_after"] for p in biases)
    assert all(p["before"] is not None for p in data["parameters"])
    assert data["graph"]["residual_connections"] == (1 if fixture == "demo_report" else 8)
    view = page_view(report.html)
    assert {"root", "full"} <= view["assets"]["graph"]["views"].keys()
    images = page_json(report.html, "nnviz-images")["feature_maps"]
    assert images["sheets"] and all(
        s.startswith(("data:image/jpeg;base64,", "data:image/png;base64,")) for s in images["sheets"]
    )
    pictures = images["pictures"]
    assert pictures and all(0 <= v["sheet"] < len(images["sheets"]) for v in pictures.values())


def test_the_page_embeds_the_data_exactly(demo_report):
    assert page_json(demo_report.html, "nnviz-data") == page_json(
        f'<script id="x">{to_json(demo_report.data)}</script>', "x"
    )


def _resolve(value, roots):
    if isinstance(value, list):
        return [_resolve(v, roots) for v in value]
    if isinstance(value, dict):
        if "$ref" in value:
            cur = roots
            for part in value["$ref"].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                cur = cur[int(part)] if isinstance(cur, list) else cur[part]
            return cur
        return {k: _resolve(v, roots) for k, v in value.items()}
    return value


@pytest.mark.parametrize("fixture", ["demo_report", "resnet_report"])
def test_every_figure_is_valid_plotly(fixture, request):
    report = request.getfixturevalue(fixture)
    view = page_view(report.html)
    roots = {"data": page_json(report.html, "nnviz-data"), "assets": view["assets"]}
    figures = view["figures"]
    used = set(re.findall(r'data-fig="([^"]+)"', report.html))
    assert used == set(figures), "every placeholder has a figure and every figure a placeholder"
    for spec in figures.values():
        go.Figure(_resolve(spec, roots))  # raises on any invalid property


def test_the_page_is_self_contained(demo_report):
    html = demo_report.html
    assert not re.search(r"""<(?:script|link|img|iframe|source|video|audio)[^>]+(?:src|href)\s*=""", html, re.I)
    assert not re.search(r"""url\(\s*['"]?(?:https?:)?//""", html)
    assert html.count("plotly.js (cartesian - minified) v4.1.1") == 1
    scripts = re.findall(r"<script([^>]*)>", html)
    ids = [re.search(r'id="([^"]+)"', a).group(1) if "id=" in a else None for a in scripts]
    views = [i for i in ids if i and i.startswith("nnviz-view-")]
    assert ids == ["nnviz-data", *views, "nnviz-images", "nnviz-plotly", None] and views


def test_reports_are_deterministic_apart_from_their_date():
    def build():
        torch.manual_seed(1)
        model = TwoLayerNet()
        return nnviz_report.build_report(model, torch.ones(2, 20)).html

    def strip(h: str) -> str:
        return re.sub(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}\+00:00| UTC)", "DATE", h)

    a, b = build(), build()
    assert strip(a) == strip(b)


def test_save_is_atomic(tmp_path, monkeypatch, demo_report):
    target = tmp_path / "report.html"
    target.write_text("an earlier report")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(NNVizError, match="disk full"):
        demo_report.save(target)
    assert target.read_text() == "an earlier report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"], "no temporary file left behind"
    monkeypatch.undo()
    assert demo_report.save(target) == target
    assert target.read_text(encoding="utf-8") == demo_report.html


def test_save_to_a_missing_folder_is_a_clear_error(tmp_path, demo_report):
    with pytest.raises(NNVizError, match="does not exist"):
        demo_report.save(tmp_path / "nope" / "report.html")
    with pytest.raises(NNVizError, match="is a folder"):
        demo_report.save(tmp_path)


def test_read_report_gives_back_the_data_of_a_saved_page(tmp_path, demo_report):
    path = demo_report.save(tmp_path / "report.html")
    assert nnviz_report.read_report(path) == json.loads(json.dumps(demo_report.data, allow_nan=False))
    assert nnviz_report.read_report(str(path))["title"] == demo_report.data["title"]


def test_read_report_refuses_what_is_not_a_report(tmp_path):
    with pytest.raises(NNVizError, match="report not found"):
        nnviz_report.read_report(tmp_path / "missing.html")
    (tmp_path / "page.html").write_text("<html><body>hello</body></html>")
    with pytest.raises(NNVizError, match="not an nnviz-report page"):
        nnviz_report.read_report(tmp_path / "page.html")
    (tmp_path / "binary.html").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(NNVizError, match="not an nnviz-report page"):
        nnviz_report.read_report(tmp_path / "binary.html")
    (tmp_path / "cut.html").write_text('<script type="application/json" id="nnviz-data">{"schema_ver</script>')
    with pytest.raises(NNVizError, match="damaged"):
        nnviz_report.read_report(tmp_path / "cut.html")


def test_the_error_type_is_a_value_error():
    assert issubclass(NNVizError, ValueError)
    with pytest.raises(ValueError, match="max_channels"):
        nnviz_report.build_report(TwoLayerNet(), torch.zeros(1, 20), max_channels=0)


def test_bad_arguments_are_clear_errors():
    model = TwoLayerNet()
    with pytest.raises(NNVizError, match="pass a tensor"):
        nnviz_report.build_report(model, "not a tensor")
    with pytest.raises(NNVizError, match=r"nn.Module"):
        nnviz_report.build_report(lambda x: x, torch.zeros(1))
    with pytest.raises(NNVizError, match="max_channels"):
        nnviz_report.build_report(model, torch.zeros(1, 20), max_channels=0)
    with pytest.raises(NNVizError, match="mode must be one of"):
        nnviz_report.build_report(model, torch.zeros(1, 20), mode="inference")


def test_a_non_editable_wheel_renders_reports(tmp_path):
    """Templates and assets ship inside the wheel: install it (unpacked) and build a report
    from outside the source tree."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(wheels.glob("nnviz_report-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnviz_report/templates/report.html.j2" in names
    assert "nnviz_report/templates/assets/vendor/plotly-cartesian-4.1.1.min.js" in names
    assert "nnviz_report/py.typed" in names  # type checkers read the package's annotations
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import torch, nnviz_report, pathlib;"
        "assert 'site' in nnviz_report.__file__, nnviz_report.__file__;"
        "m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU());"
        "nnviz_report.build_report(m, torch.randn(2, 3)).save('out.html')"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True)
    assert "plotly.js (cartesian" in (tmp_path / "out.html").read_text(encoding="utf-8")


def test_every_section_module_names_its_template_and_builds_its_own_section(demo_report):
    from nnviz_report.pipeline import SECTIONS
    from nnviz_report.render import templates_dir

    assert [m.ID for m in SECTIONS] == [k for k in demo_report.data if k in {m.ID for m in SECTIONS}]
    for module in SECTIONS:
        assert (templates_dir() / module.TEMPLATE).is_file(), module.TEMPLATE
        assert f'id="{module.ID}"' in demo_report.html and module.TITLE in demo_report.html
