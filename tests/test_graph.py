"""The autograd graph: torchviz's nodes, skip connections, module views, escaping,
determinism, layouts that always finish, and a report that survives any graph failure."""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections import Counter

import pytest
import torch
from torch import nn

import nnviz_report
from helpers import page_view
from models import ResNet18, SmallCNN, TransformerClassifier, UNet
from nnviz_report import dot, dot_source
from nnviz_report.capture.graph import capture_graph
from nnviz_report.capture.options import CaptureOptions
from nnviz_report.capture.run import capture
from nnviz_report.sections import graph_views
from zoo import (
    R3D,
    ChainedAdds,
    DataclassOutput,
    DeepSequential,
    DenseNet,
    InceptionNet,
    RecurrentStack,
    Seq2Seq,
    TinyDecoder,
    TinyDetector,
    UnrolledGRU,
)


def run_of(model, x):
    return capture(model.eval(), x, CaptureOptions())


def graph_of(model, x):
    run = run_of(model, x)
    return run.graph, run.forward.calls


def _encoder(layers: int, norm_first: bool) -> nn.Module:
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


# --- skip connections --------------------------------------------------------------------------

SKIP_CASES = [
    (ResNet18, lambda: torch.randn(1, 3, 32, 32), 8, 0, 0),
    (lambda: _encoder(3, False), lambda: torch.randn(2, 5, 32), 6, 0, 0),
    (lambda: _encoder(3, True), lambda: torch.randn(2, 5, 32), 6, 0, 0),
    (SmallCNN, lambda: torch.randn(1, 1, 28, 28), 0, 0, 0),
    (UNet, lambda: torch.randn(1, 3, 32, 32), 0, 3, 0),
    (lambda: DenseNet((3, 4), growth=8, init=16, num_classes=4), lambda: torch.randn(1, 3, 32, 32), 0, 7, 0),
    (InceptionNet, lambda: torch.randn(1, 3, 16, 16), 0, 0, 3),
    (R3D, lambda: torch.randn(1, 3, 4, 16, 16), 4, 0, 0),
    (lambda: RecurrentStack(50, 8, 8), lambda: torch.randint(0, 50, (2, 6)), 0, 0, 0),
    (lambda: UnrolledGRU(12), lambda: torch.randn(2, 5, 8), 0, 0, 0),
    (TinyDecoder, lambda: torch.randint(0, 256, (2, 8)), 8, 0, 0),
    (TinyDetector, lambda: torch.randn(1, 3, 16, 16), 2, 0, 0),
    (DataclassOutput, lambda: torch.randn(2, 8), 1, 0, 0),
    (Seq2Seq, lambda: (torch.randint(0, 200, (2, 6)), torch.randint(0, 200, (2, 5))), 10, 0, 0),
]


@pytest.mark.parametrize(
    "build,example,residual,concat,branches",
    SKIP_CASES,
    ids=[
        "resnet18",
        "encoder-post-norm",
        "encoder-pre-norm",
        "plain-cnn",
        "unet",
        "densenet",
        "inception",
        "r3d",
        "lstm-gru",
        "unrolled-gru",
        "decoder-gelu-rotary",
        "detector",
        "dataclass-output",
        "encoder-decoder",
    ],
)
def test_skip_counts_are_exact(build, example, residual, concat, branches):
    """Skips go around layers; arithmetic inside one module (tanh-GELU's polynomial, rotary
    embeddings, GRU gates, box decoding) is not a skip; Inception's branches are merges."""
    torch.manual_seed(0)
    g, _ = graph_of(build(), example())
    assert (g.residual_count, g.concat_count, len(g.merges)) == (residual, concat, branches)


def test_residuals_belong_to_their_blocks_and_projections_are_seen():
    g, calls = graph_of(ResNet18(), torch.randn(1, 3, 32, 32))
    blocks = sorted(calls[s.call].name for s in g.skips)
    assert blocks == [f"layers.{i}.{j}" for i in range(4) for j in range(2)]
    projections = sorted(calls[s.call].name for s in g.skips if s.projection)
    assert projections == ["layers.1.0", "layers.2.0", "layers.3.0"]
    assert all(s.around >= 4 for s in g.skips), "each skip goes around two convs and two norms"


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


