"""Checkpoint files are data: every common layout loads, code never runs."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import nnviz_report
from models import TwoLayerNet
from nnviz_report import NNVizError
from nnviz_report.capture.snapshot import load_checkpoint, load_into, normalise_state


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return TwoLayerNet().state_dict()


@pytest.mark.parametrize(
    "layout",
    [
        lambda s: s,
        lambda s: {"state_dict": s, "epoch": 3},
        lambda s: {"model_state_dict": s, "optimizer_state_dict": {"state": {}, "param_groups": []}},
        lambda s: {"model": s, "step": 10},
        lambda s: {"module." + k: v for k, v in s.items()},
        lambda s: {"_orig_mod." + k: v for k, v in s.items()},
        lambda s: {"state_dict": {"module._orig_mod." + k: v for k, v in s.items()}},
    ],
    ids=["bare", "state_dict", "model_state_dict", "model", "ddp", "compile", "wrapped-ddp-compile"],
)
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
    with pytest.raises(NNVizError, match=r"refused to load .*run code"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "not found"),
        (b"", "empty"),
        (b"garbage that is not a checkpoint", "not a PyTorch checkpoint or is corrupt"),
    ],
)
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
    with pytest.raises(NNVizError, match=r"holds no tensors .*epoch, lr"):
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


# -- formats beyond one file: Hugging Face shards, torch.distributed.checkpoint, Lightning --------


def save_hf_shards(model: torch.nn.Module, folder: Path, max_shard_bytes: int, safetensors: bool = True) -> dict:
    """What transformers' save_pretrained(max_shard_size=...) writes, by hand: safetensors
    shards filled in order up to the size, model.safetensors.index.json naming each
    tensor's shard, tied weights saved once (under their first name); or, with
    ``safetensors=False`` (safe_serialization=False), torch.save shards and
    pytorch_model.bin.index.json."""
    folder.mkdir(parents=True, exist_ok=True)
    seen, shards, current, size = set(), [], {}, 0
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in seen:
            continue  # a tied twin: saved once
        seen.add(id(t))
        n = t.numel() * t.element_size()
        if current and size + n > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t.detach().clone().contiguous()
        size += n
    shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        if safetensors:
            file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(folder / file), metadata={"format": "pt"})
        else:
            file = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
            torch.save(shard, folder / file)
        weight_map.update({k: file for k in shard})
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for s in shards for t in s.values())},
        "weight_map": weight_map,
    }
    name = "model.safetensors.index.json" if safetensors else "pytorch_model.bin.index.json"
    (folder / name).write_text(json.dumps(index))
    return index


def _report_params(report) -> dict:
    return {p["name"]: p for p in report.data["parameters"]}


def _trained_llama():
    from models import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM()
    before = nnviz_report.snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model, before


TOKENS = torch.arange(12).reshape(2, 6)


@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "bin"])
def test_hugging_face_sharded_folder_with_tied_weights(tmp_path, safetensors):
    from models import LlamaForCausalLM

    torch.manual_seed(0)
    untrained = LlamaForCausalLM()
    index = save_hf_shards(untrained, tmp_path / "hf", max_shard_bytes=20_000, safetensors=safetensors)
    assert len(set(index["weight_map"].values())) > 2 and "lm_head.weight" not in index["weight_map"]
    model, snap = _trained_llama()
    expected = _report_params(nnviz_report.build_report(model, TOKENS, before=snap, graph=False))
    name = "model.safetensors.index.json" if safetensors else "pytorch_model.bin.index.json"
    for before in (tmp_path / "hf", tmp_path / "hf" / name):
        report = nnviz_report.build_report(model, TOKENS, before=before, graph=False)
        params = _report_params(report)
        assert params.keys() == expected.keys()
        for name, p in params.items():
            assert p["before"] == expected[name]["before"] and p["relative_change"] == expected[name]["relative_change"]
        assert not report.warnings, report.warnings
        assert "saves tied weights once: lm_head.weight = model.embed_tokens.weight" in report.html
        assert "missing 1 (lm_head.weight)" not in report.html and "does not cover" not in report.html


def test_hugging_face_folder_loads_as_trained_weights_with_tied_ones(tmp_path):
    from models import LlamaForCausalLM

    model, _ = _trained_llama()
    save_hf_shards(model, tmp_path / "hf", max_shard_bytes=30_000)
    fresh = LlamaForCausalLM()
    load_into(fresh, load_checkpoint(tmp_path / "hf"))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert fresh.lm_head.weight is fresh.model.embed_tokens.weight


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/hostname", "sub/model.safetensors", "..", ""])
def test_shard_names_must_stay_in_the_folder(tmp_path, shard):
    folder = tmp_path / "hf"
    (folder / "sub").mkdir(parents=True)
    state = {k: v.contiguous() for k, v in _state().items()}
    save_file(state, str(tmp_path / "outside.safetensors"))
    save_file(state, str(folder / "sub" / "model.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: shard for k in state}}))
    with pytest.raises(NNVizError, match=r"not a file in .*shards must sit beside their index"):
        load_checkpoint(folder)


def test_a_hugging_face_cache_snapshot_with_linked_files_loads(tmp_path):
    """The hub cache keeps files in blobs/ and links them from snapshots/<revision>/."""
    from models import LlamaForCausalLM

    model, _ = _trained_llama()
    save_hf_shards(model, tmp_path / "saved", max_shard_bytes=30_000)
    repo = tmp_path / "models--org--tiny-llama"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for i, file in enumerate(sorted((tmp_path / "saved").iterdir())):
        os.replace(file, repo / "blobs" / f"blob{i}")
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", f"blob{i}"))
    fresh = LlamaForCausalLM()
    load_into(fresh, load_checkpoint(snapshot))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_index_errors_are_one_line(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    index = folder / "model.safetensors.index.json"
    for text, match in (
        ("{", "not a JSON checkpoint index"),
        ('{"weights": {}}', "no weight_map"),
        ('{"weight_map": {"a": "gone.safetensors"}}', "names shard gone.safetensors, which is missing"),
    ):
        index.write_text(text)
        with pytest.raises(NNVizError, match=match):
            load_checkpoint(folder)
    save_file({"b": torch.zeros(2)}, str(folder / "one.safetensors"))
    index.write_text('{"weight_map": {"a": "one.safetensors"}}')
    with pytest.raises(NNVizError, match=r"puts a in one.safetensors, which does not hold it"):
        load_checkpoint(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NNVizError, match=r"holds none of model.safetensors.index.json"):
        load_checkpoint(tmp_path / "empty")


def test_distributed_checkpoint_folder_needs_trust_for_its_pickled_metadata(tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp

    model, snap = _trained_llama()
    untrained = {k: v.clone() for k, v in snap.tensors.items()}
    with pytest.warns(UserWarning):  # "torch.distributed is disabled ...": saved from one process
        dcp.save({"model": untrained}, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    # The metadata file is a pickle: reading it must not be the default.
    read = []
    real_load = pickle.load
    monkeypatch.setattr(pickle, "load", lambda *a, **k: read.append(1) or real_load(*a, **k))
    with pytest.raises(NNVizError) as err:
        nnviz_report.build_report(model, TOKENS, before=tmp_path / "dcp", graph=False)
    assert "--trust-checkpoint-metadata" in str(err.value) and "trust_metadata=True" in str(err.value)
    assert not read, "the pickle was read without trust"
    report = nnviz_report.build_report(model, TOKENS, before=tmp_path / "dcp", graph=False, trust_metadata=True)
    assert read
    expected = _report_params(nnviz_report.build_report(model, TOKENS, before=snap, graph=False))
    assert {k: v["relative_change"] for k, v in _report_params(report).items()} == {
        k: v["relative_change"] for k, v in expected.items()
    }
    # A data file gone: one line naming it (torch raises a BaseException, past `except Exception`).
    [data] = (tmp_path / "dcp").glob("*.distcp")
    data.unlink()
    with pytest.raises(NNVizError, match=rf"No such file or directory: .*{data.name}'\); a file of the checkpoint is"):
        nnviz_report.build_report(model, TOKENS, before=tmp_path / "dcp", graph=False, trust_metadata=True)


def test_asking_whether_a_checkpoint_holds_a_name_reads_no_tensor(tmp_path, monkeypatch):
    """Mapping's 'in' reads the value: a .pt with 600 tensors was loaded 2,402 times (72 s)."""
    from nnviz_report.capture import pickled

    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(50)])
    torch.save(model.state_dict(), tmp_path / "many.pt")
    loads = []
    real = pickled._load_pickle
    monkeypatch.setattr(pickled, "_load_pickle", lambda path: loads.append(path) or real(path))
    report = nnviz_report.build_report(model, torch.randn(1, 2), before=tmp_path / "many.pt", graph=False)
    assert len(report.data["parameters"]) == 100 and len(loads) <= 2


