"""The report never changes the user's model, also when the forward pass fails."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import nnviz_report
from helpers import DEVICES, assert_same_state, state_of
from models import ResNet18, TransformerClassifier
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


class MomentumEncoder(nn.Module):
    """MoCo-style: the forward pass moves a key encoder towards the query encoder, clamps a
    weight, rescales a bias in place and replaces a parameter object."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(4, 4)
        self.k = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        for pq, pk in zip(self.q.parameters(), self.k.parameters()):
            pk.data = pk.data * 0.9 + pq.data * 0.1
        self.q.weight.data.clamp_(-0.05, 0.05)
        with torch.no_grad():
            self.q.bias.mul_(2)
            self.k.bias[0] = 7.0
        torch.nn.init.uniform_(tensor=self.k.weight.data)
        self.scale = nn.Parameter(self.scale * 3)
        return self.q(x) + self.k(x) * self.scale


def test_parameters_the_forward_pass_writes_are_put_back():
    model = MomentumEncoder()
    objects = {n: p for n, p in model.named_parameters()}
    before = state_of(model)
    nnviz_report.build_report(model, torch.randn(3, 4), graph=False)
    assert_same_state(before, state_of(model))
    assert {n: p for n, p in model.named_parameters()} == objects, "the same Parameter objects"
    assert all(p is objects[n] for n, p in model.named_parameters())


def test_gradients_a_backward_pass_inside_forward_sets_are_put_back():
    class SelfTraining(nn.Module):  # e.g. an energy model that differentiates in forward
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            self.fc(x).pow(2).sum().backward()
            return self.head(x)

    model = SelfTraining()
    model.head.weight.grad = torch.full_like(model.head.weight, 3.0)
    before = state_of(model)
    nnviz_report.build_report(model, torch.randn(3, 4), graph=False)
    assert_same_state(before, state_of(model))
    assert model.fc.weight.grad is None


class Rendezvous(nn.Module):
    """The report's forward pass waits here while another thread trains the model."""

    def __init__(self, step):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.step = step  # what the other thread does, while the report's forward pass waits
        self.waiting = True

    def forward(self, x):
        if self.waiting and threading.current_thread() is threading.main_thread():
            self.waiting = False
            errors = []
            other = threading.Thread(target=lambda: self.step(errors))
            other.start()
            other.join(10)
            assert not errors, errors
        return self.fc(x).relu()


