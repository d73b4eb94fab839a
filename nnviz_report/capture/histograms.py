"""Histograms: the bins of a tensor's values, over their exact finite range, counted from a
strided sample of at most HISTOGRAM_SAMPLE values.

A forward hook knows a histogram's range at once but leaves the counting for later (six
small ops per histogram inside a hook cost more than one bincount for all of them after
the pass): :meth:`PendingHistograms.add` keeps a copy of the sample and returns a
:class:`PendingHistogram`; :meth:`PendingHistograms.count` counts every sample at once and
returns the :class:`CountedHistograms` that turn each pending histogram into a
:class:`Histogram`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import _compat
from .stats import TensorStats, as_float, by_device, stats_many

HISTOGRAM_SAMPLE = 16384
BIN_CHUNK = 2**20  # values binned per bincount: bounds the temporaries (a few MB)


def bin_counts_many(
    items: list[tuple[torch.Tensor, float, float]], bins: int, overwrite: bool = False
) -> list[list[int]]:
    """Counts of ``bins`` equal bins over ``[lo, hi]`` (the last one closed, as histc) of
    each ``(sample, lo, hi)`` (``lo < hi``), by one bincount per device and chunk of about
    BIN_CHUNK values (faster than torch.histc on CPU): sample ``k`` of a chunk has bins
    ``k * bins ...``. The per-sample steps run as foreach ops (one call for all samples,
    as torch.optim does); with ``overwrite``, in the caller's samples (its own copies)."""
    out: list[list[int]] = [[] for _ in items]
    chunks: list[list[int]] = []
    for on_device in by_device(sample for sample, _, _ in items):
        chunk: list[int] = []
        size = 0
        for i in on_device:
            if chunk and size + items[i][0].numel() > BIN_CHUNK:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(i)
            size += items[i][0].numel()
        chunks.append(chunk)
    for idx in chunks:
        samples = [items[i][0].reshape(-1) for i in idx]
        lows = [items[i][1] for i in idx]
        if overwrite:
            _compat.foreach_sub_(samples, lows)
            at = samples
        else:
            at = _compat.foreach_sub(samples, lows)
        _compat.foreach_mul_(at, [bins / (items[i][2] - items[i][1]) for i in idx])
        _compat.foreach_clamp_min_(at, 0)
        _compat.foreach_clamp_max_(at, bins - 1)
        _compat.foreach_floor_(at)
        _compat.foreach_add_(at, [k * bins for k in range(len(idx))])  # exact: small integers
        flat = torch.cat(at).to(torch.int32)
        del at, samples
        counts = torch.bincount(flat, minlength=len(idx) * bins).view(len(idx), bins).tolist()
        for i, c in zip(idx, counts):
            out[i] = c
    return out


@dataclass(frozen=True)
class Histogram:
    """Counts of ``bins`` equal bins over ``[lo, hi]``; with ``every > 1`` the counts are of
    every ``every``-th value (a strided sample), the range is exact."""

    lo: float
    hi: float
    counts: list[int]
    every: int = 1

    def as_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "counts": self.counts, "every": self.every}


@dataclass(frozen=True)
class PendingHistogram:
    """A histogram whose bins are known and whose counts wait in a :class:`PendingHistograms`
    queue (``ticket``: its place there); :meth:`CountedHistograms.finished` gives the
    :class:`Histogram`."""

    lo: float
    hi: float
    every: int
    ticket: int


class PendingHistograms:
    """Samples waiting to be counted: :meth:`add` during the forward pass, :meth:`count` once,
    after it. Adding or counting again after that raises: the counts are already out."""

    def __init__(self) -> None:
        self._samples: list[tuple[torch.Tensor, float, float, int]] | None = []

    def add(self, sample: torch.Tensor, lo: float, hi: float, bins: int, every: int) -> PendingHistogram:
        if self._samples is None:
            raise RuntimeError("the histograms were counted already")
        self._samples.append((sample.clone(), lo, hi, bins))  # the model may rewrite it in place
        return PendingHistogram(lo, hi, every, len(self._samples) - 1)

    def count(self) -> CountedHistograms:
        """Every sample's counts, with one bincount per device and number of bins."""
        samples, self._samples = self._samples, None
        if samples is None:
            raise RuntimeError("the histograms were counted already")
        counts: list[list[int]] = [[] for _ in samples]
        by_bins: dict[int, list[int]] = {}
        for ticket, (_, _, _, bins) in enumerate(samples):
            by_bins.setdefault(bins, []).append(ticket)
        for bins, tickets in by_bins.items():
            items = [samples[t][:3] for t in tickets]
            for ticket, c in zip(tickets, bin_counts_many(items, bins, overwrite=True)):
                counts[ticket] = c
        return CountedHistograms(counts)


@dataclass(frozen=True)
class CountedHistograms:
    """The counts of every pending histogram of one forward pass, by ticket."""

    counts: list[list[int]]

    def finished(self, hist: Histogram | PendingHistogram | None) -> Histogram | None:
        if isinstance(hist, PendingHistogram):
            return Histogram(hist.lo, hist.hi, self.counts[hist.ticket], hist.every)
        return hist


def stats_and_histogram(
    t: torch.Tensor, bins: int, zeros: bool = True, pending: PendingHistograms | None = None
) -> tuple[TensorStats, Histogram | PendingHistogram | None]:
    """The :class:`TensorStats` of ``t`` and the histogram of its finite values (exact range,
    counts from a strided sample of at most HISTOGRAM_SAMPLE values; pending in
    ``pending`` when given). One device-to-host transfer in the common (finite) case."""
    x = as_float(t).reshape(-1)
    s = stats_many([x], zeros)[0]
    if not (bins and s.numel):
        return s, None
    non_finite = s.nan_count + s.inf_count > 0
    return s, _histogram(x, s.min, s.max, non_finite, bins, pending)  # type: ignore[arg-type]


def histogram(
    t: torch.Tensor, bins: int, pending: PendingHistograms | None = None
) -> Histogram | PendingHistogram | None:
    """The histogram of :func:`stats_and_histogram` alone (one pass for the range, not four)."""
    x = as_float(t).reshape(-1)
    if x.numel() == 0:
        return None
    lo_v, hi_v = torch.stack(torch.aminmax(x)).tolist()
    return _histogram(x, lo_v, hi_v, not (math.isfinite(lo_v) and math.isfinite(hi_v)), bins, pending)


def _histogram(
    x: torch.Tensor, lo_v: float, hi_v: float, non_finite: bool, bins: int, pending: PendingHistograms | None
) -> Histogram | PendingHistogram | None:
    """Bins over the exact finite range of flat ``x``; counts of a strided sample."""
    every = max(1, -(-x.numel() // HISTOGRAM_SAMPLE))
    sample = x[::every]
    if non_finite:
        sample = sample[torch.isfinite(sample)]
        finite_x = x[torch.isfinite(x)]
        lo_v, hi_v = (float(v) for v in torch.aminmax(finite_x)) if finite_x.numel() else (0.0, 0.0)
    if not sample.numel():
        return None
    if lo_v == hi_v:
        return Histogram(lo_v, hi_v, [int(sample.numel())], every)
    if pending is not None:
        return pending.add(sample, lo_v, hi_v, bins, every)
    return Histogram(lo_v, hi_v, bin_counts_many([(sample, lo_v, hi_v)], bins)[0], every)
