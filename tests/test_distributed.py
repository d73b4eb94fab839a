"""torch.distributed jobs: two ranks under torchrun, gloo on the CPU.

One job (tests/distributed_job.py) runs every scenario; the tests read what it left and
check it against single-process builds made here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import nnviz_report
from distributed_job import PG_TIMEOUT, BatchNormNet, TiedNet
from helpers import ROOT, with_examples
from nnviz_report import NNVizError

JOB_TIMEOUT = 240  # seconds; the job takes ~20 s on 2 cores


def torchrun(script: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = with_examples(dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), *args],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
        env=env,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("job")
    result = torchrun(ROOT / "tests" / "distributed_job.py", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"out": out, "ranks": [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]}


def single_process(fn):
    """A build in this process, with one thread like each torchrun rank (matrix products
    summed in another order would differ in the last bits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def without_environment(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "environment"}


def test_ddp_rank_0_builds_alone_and_matches_a_single_process_build(job):
    rank0, rank1 = job["ranks"]
    assert rank0["ddp_snapshot"] == rank0["ddp_snapshot"] | {"ok": True, "none": False}
    assert rank1["ddp_snapshot"]["none"] and rank1["ddp"]["none"] and not rank0["ddp"]["none"]
    saved = torch.load(job["out"] / "ddp_weights.pt", weights_only=True)
    net = BatchNormNet()
    net.load_state_dict(saved["state"])
    report = single_process(lambda: nnviz_report.build_report(net, saved["x"], before=saved["before"]))
    from_job = json.loads((job["out"] / "ddp.json").read_text())
    assert without_environment(from_job) == without_environment(json.loads(json.dumps(report.data)))
    assert from_job["parameters"][0]["relative_change"] > 0  # trained by both ranks since the snapshot
    assert rank0["ddp_rank0_only"] == rank0["ddp_rank0_only"] | {"ok": True, "none": False}


def test_the_readme_example_runs_under_torchrun_and_rank_0_writes_the_one_report(tmp_path):
    script = ROOT / "examples" / "distributed.py"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```python\n" + script.read_text(encoding="utf-8") + "```" in readme, "README shows another script"
    result = torchrun(script, "--output", str(tmp_path / "report.html"), "--steps", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stdout.count("wrote") == 1 and "rank 0 wrote" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "FSDP2 run" in html and "blocks.3.3.weight" in html


def test_fsdp2_every_rank_runs_rank_0_builds_and_matches_a_single_process_build(job):
    from models import LlamaForCausalLM

    rank0, rank1 = job["ranks"]
    assert rank0["fsdp"] == rank0["fsdp"] | {"ok": True, "none": False}
    assert rank1["fsdp"]["ok"] and rank1["fsdp"]["none"] and rank1["fsdp_snapshot"]["none"]
    assert sorted(p.name for p in job["out"].glob("*.html")) == [
        "ddp.html",
        "fsdp.html",
        "fsdp1.html",
        "fsdp1_tied.html",
    ]  # one each
    saved = torch.load(job["out"] / "fsdp_weights.pt", weights_only=True)
    model = LlamaForCausalLM(num_hidden_layers=3)
    model.load_state_dict(saved["state"])
    report = single_process(
        lambda: nnviz_report.build_report(model, saved["tokens"], before=job["out"] / "fsdp_before.safetensors")
    )
    single = json.loads(json.dumps(report.data))
    sharded = json.loads((job["out"] / "fsdp.json").read_text())
    assert sharded["model"]["class_name"] == "LlamaForCausalLM"
    for key in ("model", "activations", "feature_maps", "parameters"):
        assert sharded[key] == single[key], key
    assert sharded["parameters"][0]["before"] is not None and sharded["parameters"][0]["relative_change"] > 0
    # The graph names the gathered parameters the forward pass used (FSDP adds two
    # RegisterPostBackward nodes of its own around each sharded unit's inputs).
    assert sharded["graph"]["views"][1]["rendered"]
    html = (job["out"] / "fsdp.html").read_text(encoding="utf-8")
    assert "model.layers.2.mlp.down_proj.weight" in html


def test_fsdp1_report_matches_a_single_process_build(job):
    rank0, rank1 = job["ranks"]
    assert rank0["fsdp1"] == rank0["fsdp1"] | {"ok": True, "none": False}
    assert rank1["fsdp1"]["none"] and rank1["fsdp1_snapshot"]["none"]
    saved = torch.load(job["out"] / "fsdp1_weights.pt", weights_only=True)
    net = BatchNormNet()
    net.load_state_dict(saved["state"])
    report = single_process(lambda: nnviz_report.build_report(net, saved["x"], before=saved["before"]))
    single = json.loads(json.dumps(report.data))
    sharded = json.loads((job["out"] / "fsdp1.json").read_text())
    # Module names and class as written: FSDP1's wrappers left out.
    assert [m["name"] for m in sharded["feature_maps"]] == ["fc1", "bn", "act", "fc2"]
    for key in ("model", "activations", "feature_maps", "parameters"):
        assert sharded[key] == single[key], key


def test_fsdp1_tied_weights_are_counted_once_as_in_one_process(job):
    """FSDP1's flat parameter holds a tied weight once; its name was counted twice and the
    second called frozen."""
    torch.manual_seed(0)
    report = single_process(lambda: nnviz_report.build_report(TiedNet(), torch.arange(10).view(2, 5), graph=False))
    sharded = json.loads((job["out"] / "fsdp1_tied.json").read_text())
    assert sharded["model"]["num_parameters"] == report.data["model"]["num_parameters"] == 37 * 16
    assert [p["name"] for p in sharded["parameters"]] == ["emb.weight"]
    assert sharded["findings"] == json.loads(json.dumps(report.data["findings"]))


def test_a_snapshot_under_fsdp_holds_the_full_parameters(job):
    from safetensors.torch import load_file

    from models import LlamaForCausalLM

    saved = load_file(str(job["out"] / "fsdp_before.safetensors"))
    torch.manual_seed(0)
    untrained = LlamaForCausalLM(num_hidden_layers=3)  # what the job built, before training
    for name, value in untrained.state_dict().items():
        if name != "lm_head.weight":  # tied: saved once
            assert torch.equal(saved[name], value), name


def test_a_distributed_checkpoint_from_the_job_needs_trust_and_then_reads_exactly(job):
    from models import LlamaForCausalLM

    saved = torch.load(job["out"] / "fsdp_weights.pt", weights_only=True)
    model = LlamaForCausalLM(num_hidden_layers=3)
    model.load_state_dict(saved["state"])
    with pytest.raises(NNVizError, match=r"torch.distributed.checkpoint folder.*--trust-checkpoint-metadata"):
        nnviz_report.build_report(model, saved["tokens"], before=job["out"] / "dcp", graph=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading it is quiet
        report = nnviz_report.build_report(
            model, saved["tokens"], before=job["out"] / "dcp", graph=False, trust_metadata=True
        )
    # Saved as {"model": sharded state} after training: the same values as the model now.
    assert all(p["abs_change"] == 0.0 for p in report.data["parameters"])
    assert not report.warnings and "holds" not in " ".join(report.warnings)


def test_a_rank_that_fails_or_stays_away_does_not_hang_the_other(job):
    rank0, rank1 = job["ranks"]
    # Rank 0 cannot read its before= checkpoint: both raise at once, rank 1 naming rank 0.
    assert "checkpoint not found" in rank0["missing_before"]["error"]
    assert rank1["missing_before"]["error"].startswith("rank 0 failed in reading before=: NNVizError: checkpoint not")
    assert max(rank0["missing_before"]["seconds"], rank1["missing_before"]["seconds"]) < 5
    # Rank 0 calls alone: it gives up after dist_timeout (2 s); rank 1's next call meets
    # that failed step and fails at once, and the ranks are in step again.
    assert "rank 0 gave up after 2 s in snapshot(): only 1 of 2 ranks arrived" in rank0["alone"]["error"]
    assert 1.9 < rank0["alone"]["seconds"] < 10
    assert rank1["late"]["error"] == rank0["alone"]["error"] and rank1["late"]["seconds"] < 5
    # Rank 1's forward pass raises half-way: rank 1 raises at once; rank 0, waiting in FSDP's
    # all-gather, gets the job's own collective timeout (init_process_group(timeout=...))
    # and then names rank 1's failure.
    assert "RuntimeError: rank 1 broke" in rank1["forward_fails"]["error"] and rank1["forward_fails"]["seconds"] < 5
    error = rank0["forward_fails"]["error"]
    assert (
        error.startswith("rank 1 failed in the forward pass: NNVizError: the forward pass failed") and "\n" not in error
    )
    assert rank0["forward_fails"]["seconds"] < PG_TIMEOUT + 10