@pytest.mark.parametrize("what", ["forward+backward+step", "step"])
def test_a_thread_training_the_model_meanwhile_is_refused_not_undone(what):
    model = Rendezvous(None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    drawn = []

    def train(errors):
        try:
            loss = model(torch.randn(8, 4)).sum() if "forward" in what else model.fc.weight.sum()
            loss.backward()
            opt.step()
            drawn.append(torch.rand(16))
            trained.update({n: p.detach().clone() for n, p in model.named_parameters()})
        except Exception as exc:  # noqa: BLE001 - the test reports what the training thread raised
            errors.append(repr(exc))

    trained = {}
    model.step = train
    model.train()
    with pytest.raises(NNVizError, match="another thread") as err:
        nnviz_report.build_report(model, torch.randn(2, 4), graph=False)
    assert "\n" not in str(err.value)
    assert ("module calls from another thread" in str(err.value)) == ("forward" in what)
    assert model.training and model.fc.training, "modes put back"
    assert not model.fc._forward_hooks and not model.fc._forward_pre_hooks, "hooks removed"
    for n, p in model.named_parameters():  # the other thread's step is not rolled back
        assert torch.equal(p, trained[n]), n
    assert model.fc.weight.grad is not None
    assert not torch.equal(torch.rand(16), drawn[0]), "the other thread's random numbers are not drawn again"


def test_the_report_does_not_call_into_another_threads_forward():
    """Hooks are on the shared model: another thread's module calls must not reach the
    report's recorder (before: its frames mixed with the report's, a raw bincount error)."""
    model = Rendezvous(None)
    outputs = []
    model.step = lambda errors: outputs.append(model(torch.randn(5, 4)))
    with pytest.raises(NNVizError, match="2 module calls from another thread"):
        nnviz_report.build_report(model, torch.randn(2, 4), graph=False)
    assert outputs[0].shape == (5, 4)


def test_a_second_build_of_the_same_model_meanwhile_is_refused_before_it_touches_it():
    """Two builds of one model at once: the second recorded the first's hooks and eval mode
    as the model's own and put them back after the first had removed them."""
    shared = nn.Linear(4, 4)
    model = Rendezvous(None)
    model.fc = shared
    model.train()
    model.fc.register_full_backward_hook(lambda module, grad_in, grad_out: None)
    other_model = nn.Sequential(nn.Linear(4, 4), shared)  # shares a module with the first
    refused = []

    def second_build(errors):
        for m in (model, other_model):
            modes = [mm.training for mm in m.modules()]
            hooks = [len(mm._forward_hooks) for mm in m.modules()]
            try:
                nnviz_report.build_report(m, torch.randn(2, 4), graph=False)
                errors.append(f"built {type(m).__name__} during the other build")
            except NNVizError as exc:
                refused.append(str(exc))
            if [mm.training for mm in m.modules()] != modes or [len(mm._forward_hooks) for mm in m.modules()] != hooks:
                errors.append("the refused build changed modes or hooks")

    model.step = second_build
    before = state_of(model)
    report = nnviz_report.build_report(model, torch.randn(2, 4), graph=False)
    assert [e["name"] for e in report.data["feature_maps"]] == ["fc"]
    assert (
        refused
        == [
            "another report of this model (or of a module it shares) is being built right now, in another "
            "thread; build one report of a model at a time (this one left the model untouched)"
        ]
        * 2
    )
    assert_same_state(before, state_of(model))
    assert model.training and model.fc.training
    assert not model.fc._forward_hooks and not model.fc._forward_pre_hooks and len(model.fc._backward_hooks) == 1
    nnviz_report.build_report(other_model, torch.randn(2, 4), graph=False)  # free again afterwards


def test_threads_started_during_a_build_keep_torchs_thread_count():
    """The build runs its own kernels on one thread each, without torch.set_num_threads,
    which is process-wide: a thread started meanwhile kept 1 thread for its whole life."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen: set[int] = set()
    stop = threading.Event()

    def start_threads():
        while not stop.is_set():
            t = threading.Thread(target=lambda: seen.add(torch.get_num_threads()))
            t.start()
            t.join()

    spawner = threading.Thread(target=start_threads)
    spawner.start()
    try:
        for _ in range(3):
            nnviz_report.build_report(ResNet18(), torch.randn(2, 3, 32, 32), graph=False)
    finally:
        stop.set()
        spawner.join()
        torch.set_num_threads(threads)
    assert seen == {2}


def test_a_nan_buffer_is_not_rewritten():
    """Buffers are compared bit for bit: a NaN running statistic (a diverged run) is not
    'changed', so it is not written back, which would bump its version counter and fail
    a backward pass that saved it."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    with torch.no_grad():
        model[1].running_var[0] = float("nan")
    loss = model(torch.randn(3, 4)).sum()  # eval-mode batch norm saves running_var for backward
    nnviz_report.build_report(model, torch.randn(3, 4), graph=False)
    loss.backward()
    assert torch.isnan(model[1].running_var[0])


@pytest.mark.parametrize("bag", [False, True])
def test_an_embedding_with_max_norm_is_put_back(bag):
    """embedding(max_norm=...) renormalises the rows it looks up, in place, from inside the
    function: the report copies the weight first and puts it back."""
    torch.manual_seed(0)
    emb = nn.EmbeddingBag(10, 4, max_norm=0.5) if bag else nn.Embedding(10, 4, max_norm=0.5)
    model = nn.Sequential(emb, nn.Linear(4, 2))
    with torch.no_grad():
        emb.weight.mul_(5)  # rows well above max_norm: the lookup would shrink them
    before = state_of(model)
    report = nnviz_report.build_report(model, torch.randint(0, 10, (3, 4)))
    assert report.data["feature_maps"]
    assert_same_state(before, state_of(model))


def test_hooks_and_buffers_the_models_own_forward_installs_once_stay():
    """transformers installs output-capturing hooks on the first forward pass and sets a flag
    that says so; removing the hooks but not the flag broke every later forward pass."""

    class CapturesOnce(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.captured = []

        def forward(self, x):
            if not getattr(self, "_installed", False):
                self.fc.register_forward_hook(lambda module, args, out: self.captured.append(out))
                self.register_buffer("cache", torch.ones(1), persistent=False)
                self._installed = True
            self.captured.clear()
            out = self.fc(x) * self.cache
            assert len(self.captured) == 1, "the model's own hook ran"
            return out

    model = CapturesOnce()
    user_hook = model.fc.register_forward_pre_hook(lambda module, args: None)
    report = nnviz_report.build_report(model, torch.randn(2, 4))
    assert [e["name"] for e in report.data["feature_maps"]] == ["fc"]
    assert list(model.fc._forward_pre_hooks) == [user_hook.id], "the capture's hooks are gone, the user's stay"
    assert len(model.fc._forward_hooks) == 1 and hasattr(model, "cache")
    model(torch.randn(3, 4))  # the model works as after any forward pass of its own


def test_a_build_from_inside_the_models_own_forward_says_so():
    class Reentrant(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            nnviz_report.build_report(self, x, graph=False)
            return self.fc(x)

    model = Reentrant()
    before = state_of(model)
    with pytest.raises(NNVizError, match="by this thread: build_report was called from inside the model's own forward"):
        nnviz_report.build_report(model, torch.randn(2, 4), graph=False)
    assert_same_state(before, state_of(model))
