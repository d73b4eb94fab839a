"""accelerate's report() and the Hugging Face callback with an FSDP2-sharded model: every
rank takes part (snapshot and build gather the full parameters), rank 0 writes one report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, page_json

pytest.importorskip("accelerate")
pytest.importorskip("transformers")


def test_accelerate_and_hugging_face_with_fsdp(tmp_path):
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
        ACCELERATE_USE_CPU="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(ROOT / "tests" / "sharded_integrations_job.py"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["accelerate"] for r in ranks] == [True, False]
    assert ranks[0]["hf"] and ranks[1]["hf"] is None
    for page in (tmp_path / "accelerate.html", tmp_path / "hf" / "nnviz-report.html"):
        data = page_json(page.read_text(encoding="utf-8"), "nnviz-data")
        names = [p["name"] for p in data["parameters"]]
        assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"], names
        assert all(p["relative_change"] and p["relative_change"] > 0 for p in data["parameters"])
    assert sorted(p.name for p in tmp_path.rglob("*.html")) == ["accelerate.html", "nnviz-report.html"]
