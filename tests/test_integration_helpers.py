"""What the training integrations share: the example input taken from a batch, its copy,
random states kept, and the barrier that waits for the rank that builds, but not forever."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import namedtuple

import numpy as np
import pytest
import torch

from helpers import ROOT
from nnviz_report import NNVizError
from nnviz_report import _integration as integ


def test_input_from_batch():
    x, y = torch.randn(4, 3), torch.arange(4)
    assert integ.input_from_batch(x) is x
    assert integ.input_from_batch((x, y)) is x
    assert integ.input_from_batch([x, y]) is x
    kept = integ.input_from_batch({"input_ids": x, "attention_mask": x, "labels": y})
    assert list(kept) == ["input_ids", "attention_mask"]
    Pair = namedtuple("Pair", "a b")
    pair = Pair(x, y)
    assert integ.input_from_batch(pair) is pair  # a namedtuple is the model's argument, not (x, y)
    with pytest.raises(NNVizError, match="example_input"):
        integ.input_from_batch({"labels": y})


def test_cpu_copy_is_detached_and_independent():
    w = torch.randn(3, requires_grad=True)
    batch = {"x": w * 2, "meta": ("id", [w + 1])}
    copied = integ.cpu_copy(batch)
    assert not copied["x"].requires_grad and torch.equal(copied["x"], (w * 2).detach())
    assert copied["meta"][0] == "id" and isinstance(copied["meta"], tuple) and isinstance(copied["meta"][1], list)
    with torch.no_grad():
        batch["x"].add_(1)
    assert torch.equal(copied["x"], (w * 2).detach())


def test_random_states_are_kept():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with integ.rng_kept():
        random.random(), np.random.rand(), torch.rand(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.parametrize("name", ["report.txt", "../report.html", "a/b.html", ".html", "", None, " x.html"])
def test_bad_filenames(name):
    with pytest.raises(NNVizError, match="filename"):
        integ.check_filename(name)


def test_unknown_build_options_are_named():
    with pytest.raises(NNVizError, match=r"unknown build_report option.*colour.*choose from.*max_channels"):
        integ.check_build_kwargs({"colour": 1, "title": "x"})
    with pytest.raises(NNVizError, match="before"):
        integ.check_build_kwargs({"before": None})  # the callback takes its own snapshots


BARRIER = """
import os, time, warnings
import torch.distributed as dist
import torch.multiprocessing as mp
from nnviz_report._integration import barrier

def wait(rank, slow):
    if rank == 0:
        time.sleep(slow)  # the rank that builds
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        met = barrier(timeout=1.0, what="rank zero")
    waited = time.perf_counter() - start
    print(f"slow={slow} rank={rank} met={met} waited={waited:.2f} warned={len(caught)}", flush=True)

def main(rank, port):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    wait(rank, 0.0)  # everyone arrives
    wait(rank, 3.0)  # rank zero is late by more than the timeout
    os._exit(0)  # a timed-out group cannot be torn down cleanly

if __name__ == "__main__":
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    mp.start_processes(main, args=(port,), nprocs=2, start_method="spawn")
"""


def test_barrier_waits_for_rank_zero_but_not_forever(tmp_path):
    script = tmp_path / "barrier.py"
    script.write_text(BARRIER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    lines = [
        dict(part.split("=") for part in line.split()) for line in done.stdout.splitlines() if line.startswith("slow=")
    ]
    assert len(lines) == 4, done.stdout + done.stderr[-2000:]
    on_time = [r for r in lines if r["slow"] == "0.0"]
    assert all(r["met"] == "True" and r["warned"] == "0" for r in on_time)
    # Rank 1 gave up after its 1 s timeout, with a warning, while rank 0 still worked.
    [late] = [r for r in lines if r["slow"] == "3.0" and r["rank"] == "1"]
    assert late["met"] == "False" and late["warned"] == "1"
    assert 0.9 <= float(late["waited"]) < 2.5
