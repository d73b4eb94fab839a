"""The autograd graph: torchviz's nodes, skip connections, escaping, determinism, no dot."""

from __future__ import annotations

import re
import warnings
from collections import Counter

import pytest
import torch
from conftest import page_view
from models import ResNet18, SmallCNN, UNet
from torch import nn

import nnviz_report
from nnviz_report.capture.forward import CaptureOptions
from nnviz_report.capture.run import capture


def graph_of(model, x):
    run = capture(model, x, None, CaptureOptions())
    return run.graph, run.forward.calls


def _encoder(layers: int, norm_first: bool) -> nn.Module:
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


@pytest.mark.parametrize("model,x,residual,concat", [
    (ResNet18(), torch.randn(1, 3, 32, 32), 8, 0),
    (_encoder(3, False), torch.randn(2, 5, 32), 6, 0),
    (_encoder(3, True), torch.randn(2, 5, 32), 6, 0),
    (SmallCNN(), torch.randn(1, 1, 28, 28), 0, 0),
    (UNet(), torch.randn(1, 3, 32, 32), 0, 3),
], ids=["resnet18", "encoder3-post-norm", "encoder3-pre-norm", "plain-cnn", "unet"])
def test_skip_connection_counts(model, x, residual, concat):
    g, _ = graph_of(model, x)
    assert g.residual_count == residual
    assert sum(s.kind == "concat" for s in g.skips) == concat


def test_residuals_belong_to_their_blocks_and_projections_are_seen():
    g, calls = graph_of(ResNet18(), torch.randn(1, 3, 32, 32))
    blocks = sorted(calls[s.call].name for s in g.skips)
    assert blocks == [f"layers.{i}.{j}" for i in range(4) for j in range(2)]
    projections = sorted(calls[s.call].name for s in g.skips if s.projection)
    assert projections == ["layers.1.0", "layers.2.0", "layers.3.0"]


class Embeddings(nn.Module):
    """Additions that are not residuals: two embeddings, a bias, a learned position table."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(10, 8)
        self.pos = nn.Embedding(6, 8)
        self.bias = nn.Parameter(torch.zeros(8))
        self.table = nn.Parameter(torch.zeros(1, 6, 8))
        self.fc = nn.Linear(8, 8)

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        h = h + self.bias
        h = h + self.table[:, : ids.shape[1]]
        return self.fc(h) + h  # the one residual


def test_bias_and_embedding_additions_are_not_residuals():
    g, calls = graph_of(Embeddings(), torch.randint(0, 10, (2, 6)))
    assert g.residual_count == 1
    assert calls[g.skips[0].call].name == ""


def test_same_nodes_and_edges_as_torchviz_make_dot():
    from torchviz import make_dot

    model = ResNet18().eval()
    x = torch.randn(1, 3, 32, 32)
    ours, _ = graph_of(model, x)
    leaf = x.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = make_dot(model(leaf), params=dict(model.named_parameters()))
    labels = Counter()
    edges = Counter()
    for line in theirs.body:
        if " -> " in line:
            edges["saved" if "dir=none" in line else "view" if "style=dotted" in line else "data"] += 1
        else:
            m = re.match(r'\t\S+ \[label=("(?:[^"\\]|\\.)*"|\S+?)[ \]]', line, re.S)
            if m and "\n" not in m.group(1):
                labels[m.group(1).strip('"')] += 1
    ops = Counter(n.op for n in ours.nodes if n.kind == "op")
    assert ops == labels
    assert Counter(e.kind for e in ours.edges) == edges
    assert edges["data"] > 100


def test_the_svg_is_deterministic():
    def svgs():
        torch.manual_seed(3)
        report = nnviz_report.build_report(ResNet18(), torch.ones(1, 3, 16, 16))
        views = page_view(report.html)["assets"]["graph"]["views"]
        return {k: v["svg"] for k, v in views.items()}

    first, second = svgs(), svgs()
    assert set(first) == {"module", "full"}
    assert first == second
    assert not re.search(r"\d{9,}", first["full"]), "no memory addresses in ids"


HOSTILE = ['<img src=x onerror=alert(1)>', 'javascript:alert(1)', 'a\\Nb\\G', 'q"uote', '</script><script>alert(2)</script>']


class Hostile(nn.Module):
    def __init__(self):
        super().__init__()
        for name in HOSTILE:
            self.add_module(name, nn.Linear(4, 4))

    def forward(self, x):
        for m in self.children():
            x = m(x) + x
        return x


def test_hostile_module_names_stay_text_everywhere():
    report = nnviz_report.build_report(Hostile(), torch.randn(2, 4), title='<b>"title"</b>\u2028')
    html = report.html
    for name in HOSTILE:
        if any(c in name for c in '<>"'):
            assert name not in html, f"{name!r} appears unescaped in the page"
    assert not re.search(r"""(?:href|src)\s*=\s*["']?\s*javascript:""", html, re.I), "no javascript: link"
    assert '<b>"title"</b>' not in html and "&lt;b&gt;&#34;title&#34;&lt;/b&gt;" in html
    views = page_view(html)["assets"]["graph"]["views"]
    assert set(views) == {"module", "full"}, "dot drew both views"
    for view in views.values():
        svg = view["svg"]
        assert "<a " not in svg and "<script" not in svg.lower() and "onerror" not in svg.split(">")[0]
        assert "&lt;img src=x onerror=alert(1)&gt;" in svg, "the name is shown as text"
        assert "a\\Nb\\G" in svg, "backslash escapes are not interpreted by dot"
    data_names = {e["name"] for e in report.data["feature_maps"]}
    assert set(HOSTILE) <= data_names, "the data keeps the real names"