def lightning_checkpoint(state: dict, hyper_parameters: dict) -> dict:
    """The layout Lightning's Trainer.save_checkpoint writes (lightning 2.x): the
    LightningModule's state_dict (its network under the attribute's name) and extras."""
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.5.1",
        "state_dict": {f"model.{k}": v for k, v in state.items()} | {"loss_fn.pos_weight": torch.ones(1)},
        "loops": {"fit_loop": {"state_dict": {}}},
        "callbacks": {},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1, 2, 3]}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hyper_parameters,
    }


def test_lightning_checkpoint_with_plain_hyper_parameters(tmp_path):
    from models import TwoLayerNet

    state = _state()
    torch.save(lightning_checkpoint(state, {"lr": 0.1, "hidden": 32}), tmp_path / "epoch=3-step=120.ckpt")
    model = TwoLayerNet()
    report = nnviz_report.build_report(
        model, torch.randn(2, 20), before=tmp_path / "epoch=3-step=120.ckpt", graph=False
    )
    fc1 = _report_params(report)["fc1.bias"]
    assert np.array_equal(np.array(fc1["bias_before"], dtype=np.float32), state["fc1.bias"].numpy())
    assert "unexpected 1 (loss_fn.pos_weight)" in report.html
    assert not report.warnings


def test_lightning_hyper_parameters_that_need_code_are_explained(tmp_path):
    import argparse

    torch.save(lightning_checkpoint(_state(), {"args": argparse.Namespace(lr=0.1)}), tmp_path / "last.ckpt")
    with pytest.raises(NNVizError) as err:
        load_checkpoint(tmp_path / "last.ckpt")
    message = str(err.value)
    assert "Lightning checkpoint" in message and "argparse.Namespace" in message
    assert "save_hyperparameters(ignore=" in message and "['state_dict']" in message and "\n" not in message


