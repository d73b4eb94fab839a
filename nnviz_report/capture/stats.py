"""Summary statistics of tensors, computed where each tensor lives.

Every function here reads a tensor on its own device and copies only a handful of numbers
to the CPU, one transfer per device for all the tensors it is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

ONE_PASS_LIMIT = 16.0


@dataclass(frozen=True)
class TensorStats:
    """Mean, std (unbiased, like ``Tensor.std``), min, max, the fraction of exact zeros and
    the counts of NaN and Inf of a whole tensor. NaN or Inf make mean, std, min and max
    None (they would be NaN or Inf, as ``t.mean()`` is)."""

    numel: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    zero_fraction: float | None
    nan_count: int
    inf_count: int


def as_float(t: torch.Tensor) -> torch.Tensor:
    """A floating view of ``t`` for statistics: quantized tensors are dequantized, complex
    becomes its magnitude, integer and bool tensors become float32, half precision is
    upcast to float32."""
    t = t.detach()
    if t.is_quantized:  # a statically quantized layer's output: its real values
        t = t.dequantize()
    if t.is_complex():
        return t.abs().float()
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    return t


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def by_device(tensors: Iterable[torch.Tensor]) -> list[list[int]]:
    """Indices of ``tensors`` grouped by device, in order: one transfer (or op) per group."""
    groups: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.device, []).append(i)
    return list(groups.values())


def nonzero_count(x: torch.Tensor) -> torch.Tensor:
    """``torch.count_nonzero(x)`` (NaN counts), through a bool cast: counting on floats
    branches on the data, which is slow on ReLU outputs (half zeros) on CPU."""
    return x.bool().sum(dtype=torch.int32 if x.numel() < 2**31 else torch.int64)


def read_scalars(values: list[torch.Tensor]) -> list[float]:
    """0-d tensors as Python numbers: one stack and one device-to-host transfer per device
    (the stack promotes to the widest dtype among them). All on one device is the common
    case, tried first: grouping by ``.device`` costs more than the reductions of a small
    layer's output."""
    if not values:
        return []
    try:
        return torch.stack(values).tolist()
    except RuntimeError:  # tensors on several devices
        pass
    out: list[float] = [0.0] * len(values)
    for idx in by_device(values):
        for i, v in zip(idx, torch.stack([values[i] for i in idx]).tolist()):
            out[i] = v
    return out


def tensor_stats(t: torch.Tensor, zeros: bool = True) -> TensorStats:
    """The :class:`TensorStats` of ``t`` as given (``zeros=False``: no fraction of zeros)."""
    return stats_many([t], zeros)[0]


def stats_many(tensors: list[torch.Tensor], zeros: bool = True) -> list[TensorStats]:
    """The :class:`TensorStats` of several tensors, their reductions read back together: per
    tensor three passes (aminmax, sum, sum of squares) and, with ``zeros``, a count; one
    transfer per device for all of them (one in the common, finite case)."""
    xs = [as_float(t).reshape(-1) for t in tensors]
    parts: list[torch.Tensor] = []
    for x in xs:
        n = x.numel()
        if n:
            lo, hi = torch.aminmax(x)
            # One pass for the variance: the sum and the sum of squares, combined in float64
            # here (accurate while mean^2 <= ONE_PASS_LIMIT var; see docs/performance.md);
            # beyond, a second pass about the mean.
            parts += [x.sum(), torch.dot(x, x), lo, hi]
            if zeros and n < 2**24:
                # sign(x) . sign(x): two vectorised passes, faster than the bool cast and
                # sum, exact in float32 below 2**24. (sign(NaN) is 0: a tensor with NaN is
                # counted again below.)
                signs = x.sign()
                parts.append(torch.dot(signs, signs))
                del signs
            elif zeros:
                parts.append(nonzero_count(x).double())  # stays exact
    values = iter(read_scalars(parts))
    results: list[list] = []  # [n, mean, var, lo, hi, nonzero, finite] per tensor
    second: list[int] = []
    for i, x in enumerate(xs):
        n = x.numel()
        if not n:
            results.append([0])
            continue
        sum_v, sq_v, lo_v, hi_v = next(values), next(values), next(values), next(values)
        nonzero_v = next(values) if zeros else 0
        mean_v = sum_v / n
        finite = all(math.isfinite(v) for v in (mean_v, lo_v, hi_v))
        if zeros and not finite:
            nonzero_v = int(nonzero_count(x))
        var = math.nan  # one value, or NaN/Inf in the tensor (None in the report)
        if n > 1 and finite:
            if math.isfinite(sq_v):
                var = max(sq_v - sum_v * mean_v, 0.0) / (n - 1)
                if mean_v * mean_v > ONE_PASS_LIMIT * var:  # cancellation: about the mean
                    second.append(i)
            else:  # the squares overflow float32
                var = float(x.double().var())
        results.append([n, mean_v, var, lo_v, hi_v, nonzero_v, finite])
    if second:
        sums = []
        for i in second:
            d = xs[i] - results[i][1]
            sums.append(torch.dot(d, d))
            del d
        for i, sq in zip(second, read_scalars(sums)):
            results[i][2] = sq / (results[i][0] - 1)
    stats = []
    for x, r in zip(xs, results):
        if r[0] == 0:
            stats.append(TensorStats(0, None, None, None, None, None, 0, 0))
            continue
        n, mean_v, var, lo_v, hi_v, nonzero_v, finite = r
        nan_v = inf_v = 0
        if not finite:
            nan_v, inf_v = (int(v) for v in torch.stack([torch.isnan(x).sum(), torch.isinf(x).sum()]).tolist())
        stats.append(
            TensorStats(
                numel=n,
                mean=finite_or_none(mean_v),
                std=finite_or_none(math.sqrt(var)) if math.isfinite(var) else None,
                min=finite_or_none(lo_v),
                max=finite_or_none(hi_v),
                zero_fraction=(n - nonzero_v) / n if zeros else None,
                nan_count=nan_v,
                inf_count=inf_v,
            )
        )
    return stats


def to_numpy(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """float32 numpy copies, with one device-to-host transfer per device."""
    out: list[np.ndarray | None] = [None] * len(tensors)
    for idx in by_device(tensors):
        flat = torch.cat([tensors[i].detach().reshape(-1).float() for i in idx]).cpu().numpy()
        at = 0
        for i in idx:
            n = tensors[i].numel()
            out[i] = flat[at : at + n].reshape(tuple(tensors[i].shape))
            at += n
    return out  # type: ignore[return-value]


def non_finite(tensors: list[tuple[str, torch.Tensor]]) -> list[tuple[str, int, int]]:
    """``(path, NaN count, Inf count)`` of each floating or complex tensor that has any,
    read back together."""
    floats = [(p, t.detach()) for p, t in tensors if t.is_floating_point() or t.is_complex()]
    if not floats:
        return []
    with torch.no_grad():
        counts = read_scalars([c for _, t in floats for c in (torch.isnan(t).sum(), torch.isinf(t).sum())])
    found = [(p, int(counts[2 * i]), int(counts[2 * i + 1])) for i, (p, _) in enumerate(floats)]
    return [f for f in found if f[1] or f[2]]
