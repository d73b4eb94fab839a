"""Statistics of parameters: a tensor's summary with its L2 norm, and its histogram; a tensor
of more than SLICE values (an LLM's embedding) reduced slice by slice as it is stored, with
no float32 copy of it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .histograms import Histogram, bin_counts_many
from .stats import as_float, finite_or_none, read_scalars, stats_many

BINS = 40  # histogram bins per parameter
SLICE = 2**24  # a tensor with more values is reduced this many at a time (64 MB as float32)


@dataclass(frozen=True)
class ParameterStats:
    """What the parameters section shows of a parameter tensor, before or after training:
    its :class:`~.stats.TensorStats` without the fraction of zeros, plus its L2 norm."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    norm: float | None
    nan_count: int
    inf_count: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parameter_stats(t: torch.Tensor) -> ParameterStats:
    return parameter_stats_many([t])[0]


def parameter_stats_many(tensors: list[torch.Tensor]) -> list[ParameterStats]:
    """The :class:`ParameterStats` of each tensor, their reductions read back together."""
    out = []
    for t, s in zip(tensors, stats_many(tensors, zeros=False)):
        n = s.numel
        if n == 0:
            norm = 0.0
        elif s.mean is not None and (s.std is not None or n == 1):
            # ||x||^2 = (n - 1) var + n mean^2: no extra pass over the tensor.
            norm = math.sqrt(max((n - 1) * (s.std or 0.0) ** 2 + n * s.mean**2, 0.0))
        else:
            norm = float(torch.linalg.vector_norm(as_float(t)))
        out.append(ParameterStats(s.mean, s.std, s.min, s.max, finite_or_none(norm), s.nan_count, s.inf_count))
    return out


def is_large(t: torch.Tensor) -> bool:
    """Reduced slice by slice (see the module's docstring)."""
    return t.numel() > SLICE and t.is_contiguous()


def slices(t: torch.Tensor) -> Iterator[torch.Tensor]:
    flat = t.detach().reshape(-1)
    return (flat[i : i + SLICE] for i in range(0, flat.numel(), SLICE))


def large_stats(t: torch.Tensor) -> ParameterStats:
    """:func:`parameter_stats` of a large tensor, from the statistics of its slices (each
    made float32 on its own): counts and sums add up, the variance by Chan et al.'s merge."""
    parts = [stats_many([x], zeros=False)[0] for x in slices(t)]
    n = sum(p.numel for p in parts)
    nan, inf = sum(p.nan_count for p in parts), sum(p.inf_count for p in parts)
    lo = None if any(p.min is None for p in parts) else min(p.min for p in parts)  # type: ignore[type-var]
    hi = None if any(p.max is None for p in parts) else max(p.max for p in parts)  # type: ignore[type-var]
    # A one-value slice has no std (n - 1 = 0): it adds nothing to the sum of squares.
    if all(p.mean is not None and (p.std is not None or p.numel == 1) for p in parts):
        mean = math.fsum(p.numel * p.mean for p in parts) / n  # type: ignore[operator]
        m2 = math.fsum(
            (p.numel - 1) * (p.std or 0.0) ** 2 + p.numel * (p.mean - mean) ** 2  # type: ignore[operator]
            for p in parts
        )
        std = math.sqrt(m2 / (n - 1))
        norm = math.sqrt(max(m2 + n * mean**2, 0.0))
        return ParameterStats(mean, std, lo, hi, finite_or_none(norm), nan, inf)
    norms = read_scalars([torch.linalg.vector_norm(as_float(x)) for x in slices(t)])
    norm = math.sqrt(math.fsum(v**2 for v in norms))
    return ParameterStats(None, None, lo, hi, finite_or_none(norm), nan, inf)


def large_change(after: torch.Tensor, before: torch.Tensor) -> tuple[float, float, float]:
    """||after - before||, min and max of after - before, one slice at a time."""
    parts = []
    for a, b in zip(slices(after), slices(before)):
        diff = as_float(a) - as_float(b)
        parts += [torch.linalg.vector_norm(diff), *torch.aminmax(diff)]
        del diff
    v = torch.tensor(read_scalars(parts), dtype=torch.float64).view(-1, 3)
    return float(v[:, 0].square().sum().sqrt()), float(v[:, 1].min()), float(v[:, 2].max())


def norm_of(t: torch.Tensor) -> float:
    if is_large(t):
        return large_stats(t).norm or 0.0
    return float(torch.linalg.vector_norm(as_float(t)))


def finite_range(pairs: list[tuple[torch.Tensor, ParameterStats]]) -> tuple[float, float, bool]:
    """The finite range of several tensors, from their stats when those are finite, and
    whether every value is finite."""
    los, his, all_finite = [], [], True
    for t, s in pairs:
        if s.nan_count or s.inf_count:
            all_finite = False
            finite = t[torch.isfinite(t)]
            if finite.numel():
                lo, hi = torch.aminmax(finite)
                los.append(float(lo))
                his.append(float(hi))
        elif s.min is not None and s.max is not None:
            los.append(s.min)
            his.append(s.max)
    return (min(los), max(his), all_finite) if los else (0.0, 0.0, all_finite)


def histograms(items: list[tuple[torch.Tensor, float, float, int, bool]]) -> list[Histogram]:
    """Histograms of several tensors, each ``(x, lo, hi, every, finite)``: BINS bins over
    ``[lo, hi]`` of every ``every``-th value (the finite ones), binned together."""
    samples = []
    for x, _, _, every, finite in items:
        sample = as_float(x.reshape(-1)[::every])  # a large tensor is kept as stored
        samples.append(sample if finite else sample[torch.isfinite(sample)])
    binned = [(s, lo, hi) for s, (_, lo, hi, _, _) in zip(samples, items) if hi > lo]
    counts = iter(bin_counts_many(binned, BINS))
    return [
        Histogram(lo, hi, next(counts) if hi > lo else [int(s.numel())], every)
        for s, (_, lo, hi, every, _) in zip(samples, items)
    ]