# -- unreadable files, odd names ----------------------------------------------------------------


def test_every_damaged_file_is_one_line_error_and_runs_no_code(tmp_path, monkeypatch):
    """Random damage to real checkpoints of every format (and text files): each either
    loads, with every tensor readable, or fails with one NNVizError line; the payload of
    a malicious pickle never runs, however it is cut."""
    import random

    monkeypatch.chdir(tmp_path)
    state = _state()
    seeds = {}
    for name, write in (
        ("zip.pt", lambda p: torch.save(state, p)),
        ("legacy.pt", lambda p: torch.save(state, p, _use_new_zipfile_serialization=False)),
        ("weights.safetensors", lambda p: save_file(state, str(p))),
        ("payload.pt", lambda p: torch.save({"fc1.weight": torch.zeros(2), "x": Payload()}, p)),
        ("payload-legacy.pt", lambda p: p.write_bytes(pickle.dumps({"x": Payload()}, protocol=2))),
        ("notes.pt", lambda p: p.write_text("epoch 3: loss 0.25\n" * 20)),
        ("index.json", lambda p: p.write_text(json.dumps({"weight_map": {"fc1.weight": "weights.safetensors"}}))),
    ):
        write(tmp_path / name)
        seeds[name] = (tmp_path / name).read_bytes()
    rng = random.Random(0)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(600):
        name = rng.choice(sorted(seeds))
        data = bytearray(seeds[name])
        how = rng.choice(("flip", "flips", "cut", "insert"))
        if how == "cut":
            data = data[: rng.randrange(1, len(data))]
        elif how == "insert":
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        else:
            for _ in range(rng.randint(1, 4) if how == "flip" else rng.randint(5, 60)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / (f"f{i}.model.safetensors.index.json" if name == "index.json" else f"f{i}-{name}")
        path.write_bytes(bytes(data))
        try:
            snap = load_checkpoint(path)
            dict(snap.tensors.items())
            outcomes["loaded"] += 1
        except NNVizError as exc:
            assert "\n" not in str(exc), str(exc)
            outcomes["refused"] += 1
        path.unlink()
    assert not (tmp_path / "PWNED").exists()
    assert outcomes["loaded"] and outcomes["refused"] > 300, outcomes


def test_a_file_name_with_a_newline_stays_one_line(tmp_path):
    path = tmp_path / "epoch\n3.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(NNVizError) as err:
        load_checkpoint(path)
    assert "epoch\\n3.pt" in str(err.value) and "\n" not in str(err.value)


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("epoch 3: loss 0.25\n")
    with pytest.raises(NNVizError, match="not a PyTorch checkpoint or is corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors", "folder"])
