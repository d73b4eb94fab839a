"""nnviz_report._compat: every private torch symbol the package uses exists on the pinned
torch, and each fallback (for a torch without it) still gives a working report."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

import nnviz_report
from helpers import page_view
from nnviz_report import _compat


class Net(nn.Module):
    """Module and functional activations, a BatchNorm (buffers), a residual addition."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.bn = nn.BatchNorm1d(6)
        self.act = nn.ReLU()

    def forward(self, x):
        return torch.tanh(self.act(self.bn(self.fc(x))) + x)


def _data(report) -> dict:
    data = dict(report.data)
    data.pop("environment")
    return data


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")
def test_the_private_symbols_exist_on_the_pinned_torch():
    from torch.distributed.fsdp._flat_param import FlatParameter
    from torch.overrides import _pop_mode_temporarily

    assert _compat._pop_mode_temporarily is _pop_mode_temporarily
    assert callable(torch._C._len_torch_function_stack)
    for op in _compat.FOREACH_OPS:
        assert _compat._foreach[op] is getattr(torch, f"_foreach_{op}"), op
    assert _compat.HAS_VERSION and _compat.HAS_VIEWS and _compat.HAS_SLOTS
    assert _compat.CHANNELS_FIRST == (
        nn.modules.conv._ConvNd,
        nn.modules.pooling._MaxPoolNd,
        nn.modules.pooling._AvgPoolNd,
        nn.modules.batchnorm._BatchNorm,
        nn.modules.pooling._AdaptiveAvgPoolNd,
    )
    x = torch.ones(3, requires_grad=True)
    y = (x * 2).view(3, 1)
    assert _compat.sequence_nr(y.grad_fn) >= 0 and _compat.sequence_nr(y.grad_fn.next_functions[0][0]) >= 0
    assert _compat.view_base(y) is not None and _compat.view_base(x) is None
    assert _compat.version(x) == 0
    assert _compat._functorch_level is torch._C._functorch.maybe_current_level
    summed = y + torch.ones(1, requires_grad=True)
    assert _compat.output_numel(summed.grad_fn, 0) == 3
    assert [_compat.output_numel(f, nr) for f, nr in summed.grad_fn.next_functions] == [3, 1]
    assert not _compat.in_functorch_transform()
    assert torch.func.vmap(lambda t: torch.tensor(_compat.in_functorch_transform()) + t * 0)(torch.zeros(2)).all()
    assert _compat.writes_first_argument(torch.ops.aten.add_.Tensor) is True
    assert _compat.writes_first_argument(torch.ops.aten.add.Tensor) is False
    assert _compat.writes_first_argument(torch.add) is None
    linear = nn.Linear(2, 2)
    assert [n for n, _ in _compat.parameter_slots(linear)] == ["weight", "bias"]
    assert {"_forward_hooks", "_forward_pre_hooks", "_backward_hooks"} <= {n for n, _ in _compat.hook_dicts(linear)}
    assert _compat.compiled_module(torch.compile(linear)) is linear
    assert callable(dist.distributed_c10d._get_default_store)
    assert "_fqns" in FlatParameter.__annotations__
    controls = _compat.thread_controls()  # this CPU build has OpenMP and MKL
    assert controls is not None and all(f is not None for f in controls)


def test_every_fallback_together_gives_the_same_report(monkeypatch):
    """Without the foreach ops, the mode stack, version counters, module slots, the private
    layer bases and the kernel-thread controls, the report is the same."""
    torch.manual_seed(0)
    model, x = Net(), torch.randn(4, 6)
    expected = _data(nnviz_report.build_report(model, x, graph=False))

    monkeypatch.setattr(_compat, "_pop_mode_temporarily", None)
    for op in _compat.FOREACH_OPS:
        monkeypatch.setattr(_compat, f"foreach_{op}", _compat.one_by_one(op))
    monkeypatch.setattr(_compat, "HAS_VERSION", False)
    monkeypatch.setattr(_compat, "HAS_SLOTS", False)
    monkeypatch.setattr(_compat, "CHANNELS_FIRST", _compat.channels_first_classes([(nn.modules.conv, "_Missing")]))
    monkeypatch.setattr(_compat, "thread_controls", lambda: None)
    before = [(n, p) for n, p in model.named_parameters()]
    assert _data(nnviz_report.build_report(model, x, graph=False)) == expected
    assert [(n, p) for n, p in model.named_parameters()] == before


