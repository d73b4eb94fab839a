"""Numbers for the page: values rounded to a few significant digits, or to the fewest digits
that read back to the same float32."""

from __future__ import annotations

import numpy as np
import torch


def round_sig(values: torch.Tensor | np.ndarray, digits: int = 4) -> list[float | None]:
    """Values rounded to ``digits`` significant digits, for plotting (NaN/Inf: None),
    vectorised (formatting each number is much slower, and no shorter in JSON)."""
    a = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    a = a.reshape(-1)
    finite = np.isfinite(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(a)))
    mag[~np.isfinite(mag)] = 0
    scale = 10.0 ** (digits - 1 - mag)
    out = np.round(a * scale) / scale
    if finite.all():
        return out.tolist()
    return [v if ok else None for v, ok in zip(out.tolist(), finite.tolist())]


def float32_lists(tensors: list[torch.Tensor]) -> list[list[float | None]]:
    """Each tensor's values as the shortest decimals that read back to the same float32
    (NaN/Inf: None), all tensors in one vectorised pass (numpy's work per call hardly
    depends on the size, and a model has a hundred biases).

    The fewest significant digits (1 to 9; 9 always read back) found by bisection: with
    more digits the rounding only gets closer, so whether d digits read back is monotone in
    d, except near a power of two (the gap below is half the gap above); a value the
    bisection misses there gets 9 digits.
    """
    if not tensors:
        return []
    parts = [t.detach().to("cpu", torch.float32).reshape(-1) for t in tensors]
    arr = np.asarray(torch.cat(parts)) if len(parts) > 1 else np.asarray(parts[0])
    finite = np.isfinite(arr)
    wide = np.where(finite, arr.astype(np.float64), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(wide)))
    mag[~np.isfinite(mag)] = 0

    def rounded(digits: np.ndarray) -> np.ndarray:
        scale = 10.0 ** (digits - 1 - mag)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.round(wide * scale) / scale

    lo, hi = np.ones(arr.shape, np.int64), np.full(arr.shape, 9, np.int64)
    for _ in range(4):  # 9 candidates
        mid = (lo + hi) // 2
        ok = rounded(mid).astype(np.float32) == arr
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid + 1)
    out = rounded(hi)
    miss = finite & (out.astype(np.float32) != arr)  # a float32 at a power of two: 9 digits
    if miss.any():
        out[miss] = rounded(np.full(arr.shape, 9, np.int64))[miss]
    values = out.tolist()
    if not finite.all():
        values = [v if ok else None for v, ok in zip(values, finite.tolist())]
    lists, at = [], 0
    for p in parts:
        lists.append(values[at : at + p.numel()])
        at += p.numel()
    return lists