def test_a_file_name_that_is_not_utf8_loads(tmp_path, kind):
    state = _state()
    raw = os.fsencode(tmp_path) + b"/epoch-\xff\xfe"
    path = Path(os.fsdecode(raw + (b".safetensors" if kind == "safetensors" else b".pt")))
    if kind == "zip":
        torch.save(state, path)
    elif kind == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    elif kind == "safetensors":
        save_file(state, str(tmp_path / "x.safetensors"))
        os.replace(tmp_path / "x.safetensors", path)
    else:
        path = Path(os.fsdecode(raw))
        path.mkdir()
        save_file(state, str(path / "model.safetensors"))
    snap = load_checkpoint(path)
    got = dict(snap.tensors.items())
    assert all(torch.equal(got[k], v) for k, v in state.items())
    assert "\\xff\\xfe" in snap.source and snap.source.encode("utf-8")  # printable, and fits in a page
    from models import TwoLayerNet

    report = nnviz_report.build_report(TwoLayerNet(), torch.randn(2, 20), before=path, graph=False)
    assert "epoch-\\xff\\xfe" in report.html


def test_names_read_from_an_index_are_printed_as_one_plain_line(tmp_path, capsys):
    """A tensor or shard name with a newline or a terminal escape sequence (an untrusted
    index file) is shown escaped: the command line's error stays one line, no escape
    reaches the terminal."""
    from nnviz_report.cli import main

    folder = tmp_path / "hf"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in _state().items()}
    save_file(state, str(folder / "model.safetensors"))
    hostile = "fc1.weight\n\x1b[31mred"
    weight_map = {k: "model.safetensors" for k in state} | {hostile: "model.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    code = main(
        [
            "build",
            "examples/models.py:TwoLayerNet",
            "--input-shape",
            "2,20",
            "--no-graph",
            "--before",
            str(folder),
            "-o",
            str(tmp_path / "r.html"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "\x1b" not in err
    assert "fc1.weight\\n\\x1b[31mred" in err


def test_a_bin_shard_whose_keys_all_share_a_prefix_keeps_them(tmp_path):
    """A real submodule called ``module`` whose tensors all land in one .bin shard: the
    ``module.`` prefix is a DDP wrapper's only when every name of the checkpoint has it."""
    from torch import nn

    model = nn.Sequential()
    model.add_module("module", nn.Linear(3, 3))
    model.add_module("head", nn.Linear(3, 2))
    state = model.state_dict()
    folder = tmp_path / "hf"
    folder.mkdir()
    torch.save({k: v for k, v in state.items() if k.startswith("module.")}, folder / "a.bin")
    torch.save({k: v for k, v in state.items() if k.startswith("head.")}, folder / "b.bin")
    weight_map = {k: "a.bin" if k.startswith("module.") else "b.bin" for k in state}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    snap = load_checkpoint(folder)
    assert sorted(snap.tensors) == sorted(state)
    assert torch.equal(snap.tensors["module.weight"], state["module.weight"])
