"""The build's steps hand each other values: a slow step makes the others wait for its
result instead of reading something half done, pending work is finished once, and what the
build changes in the process is put back."""

from __future__ import annotations

import gc
import threading
import time

import pytest
import torch
from torch import nn

import nnviz_report
from models import SmallCNN
from nnviz_report import _compat
from nnviz_report._environment import BuildEnvironment
from nnviz_report.capture import run as capture_run
from nnviz_report.capture.activations.measure import ActivationSite, PendingDerivatives
from nnviz_report.capture.histograms import PendingHistograms


def _without_date(data: dict) -> dict:
    return {**data, "environment": {k: v for k, v in data["environment"].items() if k != "created"}}


@pytest.mark.parametrize("graph", [False, True])
def test_slow_histogram_counts_are_waited_for(monkeypatch, graph):
    """With the counting held up, the feature-map and activation sections still show the
    counts (they used to be built with none, and came out right only by aliasing)."""
    model, x = SmallCNN().eval(), torch.randn(2, 1, 28, 28)
    expected = _without_date(nnviz_report.build_report(model, x, graph=graph).data)
    count = capture_run.count_histograms
    started = threading.Event()

    def slow(run):
        started.set()
        time.sleep(0.5)
        return count(run)

    monkeypatch.setattr(capture_run, "count_histograms", slow)
    data = _without_date(nnviz_report.build_report(model, x, graph=graph).data)
    assert started.is_set()
    assert data == expected
    assert all(sum(e["histogram"]["counts"]) > 0 for e in data["feature_maps"])
    assert all(sum(c["input_histogram"]["counts"]) > 0 for c in data["activations"]["calls"])


def test_pending_histograms_are_counted_once():
    pending = PendingHistograms()
    hist = pending.add(torch.tensor([0.0, 1.0, 1.0, 3.0]), 0.0, 3.0, 3, 1)
    assert (hist.lo, hist.hi, hist.every) == (0.0, 3.0, 1)
    counted = pending.count()
    assert counted.finished(hist).counts == [1, 2, 1]
    with pytest.raises(RuntimeError, match="counted already"):
        pending.count()
    with pytest.raises(RuntimeError, match="counted already"):
        pending.add(torch.ones(2), 0.0, 1.0, 3, 1)


def test_pending_derivatives_are_taken_once():
    pending = PendingDerivatives()
    site = ActivationSite("Tanh", {}, "", "functional", "torch.tanh", 0, [3])
    ticket = pending.add(site, torch.zeros(3))
    results = pending.run({}, {})
    assert results[ticket].mean == pytest.approx(1.0)  # tanh'(0)
    with pytest.raises(RuntimeError, match="taken already"):
        pending.run({}, {})
    with pytest.raises(RuntimeError, match="taken already"):
        pending.add(site, torch.zeros(3))


def test_the_build_environment_puts_back_what_it_changes():
    controls = _compat.thread_controls()
    omp_before = controls[0]() if controls is not None else None
    was = gc.isenabled()
    try:
        for collector_on in (True, False):
            (gc.enable if collector_on else gc.disable)()
            with torch.no_grad():
                with BuildEnvironment() as env:
                    assert not gc.isenabled() and torch.is_grad_enabled()
                    with env.lanes(2) as pool:
                        if controls is not None:
                            assert controls[0]() == 1  # this thread's kernels: one thread
                            assert pool.submit(lambda: controls[0]()).result() == 1
                assert gc.isenabled() is collector_on and not torch.is_grad_enabled()
            if controls is not None:
                assert controls[0]() == omp_before
        with torch.inference_mode(), BuildEnvironment():
            assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
        with pytest.raises(ZeroDivisionError), BuildEnvironment():
            1 / 0  # noqa: B018
        assert not gc.isenabled()  # as before the failed block
    finally:
        (gc.enable if was else gc.disable)()


def test_build_report_says_nothing_it_does_not_put_back():
    """A build inside torch.no_grad() leaves the caller's modes and the collector as they were."""
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with torch.no_grad():
        report = nnviz_report.build_report(model, torch.randn(2, 4), graph=False)
        assert not torch.is_grad_enabled()
    assert report is not None and gc.isenabled()