class BiasedAttention(nn.Module):
    def __init__(self, dim, has_bias):
        super().__init__()
        self.q, self.k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.bias = nn.Embedding(16, 1) if has_bias else None

    def forward(self, x, bias):
        scores = self.q(x) @ self.k(x).transpose(1, 2)
        if bias is None:
            bias = self.bias(torch.arange(x.shape[1])[:, None] - torch.arange(x.shape[1])[None] + 8)[..., 0]
        return scores + bias, bias


class PositionBiasStack(nn.Module):
    """T5's pattern: a position bias computed from parameters in the first layer and added to
    the attention scores of every layer. It depends on no input: it is not a skip."""

    def __init__(self, layers=3, dim=8):
        super().__init__()
        self.embed = nn.Embedding(20, dim)
        self.attn = nn.ModuleList(BiasedAttention(dim, i == 0) for i in range(layers))
        self.proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))

    def forward(self, ids):
        x, bias = self.embed(ids), None
        for attn, proj in zip(self.attn, self.proj):
            scores, bias = attn(x, bias)
            x = x + proj(scores.softmax(-1) @ x)
        return x


def test_a_bias_computed_from_parameters_alone_is_not_a_skip():
    g, calls = graph_of(PositionBiasStack(), torch.randint(0, 20, (2, 5)))
    assert g.residual_count == 3
    assert sorted(calls[s.call].name for s in g.skips) == ["", "", ""]


def test_a_skip_from_the_model_input_says_so():
    report = nnviz_report.build_report(DataclassOutput(), torch.randn(2, 8), graph=True)
    (skip,) = report.data["graph"]["skips"]
    assert skip["source"] == "input"


@pytest.mark.parametrize("reentrant", [False, True])
def test_reentrant_checkpoints_hide_their_skips_and_say_so(reentrant):
    """A segment checkpointed with use_reentrant=True ran under no_grad: one opaque node."""
    from torch.utils.checkpoint import checkpoint

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return x + torch.relu(self.fc(x))

    class Checkpointed(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Block() for _ in range(3))

        def forward(self, x):
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=reentrant)
            return x

    report = nnviz_report.build_report(Checkpointed(), torch.randn(2, 8))
    warned = [f["text"] for f in report.data["findings"] if f["section"] == "graph"]
    assert [e["name"] for e in report.data["feature_maps"]] == ["blocks.0.fc", "blocks.1.fc", "blocks.2.fc"]
    if reentrant:
        assert report.data["graph"]["residual_connections"] == 0
        assert warned == [
            "3 activation-checkpoint segments with use_reentrant=True are one opaque node each "
            "(CheckpointFunctionBackward) in the autograd graph: the operations inside, and any skip "
            "connection among them, are not drawn or counted (their layers' feature maps are shown); "
            "torch.utils.checkpoint(..., use_reentrant=False) records them"
        ]
    else:
        assert report.data["graph"]["residual_connections"] == 3 and warned == []


def test_an_outer_skip_goes_around_the_layers_of_the_inner_ones():
    """The layers an outer skip goes around are those on every path, not on the shortest one,
    which runs through the inner skips' shortcuts."""

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(x)))

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 8)
            self.body = nn.Sequential(Inner(), Inner(), nn.Linear(8, 8))

        def forward(self, x):
            h = self.head(x)
            return h + self.body(h)

    skips = nnviz_report.build_report(Outer(), torch.randn(2, 8)).data["graph"]["skips"]
    assert sorted((s["module"], s["source"], s["around"]) for s in skips) == [
        ("", "head", 5),
        ("body.0", "head", 2),
        ("body.1", "body.0", 2),
    ]