def test_missing_dot_gives_a_report_with_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    report = nnviz_report.build_report(SmallCNN(), torch.randn(1, 1, 28, 28))
    assert report.data["graph"]["residual_connections"] == 0
    assert report.data["graph"]["views"][0]["rendered"] is False
    assert "apt-get install graphviz" in report.html
    assert any("apt-get install graphviz" in w for w in report.warnings)
    assert report.data["graph"]["nodes"] > 0, "the structure is still captured"


def test_dot_timeout_falls_back_with_a_notice():
    report = nnviz_report.build_report(ResNet18(), torch.randn(1, 3, 16, 16), dot_timeout=0.001)
    assert "did not finish within 0.001 s" in report.html
    assert all(not v["rendered"] for v in report.data["graph"]["views"])


def test_frozen_model_with_integer_input_has_no_graph_but_a_report():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2)).requires_grad_(False)
    report = nnviz_report.build_report(model, torch.randint(0, 10, (2, 3)))
    assert report.data["graph"]["nodes"] == 0
    assert "no autograd graph" in report.html


def test_the_autograd_graph_and_its_saved_activations_are_freed():
    """make_dot leaves its graph in a reference cycle; nothing of the forward pass may
    outlive build_report (a training loop calling it every epoch would grow)."""
    import gc
    import weakref

    model = ResNet18()
    refs = []
    handle = model.stem[0].register_forward_hook(lambda m, i, o: refs.append(weakref.ref(o)))
    gc.disable()  # no automatic collection may rescue us
    try:
        nnviz_report.build_report(model, torch.randn(2, 3, 32, 32))
        assert refs and refs[0]() is None
    finally:
        gc.enable()
        handle.remove()


@pytest.mark.parametrize("svg,safe", [
    ('<svg viewBox="0 0 1 1"><g id="n1" class="node"><title>n1</title><polygon points="1"/>'
     '<text x="1">x onload=1 &lt;script&gt; href=javascript:</text></g></svg>', True),
    ("<svg><script>alert(1)</script></svg>", False),
    ('<svg><a xlink:href="javascript:x"><text>t</text></a></svg>', False),
    ('<svg><g onload="x"></g></svg>', False),
    ('<svg><g\nonclick="x"></g></svg>', False),
    ('<svg><image href="http://example.com/x.png"/></svg>', False),
    ("<svg><foreignObject></foreignObject></svg>", False),
    ('<svg><g id="a" ONMOUSEOVER = "x"></g></svg>', False),
    ('<svg><text>a > b onclick=1</text><g id="n1"></g></svg>', True),
    ('<svg><text>a &gt; b</text><g class="x" data-href="y"></g></svg>', False),
])
def test_only_drawing_svg_is_embedded(svg, safe):
    from nnviz_report.dot import _safe_svg

    assert _safe_svg(svg) is safe


def test_the_svg_check_agrees_with_one_regex_over_random_markup():
    """The check scans for tags, then looks only where a handler or link could start; its
    definition is one regex (quadratic on a big SVG): they agree on random strings of
    tag, attribute and text fragments."""
    import random

    from nnviz_report.dot import _SVG_TAGS, _safe_svg

    space = "[ \t\n\r\f]"  # HTML's attribute separators
    reference = re.compile(rf"<(?!/?(?:{_SVG_TAGS})[ \t\n\r\f/>])|<[^>]*{space}(?:on[\w.-]*|[\w.:-]*href){space}*=",
                           re.I | re.A)
    parts = ["<g ", "<text ", "</g>", "<polygon ", ">", "/>", " ", "\n", "=", '"', "x", ' id="n1"', "font",
             " onload=", " ONCLICK =", " xlink:href=", " data-href=", " onload", " on", "href", "&lt;", "&gt;",
             "\tonclick=", "\u00a0onclick=", "a\u00a0href=", "\fhref ="]
    rng = random.Random(0)
    outcomes = {True: 0, False: 0}
    for _ in range(5000):
        svg = "<svg>" + "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        svg += rng.choice(["", "", "", "<image/>", "<a>"]) + "</svg>"
        safe = reference.search(svg) is None
        outcomes[safe] += 1
        assert _safe_svg(svg) is safe, svg
    assert min(outcomes.values()) > 1000, outcomes  # both answers well exercised


def test_module_view_connects_the_input():
    from nnviz_report import dot

    g, calls = graph_of(SmallCNN(), torch.randn(1, 1, 28, 28))
    view = dot.module_view(g, calls)
    inputs = [n.id for n in view.nodes if n.kind == "input"]
    assert len(inputs) == 1
    assert [(a, b) for a, b, _, _ in view.edges if a == inputs[0]], "the input feeds the first layer"