def test_the_foreach_fallback_computes_what_torch_does():
    a = [torch.randn(5), torch.randn(3)]
    b = [t.clone() for t in a]
    for op, values in (("sub_", [0.5, -1.0]), ("mul_", [2.0, 3.0]), ("clamp_min_", 0), ("floor_", None)):
        args = () if values is None else (values,)
        getattr(torch, f"_foreach_{op}")(a, *args)
        _compat.one_by_one(op)(b, *args)
        assert all(torch.equal(p, q) for p, q in zip(a, b)), op
    out = _compat.one_by_one("sub")(b, [1.0, 2.0])
    assert all(torch.equal(o, t - v) for o, t, v in zip(out, b, [1.0, 2.0]))


def test_without_module_slots_a_swapped_parameter_and_buffer_are_put_back(monkeypatch):
    monkeypatch.setattr(_compat, "HAS_SLOTS", False)

    class Swaps(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))
            self.register_buffer("b", torch.zeros(3))

        def forward(self, x):
            self.w = nn.Parameter(torch.full((3,), 2.0))
            self.b = torch.ones(3)
            return x * self.w + self.b

    model = Swaps()
    w, b = model.w, model.b
    nnviz_report.build_report(model, torch.ones(2, 3), graph=False)
    assert model.w is w and model.b is b
    assert torch.equal(model.w, torch.ones(3)) and torch.equal(model.b, torch.zeros(3))


def test_the_channel_layout_fallback_lists_the_public_classes():
    public = _compat.channels_first_classes([(nn.modules.conv, "_Missing")])
    for layer in (nn.Conv1d(2, 2, 1), nn.ConvTranspose2d(2, 2, 1), nn.MaxPool1d(2), nn.BatchNorm1d(2)):
        assert isinstance(layer, public) and isinstance(layer, _compat.CHANNELS_FIRST)
    assert not isinstance(nn.Linear(2, 2), public)


def test_the_other_fallbacks(monkeypatch):
    assert _compat.sequence_nr(object()) == -1  # no _sequence_nr
    assert _compat.compiled_module(nn.Linear(2, 2)) is None
    assert tuple(_compat.flat_parameter_names(torch.ones(1))) == ()
    monkeypatch.setattr(_compat, "_OP_OVERLOAD", ())
    assert _compat.writes_first_argument(torch.ops.aten.add_.Tensor) is None  # the guard goes by names
    monkeypatch.setattr(_compat, "HAS_VIEWS", False)
    assert _compat.view_base(torch.ones(3, requires_grad=True).view(3, 1)) is None
    monkeypatch.setattr(_compat, "HAS_VERSION", False)
    assert _compat.version(torch.ones(1)) is None
    monkeypatch.delattr(dist.distributed_c10d, "_get_default_store")
    assert _compat.default_store() is None


def test_without_view_information_the_graph_has_no_view_nodes(monkeypatch):
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 6)

        def forward(self, x):
            return self.fc(x).view(2, 2, 3)

    model, x = Flat(), torch.randn(2, 4)
    kinds = [n["kind"] for n in _graph_nodes(nnviz_report.build_report(model, x))]
    assert "view" in kinds
    monkeypatch.setattr(_compat, "HAS_VIEWS", False)
    report = nnviz_report.build_report(model, x)
    assert "view" not in [n["kind"] for n in _graph_nodes(report)] and report.data["graph"]["nodes"] > 0


def _graph_nodes(report) -> list[dict]:
    return list(page_view(report.html)["assets"]["graph"]["views"]["full"]["info"].values())