@pytest.mark.parametrize("container", [set, lambda items: (t for t in items)])
def test_a_set_or_generator_output_is_named_not_called_free_of_grad(container):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return container([self.a(x), self.b(x)])

    note = nnviz_report.build_report(Odd(), torch.randn(2, 4)).data["graph"]["note"]
    kind = "set" if container is set else "generator"
    assert note == (
        f"the output is a {kind}, which the report does not look into, so there is no autograd graph to draw; "
        "return tensors in a tuple, list or dict"
    )


def test_a_conditioning_vector_broadcast_into_every_block_is_not_a_skip():
    """A diffusion U-Net adds its time embedding, projected, to every block's activations:
    the embedding also reached the block's input through earlier blocks, but a broadcast
    (B, C, 1, 1) operand is a conditioning, not an activation carried around layers."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.temb, self.conv2 = (
                nn.Conv2d(8, 8, 3, padding=1),
                nn.Linear(16, 8),
                nn.Conv2d(8, 8, 3, padding=1),
            )

        def forward(self, x, t):
            h = self.conv1(torch.relu(x)) + self.temb(t)[:, :, None, None]
            return x + self.conv2(torch.relu(h))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.time, self.inp = nn.Linear(1, 16), nn.Conv2d(3, 8, 3, padding=1)
            self.blocks = nn.ModuleList(Block() for _ in range(3))

        def forward(self, x, t):
            te, h = self.time(t[:, None]), self.inp(x)
            for block in self.blocks:
                h = block(h, te)
            return h

    g = nnviz_report.build_report(Net(), (torch.randn(2, 3, 8, 8), torch.tensor([1.0, 2.0]))).data["graph"]
    assert (g["residual_connections"], g["concat_skips"], g["branch_merges"]) == (3, 0, 0)
    assert sorted((s["module"], s["source"]) for s in g["skips"]) == [
        ("blocks.0", "inp"),
        ("blocks.1", "blocks.0"),
        ("blocks.2", "blocks.1"),
    ]


@pytest.mark.parametrize("inner_skip", [False, True])
def test_two_branches_are_a_branch_merge_even_when_one_is_a_residual_block(inner_skip):
    """The shortest chain through a residual block runs through its identity: 0 layers,
    which made the sum of two branches (HRNet's fusion) a skip around the other."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.LayerNorm(8))

        def forward(self, x):  # 4 layers: more than a projection shortcut's
            return torch.relu(x + self.body(x)) if inner_skip else torch.relu(self.body(x))

    class TwoStream(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.a = nn.Linear(8, 8), Block()
            self.b = nn.Sequential(*(m for _ in range(3) for m in (nn.Linear(8, 8), nn.LayerNorm(8), nn.ReLU())))

        def forward(self, x):
            x = self.stem(x)
            return self.a(x) + self.b(x)

    g = nnviz_report.build_report(TwoStream(), torch.randn(2, 8)).data["graph"]
    assert (g["residual_connections"], g["branch_merges"]) == (int(inner_skip), 1)
    assert [s["module"] for s in g["skips"]] == (["a"] if inner_skip else [])


def test_a_hand_written_rnn_loop_has_no_skips():
    """Each step adds its input's projection to the state: both come from the input, but one
    through x[:, t], one step of it, not the activation carried on (999 'skips' before)."""

    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.rec = nn.Linear(4, 8), nn.Linear(8, 8)

        def forward(self, x):
            h = torch.zeros(x.shape[0], 8)
            for t in range(x.shape[1]):
                h = torch.tanh(self.rec(h) + self.inp(x[:, t]))
            for step in x.unbind(1):
                h = torch.tanh(self.rec(h) + self.inp(step))
            return h

    g = nnviz_report.build_report(Loop(), torch.randn(2, 30, 4)).data["graph"]
    assert (g["residual_connections"], g["concat_skips"], g["branch_merges"]) == (0, 0, 0)


def test_every_path_counts_have_a_budget_for_the_whole_graph(monkeypatch):
    """Input injection (h = f(h) + x0 in every block) makes each count walk the whole history
    back: past a budget for the graph, counts fall back to shortest chains, and a note says so."""
    from nnviz_report.capture import skips

    class Injection(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Linear(4, 4)
            self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(40))

        def forward(self, x):
            x0 = h = self.emb(x)
            for block in self.blocks:
                h = torch.tanh(block(h)) + x0
            return h

    full = nnviz_report.build_report(Injection(), torch.randn(2, 4)).data["graph"]
    monkeypatch.setattr(skips, "ALL_PATHS_BUDGET", 300)
    cut = nnviz_report.build_report(Injection(), torch.randn(2, 4)).data["graph"]
    assert full["residual_connections"] == cut["residual_connections"] == 40 and full["note"] is None
    assert max(s["around"] for s in full["skips"]) == 40, "the last skip goes around every block"
    assert sum(s["around"] for s in cut["skips"]) < sum(s["around"] for s in full["skips"])
    assert cut["note"].endswith(
        "layer counts of skip connections were made on shortest paths only: counting every "
        "path through this graph would take too long (a loop that adds an early tensor at "
        "every step)"
    )


def test_tensors_in_a_dataclass_output_are_graph_outputs():
    g, _ = graph_of(DataclassOutput(), torch.randn(2, 8))
    assert sorted(n.name for n in g.nodes if n.kind == "output") == ["output.embedding", "output.logits"]


# --- torchviz's graph, without recursion --------------------------------------------------------


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class CustomAndView(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x):
        return Square.apply(self.fc(x)).view(2, 3, 2)


def _torchviz_counts(model, x):
    from torchviz import make_dot

    leaf = x.clone().requires_grad_(x.is_floating_point())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model(leaf)
        theirs = make_dot(out, params=dict(model.named_parameters()))
    labels, edges = Counter(), Counter()
    for line in theirs.body:
        if " -> " in line:
            edges["saved" if "dir=none" in line else "view" if "style=dotted" in line else "data"] += 1
        else:
            m = re.match(r'\t\S+ \[label=("(?:[^"\\]|\\.)*"|\S+?)[ \]]', line, re.S)
            fill = re.search(r"fillcolor=(\w+)", line)
            if m and "\n" not in m.group(1):
                labels[m.group(1).strip('"')] += 1
            elif fill:
                labels[fill.group(1)] += 1
    return labels, edges


@pytest.mark.parametrize(
    "build,example",
    [
        (ResNet18, lambda: torch.randn(1, 3, 32, 32)),
        (lambda: TransformerClassifier(layers=2), lambda: torch.randint(0, 1000, (2, 8))),
        (lambda: RecurrentStack(50, 8, 8), lambda: torch.randint(0, 50, (2, 5))),
        (CustomAndView, lambda: torch.randn(2, 4)),
    ],
    ids=["resnet18", "transformer", "lstm-gru", "custom-function-and-view"],
)
def test_same_nodes_and_edges_as_torchviz_make_dot(build, example):
    torch.manual_seed(0)
    model, x = build().eval(), example()
    ours, _ = graph_of(model, x)
    torch.manual_seed(0)
    labels, edges = _torchviz_counts(model, x)
    color = {
        "leaf": "lightblue",
        "param": "lightblue",
        "input": "lightblue",
        "saved": "orange",
        "output": "darkolivegreen1",
        "view": "darkolivegreen3",
    }
    mine = Counter(n.op if n.kind == "op" else color[n.kind] for n in ours.nodes)
    assert mine == labels
    assert Counter(e.kind for e in ours.edges) == edges


def test_chains_deeper_than_the_recursion_limit():
    """make_dot recurses once per node; the walk here is a loop."""
    x = torch.randn(3, requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y + 1
    g = capture_graph(y, {}, [("input", x)], {}, [])
    assert len(g.nodes) == 20_003 and not g.truncated


def test_a_graph_of_70000_nodes_is_released_without_a_crash():
    """Releasing the forward pass's references oldest first freed a 70,000-node chain in one
    recursive destruction that overflowed the C++ stack: a segfault (so: a subprocess)."""
    import subprocess
    import sys

    from helpers import ROOT, with_examples

    code = (
        "import torch; from zoo import ChainedAdds; import nnviz_report; "
        "nnviz_report.build_report(ChainedAdds(70_000), torch.randn(2, 4), graph=False); print('built')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=with_examples(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "built" in done.stdout, done.stderr[-500:]


def test_the_walk_stops_at_its_limit_with_a_note():
    x = torch.randn(3, requires_grad=True)
    y = x
    for _ in range(100):
        y = y * 2
    g = capture_graph(y, {}, [("input", x)], {}, [], limit=50)
    assert g.truncated and len(g.nodes) == 50 and "more than 50" in g.note


@pytest.mark.parametrize(
    "build,example,top",
    [
        (DeepSequential, lambda: torch.randn(4, 16), "Linear → ReLU ×1000"),
        (lambda: UnrolledGRU(400), lambda: torch.randn(2, 10, 8), "Select → GRUCell ×399"),
        (ChainedAdds, lambda: torch.randn(4, 16), "AddBackward0 ×2000"),
    ],
    ids=["sequential-1000", "unrolled-gru-400", "chained-adds-2000"],
)
def test_deep_models_get_a_drawn_graph_with_their_repeats_folded(build, example, top):
    report = nnviz_report.build_report(build(), example())
    views = page_view(report.html)["assets"]["graph"]["views"]
    root = views["root"]
    labels = [item["label"] for item in root["info"].values()]
    assert any(top in label for label in labels), labels
    assert len(root["info"]) <= graph_views.MAX_BOXES
    assert all(v["rendered"] for v in report.data["graph"]["views"] if v["id"] != "full")


# --- module views ----------------------------------------------------------------------------


def test_identical_blocks_fold_and_open_the_first():
    run = run_of(TransformerClassifier(layers=6), torch.randint(0, 1000, (2, 8)))
    h = graph_views.build_hierarchy(run.graph, run.forward.calls, "TransformerClassifier")
    views = {v.id: v for v in h.views}
    encoder = next(v for v in h.views if v.title.startswith("encoder ·"))
    (fold,) = [n for n in encoder.nodes if n.kind == "fold"]
    assert fold.label[:2] == ["layers.0–5", "TransformerEncoderLayer ×6 (2, 8, 64)"]
    assert "↷ 12 skips" in fold.label
    assert views[fold.opens].note.startswith("6 calls identical in structure")
    names = {run.forward.calls[c].name for c in h.located}
    assert {c.name for c in run.forward.calls if c.parent is not None} == names, "every call can be found"


def test_large_views_are_split_into_groups_that_open():
    import random

    rng = random.Random(0)  # no repeating pattern to fold
    acts = [nn.Tanh, nn.ReLU, nn.GELU, nn.Sigmoid, nn.SiLU, nn.ELU, nn.Softsign]
    model = nn.Sequential(*[rng.choice(acts)() for _ in range(200)])
    run = run_of(model, torch.randn(2, 8))
    h = graph_views.build_hierarchy(run.graph, run.forward.calls, "Sequential")
    root = h.views[0]
    groups = [n for n in root.nodes if n.kind == "group"]
    assert groups and len(root.nodes) <= graph_views.MAX_BOXES
    opened = {v.id: v for v in h.views}
    assert all(g.opens in opened for g in groups)
    members = sum(len([n for n in opened[g.opens].nodes if n.kind in ("module", "fold")]) for g in groups)
    assert members >= 150


def test_dense_connections_go_through_junctions():
    """DenseNet's block: layer k takes every earlier output. Edges grow linearly, not
    quadratically, and every layer still reaches every later one."""
    run = run_of(DenseNet((12,), growth=4, init=8, num_classes=2), torch.randn(1, 3, 16, 16))
    h = graph_views.build_hierarchy(run.graph, run.forward.calls, "DenseNet")
    block = next(v for v in h.views if v.title.startswith("features.denseblock1"))
    layers = [
        n.id
        for n in sorted(
            (n for n in block.nodes if n.kind == "module"), key=lambda n: int(n.label[0].removeprefix("denselayer"))
        )
    ]
    assert len(layers) == 12
    assert len(block.edges) < 5 * len(layers)
    succ: dict[str, list[str]] = {}
    for a, b, _, _ in block.edges:
        succ.setdefault(a, []).append(b)

    def reaches(a, b):
        seen, todo = set(), [a]
        while todo:
            for nxt in succ.get(todo.pop(), []):
                if nxt == b:
                    return True
                if nxt not in seen and nxt.startswith("j"):  # only through junctions
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    assert all(reaches(a, b) for i, a in enumerate(layers) for b in layers[i + 1 :])


def test_module_views_mark_the_skip_path():
    run = run_of(ResNet18(), torch.randn(1, 3, 32, 32))
    h = graph_views.build_hierarchy(run.graph, run.forward.calls, "ResNet")
    block = next(v for v in h.views if v.title.startswith("layers.1.0 ·"))
    nodes = {n.id: n for n in block.nodes}
    skip_edges = [(nodes[a], nodes[b]) for a, b, _, skip in block.edges if skip]
    assert sorted((a.label[0], b.label[0]) for a, b in skip_edges) == [
        ("from layers.0", "shortcut"),
        ("shortcut", "Add"),
    ]


def test_module_view_connects_the_input():
    run = run_of(SmallCNN(), torch.randn(1, 1, 28, 28))
    root = graph_views.build_hierarchy(run.graph, run.forward.calls, "SmallCNN").views[0]
    inputs = [n.id for n in root.nodes if n.kind == "input"]
    assert len(inputs) == 1
    assert [(a, b) for a, b, _, _ in root.edges if a == inputs[0]], "the input feeds the first layer"


# --- the page ------------------------------------------------------------------------------


def test_the_svg_is_deterministic():
    def svgs():
        torch.manual_seed(3)
        report = nnviz_report.build_report(ResNet18(), torch.ones(1, 3, 16, 16))
        views = page_view(report.html)["assets"]["graph"]["views"]
        return {k: v["svg"] for k, v in views.items()}

    first, second = svgs(), svgs()
    assert {"root", "full"} <= set(first)
    assert first == second
    assert not re.search(r"\d{9,}", first["full"]), "no memory addresses in ids"


SVG_OF_A_DENSENET = """
import hashlib, json, sys, torch
from helpers import page_view
from zoo import DenseNet
import nnviz_report
torch.manual_seed(0)
report = nnviz_report.build_report(DenseNet((4,), growth=4, init=8, num_classes=2), torch.ones(1, 3, 16, 16))
views = page_view(report.html)["assets"]["graph"]["views"]
print(json.dumps({k: hashlib.sha256(v["svg"].encode()).hexdigest() for k, v in views.items()}))
"""


def test_the_svg_is_the_same_in_every_process():
    """String hashing differs between processes (PYTHONHASHSEED): no view may depend on the
    order a set of names iterates in (DenseNet's junctions did)."""
    import json
    import os
    import subprocess
    import sys

    from helpers import ROOT

    def hashes(seed: str) -> dict:
        env = dict(
            os.environ,
            PYTHONHASHSEED=seed,
            PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT / "examples"), str(ROOT)]),
        )
        done = subprocess.run(
            [sys.executable, "-c", SVG_OF_A_DENSENET], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = hashes("1")
    assert any(k != "root" and k != "full" for k in first) and first == hashes("2") == hashes("3")


HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "a\\Nb\\G",
    'q"uote',
    "</script><script>alert(2)</script>",
    "nul\x00byte",
    '\\"]; x -> y; //',
]


class Hostile(nn.Module):
    def __init__(self):
        super().__init__()
        for name in HOSTILE:
            self.add_module(name, nn.Sequential(nn.Linear(4, 4), nn.ReLU()))

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
    assert {"root", "full"} <= set(views), "dot drew the views"
    assert all(v["rendered"] for v in report.data["graph"]["views"])
    for view in views.values():
        svg = view["svg"]
        assert "<a " not in svg and "<script" not in svg.lower() and "onerror" not in svg.split(">")[0]
    every = "".join(v["svg"] for v in views.values())
    assert "&lt;img src=x onerror=alert(1)&gt;" in every, "the name is shown as text"
    assert "a\\Nb\\G" in every, "backslash escapes are not interpreted by dot"
    assert "nul\\x00byte" in every
    assert report.data["graph"]["residual_connections"] == len(HOSTILE)


def test_names_dot_cannot_encode_are_drawn_escaped():
    """A lone surrogate (a module name from non-UTF-8 bytes) would stop dot's input."""
    model = nn.Sequential()
    model.add_module("lone\udce9surrogate", nn.Linear(4, 4))
    run = run_of(model, torch.randn(2, 4))
    views = graph_views.build_hierarchy(run.graph, run.forward.calls, "Sequential").views
    (result,) = dot.render_svgs([dot_source.source(views[0], run.forward.calls, "x-")], 10)
    assert result.error is None and "lone\\udce9surrogate" in result.svg


def test_missing_dot_gives_a_report_with_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    report = nnviz_report.build_report(SmallCNN(), torch.randn(1, 1, 28, 28))
    assert report.data["graph"]["residual_connections"] == 0
    assert not any(v["rendered"] for v in report.data["graph"]["views"])
    assert "apt-get install graphviz" in report.html
    assert any("apt-get install graphviz" in w for w in report.warnings)
    assert report.data["graph"]["nodes"] > 0, "the structure is still captured"


def test_a_layout_over_its_budget_is_dropped_with_a_true_notice():
    report = nnviz_report.build_report(ResNet18(), torch.randn(1, 3, 16, 16), dot_timeout=0.001)
    views = report.data["graph"]["views"]
    assert all(v["rendered"] or "did not finish within" in v["error"] for v in views)
    assert not next(v for v in views if v["id"] == "full")["rendered"]
    modules_drawn = any(v["rendered"] for v in views if v["id"] != "full")
    assert ("no other view was drawn either" in report.html) is not modules_drawn
    assert "shown instead" not in report.html


def test_frozen_model_with_integer_input_has_no_graph_but_a_report():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2)).requires_grad_(False)
    report = nnviz_report.build_report(model, torch.randint(0, 10, (2, 3)))
    assert report.data["graph"]["nodes"] == 0
    assert "no autograd graph" in report.html


