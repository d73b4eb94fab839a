"""Checkpoint files are data: every common layout loads, code never runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from models import TwoLayerNet
from safetensors.torch import save_file

from nnviz_report import NNVizError
from nnviz_report.capture.snapshot import load_checkpoint, load_into, normalise_state


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return TwoLayerNet().state_dict()


@pytest.mark.parametrize("layout", [
    lambda s: s,
    lambda s: {"state_dict": s, "epoch": 3},
    lambda s: {"model_state_dict": s, "optimizer_state_dict": {"state": {}, "param_groups": []}},
    lambda s: {"model": s, "step": 10},
    lambda s: {"module." + k: v for k, v in s.items()},
    lambda s: {"_orig_mod." + k: v for k, v in s.items()},
    lambda s: {"state_dict": {"module._orig_mod." + k: v for k, v in s.items()}},
], ids=["bare", "state_dict", "model_state_dict", "model", "ddp", "compile", "wrapped-ddp-compile"])
def test_pickle_layouts(tmp_path, layout):
    state = _state()
    path = tmp_path / "ckpt.pt"
    torch.save(layout(state), path)
    snap = load_checkpoint(path)
    assert snap.tensors.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(snap.tensors[k], v), k
    assert snap.label == "ckpt" and snap.source == str(path)


def test_safetensors(tmp_path):
    state = _state()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    snap = load_checkpoint(path)
    assert all(torch.equal(snap.tensors[k], v) for k, v in state.items())
    # Recognised by content, too.
    renamed = tmp_path / "weights.bin"
    os.replace(path, renamed)
    assert load_checkpoint(renamed).tensors.keys() == state.keys()


def test_tensors_saved_on_cuda_load_on_a_cpu_only_machine(tmp_path):
    """The file says its storages live on cuda:0 (as a checkpoint saved on a GPU does)."""
    state = _state()
    path = tmp_path / "gpu.pt"
    registry = torch.serialization._package_registry
    entry = (1000, lambda storage: "cuda:0" if storage.device.type == "cpu" else None, lambda obj, loc: None)
    registry.insert(0, entry)
    try:
        torch.save(state, path)
    finally:
        registry.remove(entry)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            torch.load(path, weights_only=True)  # what a plain load does on this machine
    snap = load_checkpoint(path)
    assert all(snap.tensors[k].device.type == "cpu" and torch.equal(snap.tensors[k], v) for k, v in state.items())


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, save in (
        ("zip.pt", lambda obj, p: torch.save(obj, p)),
        ("legacy.pt", lambda obj, p: p.write_bytes(pickle.dumps({"x": obj["x"]}, protocol=2))),
    ):
        path = tmp_path / name
        save({"fc1.weight": torch.zeros(2), "x": Payload()}, path)
        with pytest.raises(NNVizError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert "refused to load" in message and "would run code" in message
        assert "posix.system" in message or "os.system" in message, "names what it wanted to call"
        assert "\n" not in message
        assert not (tmp_path / "PWNED").exists()


def test_zip_checkpoint_with_a_custom_class_is_refused(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"cfg": Path("x"), "w": torch.zeros(1)}, path)
    with pytest.raises(NNVizError, match="refused to load .*run code"):
        load_checkpoint(path)


@pytest.mark.parametrize("content,match", [
    (None, "not found"),
    (b"", "empty"),
    (b"garbage that is not a checkpoint", "not a PyTorch checkpoint or is corrupt"),
])
def test_missing_empty_corrupt(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(NNVizError, match=match):
        load_checkpoint(path)


def test_truncated_zip(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save(_state(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(NNVizError, match="corrupt"):
        load_checkpoint(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(NNVizError, match="holds no tensors .*epoch, lr"):
        load_checkpoint(path)


def test_load_into_names_missing_unexpected_and_mismatched_keys(tmp_path):
    state = _state()
    state["extra.weight"] = torch.zeros(1)
    del state["fc2.bias"]
    state["fc1.weight"] = torch.zeros(5, 5)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(NNVizError) as err:
        load_into(TwoLayerNet(), load_checkpoint(path))
    message = str(err.value)
    assert "missing 1 (fc2.bias)" in message
    assert "unexpected 1 (extra.weight)" in message
    assert "fc1.weight: file (5, 5) vs model (32, 20)" in message


def test_load_into_loads_exactly(tmp_path):
    state = _state(seed=1)
    path = tmp_path / "trained.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    model = TwoLayerNet()
    load_into(model, load_checkpoint(path))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_normalise_keeps_a_real_submodule_named_module():
    state = {"module.weight": torch.zeros(1), "head.bias": torch.zeros(1)}
    assert normalise_state(state, "x").keys() == state.keys()