def test_a_failing_graph_capture_costs_only_the_graph(monkeypatch):
    import nnviz_report.capture.run as run_module

    def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(run_module, "capture_graph", broken)
    report = nnviz_report.build_report(SmallCNN(), torch.randn(1, 1, 28, 28))
    assert "could not be captured (RecursionError" in report.html
    assert report.data["feature_maps"] and report.data["activations"]["calls"]


def test_a_failing_graph_section_costs_only_the_graph(monkeypatch):
    from nnviz_report.sections import graph as graph_section

    monkeypatch.setattr(graph_section, "build_hierarchy", lambda *a: 1 / 0)
    report = nnviz_report.build_report(SmallCNN(), torch.randn(1, 1, 28, 28))
    assert "the graph could not be drawn (ZeroDivisionError" in report.html
    assert any("ZeroDivisionError" in w for w in report.warnings)


def test_stop_all_ends_a_running_layout_at_once():
    """An interrupt (Jupyter's stops Python only) must not wait for Graphviz's timeout."""
    edges = "".join(f"n{i} -> n{(i * 7919 + j) % 3000};" for i in range(3000) for j in (1, 2, 3, 5, 8))
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=dot.render_svg(f"digraph g {{{edges}}}", 60)))
    worker.start()
    time.sleep(0.5)
    started = time.perf_counter()
    dot.stop_all()
    worker.join(10)
    assert not worker.is_alive() and time.perf_counter() - started < 5
    assert result["r"].svg is None and result["r"].error == "dot was stopped"


def test_the_autograd_graph_and_its_saved_activations_are_freed():
    """Nothing of the forward pass may outlive build_report (a training loop calling it every
    epoch would grow), even with the garbage collector off."""
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


@pytest.mark.parametrize(
    "svg,safe",
    [
        (
            '<svg viewBox="0 0 1 1"><g id="n1" class="node"><title>n1</title><polygon points="1"/>'
            '<text x="1">x onload=1 &lt;script&gt; href=javascript:</text></g></svg>',
            True,
        ),
        ("<svg><script>alert(1)</script></svg>", False),
        ('<svg><a xlink:href="javascript:x"><text>t</text></a></svg>', False),
        ('<svg><g onload="x"></g></svg>', False),
        ('<svg><g\nonclick="x"></g></svg>', False),
        ('<svg><image href="http://example.com/x.png"/></svg>', False),
        ("<svg><foreignObject></foreignObject></svg>", False),
        ('<svg><g id="a" ONMOUSEOVER = "x"></g></svg>', False),
        ('<svg><text>a > b onclick=1</text><g id="n1"></g></svg>', True),
        ('<svg><text>a &gt; b</text><g class="x" data-href="y"></g></svg>', False),
    ],
)
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
    reference = re.compile(
        rf"<(?!/?(?:{_SVG_TAGS})[ \t\n\r\f/>])|<[^>]*{space}(?:on[\w.-]*|[\w.:-]*href){space}*=", re.I | re.A
    )
    parts = [
        "<g ",
        "<text ",
        "</g>",
        "<polygon ",
        ">",
        "/>",
        " ",
        "\n",
        "=",
        '"',
        "x",
        ' id="n1"',
        "font",
        " onload=",
        " ONCLICK =",
        " xlink:href=",
        " data-href=",
        " onload",
        " on",
        "href",
        "&lt;",
        "&gt;",
        "\tonclick=",
        "\u00a0onclick=",
        "a\u00a0href=",
        "\fhref =",
    ]
    rng = random.Random(0)
    outcomes = {True: 0, False: 0}
    for _ in range(5000):
        svg = "<svg>" + "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        svg += rng.choice(["", "", "", "<image/>", "<a>"]) + "</svg>"
        safe = reference.search(svg) is None
        outcomes[safe] += 1
        assert _safe_svg(svg) is safe, svg
    assert min(outcomes.values()) > 1000, outcomes  # both answers well exercised


def test_a_batch_that_runs_over_is_retried_view_by_view(monkeypatch):
    """One slow view must not cost the views laid out beside it."""
    from nnviz_report.sections import graph_layout

    run = run_of(ResNet18(), torch.randn(1, 3, 16, 16))
    views = graph_views.build_hierarchy(run.graph, run.forward.calls, "ResNet").views[:3]
    slow = views[1].id
    real = dot.render_svgs

    def batch_with_one_slow_view(sources, timeout, nice=0):
        if len(sources) > 1:
            return [dot.SvgResult(None, f"dot did not finish within {timeout:g} s", timeout)] * len(sources)
        if f"digraph {slow}" in sources[0].replace(".", "_"):
            return [dot.SvgResult(None, f"dot did not finish within {timeout:g} s", timeout)]
        return real(sources, timeout, nice)

    monkeypatch.setattr(dot, "render_svgs", batch_with_one_slow_view)
    results = graph_layout.lay_out([(v.id, v, f"g{i}-") for i, v in enumerate(views)], run.forward.calls, 5.0)
    assert [results[v.id].svg is not None for v in views] == [True, False, True]


def test_recurrent_weights_skip_the_full_view_at_once():
    """A weight used at every step tangles torchviz's full graph beyond any layout budget:
    the full view is not tried (no waiting for a timeout), the module views are drawn."""
    report = nnviz_report.build_report(UnrolledGRU(20), torch.randn(2, 5, 8))
    views = report.data["graph"]["views"]
    assert "full" not in {v["id"] for v in views} and all(v["rendered"] for v in views)
    assert "a parameter is used by 20 operations" in report.html
