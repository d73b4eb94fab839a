"""Reductions of tensors to small, JSON-able numbers, computed where the tensor lives.

Every function here reads a tensor once on its own device and copies only a handful of
numbers (or a small uint8 image) to the CPU, in a single transfer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import _compat


def iter_leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, leaf)`` for every leaf of a nested output.

    Paths read like Python: ``""`` for a bare value, ``"[0]"``, ``"[1][0]"`` for tuples and
    lists (an LSTM's ``(out, (h, c))``), ``".h"`` for named tuples, ``"['logits']"`` for
    dicts, ``.logits`` for dataclasses.
    """
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from iter_leaves(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):
        for name in obj._fields:
            yield from iter_leaves(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            yield from iter_leaves(item, f"{path}[{i}]")
    elif isinstance(obj, Mapping):
        for key, item in obj.items():
            yield from iter_leaves(item, f"{path}[{key!r}]")
    else:
        yield path, obj


def iter_tensors(obj: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """``(path, tensor)`` for every tensor in a nested output (see :func:`iter_leaves`)."""
    if isinstance(obj, torch.Tensor):  # most module outputs: no generator chain per call
        return iter((("", obj),))
    return ((p, v) for p, v in iter_leaves(obj) if isinstance(v, torch.Tensor))


def describe_non_tensors(obj: Any) -> Iterator[tuple[str, str]]:
    """``(path, type name)`` for the leaves of a nested output that are not tensors."""
    for p, v in iter_leaves(obj):
        if not isinstance(v, torch.Tensor):
            yield p, "None" if v is None else type(v).__name__


def as_float(t: torch.Tensor) -> torch.Tensor:
    """A floating view of ``t`` for statistics: complex becomes its magnitude, integer and
    bool tensors become float32, half precision is upcast to float32."""
    t = t.detach()
    if t.is_complex():
        return t.abs().float()
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    return t


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def round_sig(values: torch.Tensor | np.ndarray, digits: int = 4) -> list[float | None]:
    """Values rounded to ``digits`` significant digits, for plotting (NaN/Inf: None).

    Vectorised: ~10x faster than formatting each number, and as short in JSON.
    """
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
    (NaN/Inf: None), all tensors in one vectorised pass (per call the numpy work is ~0.2 ms
    whatever the size; a model has a hundred biases).

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


HISTOGRAM_SAMPLE = 16384
ONE_PASS_LIMIT = 16.0


def by_device(tensors: Iterable[torch.Tensor]) -> list[list[int]]:
    """Indices of ``tensors`` grouped by device, in order: one transfer (or op) per group."""
    groups: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.device, []).append(i)
    return list(groups.values())


BIN_CHUNK = 2**20  # values binned per bincount: bounds the temporaries (a few MB)


def bin_counts_many(
    items: list[tuple[torch.Tensor, float, float]], bins: int, overwrite: bool = False
) -> list[list[int]]:
    """Counts of ``bins`` equal bins over ``[lo, hi]`` (the last one closed, as histc) of
    each ``(sample, lo, hi)`` (``lo < hi``), by one bincount per device and chunk of about
    BIN_CHUNK values (~2x faster than torch.histc on CPU): sample ``k`` of a chunk has bins
    ``k * bins ...``. The per-sample steps run as foreach ops (one call for all samples,
    as torch.optim does); with ``overwrite``, in the caller's samples (its own copies)."""
    out: list[list[int]] = [[] for _ in items]
    chunks: list[list[int]] = []
    for on_device in by_device(sample for sample, _, _ in items):
        chunk, size = [], 0
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
    every ``every``-th value (a strided sample), the range is exact. (``counts`` is empty
    until :meth:`HistogramCounts.run` when the counting waits for it.)"""

    lo: float
    hi: float
    counts: list[int]
    every: int = 1

    def as_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "counts": self.counts, "every": self.every}


@dataclass(frozen=True)
class TensorStats:
    numel: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    zero_fraction: float | None
    nan_count: int
    inf_count: int
    histogram: Histogram | None = field(default=None, compare=False)


def nonzero_count(x: torch.Tensor) -> torch.Tensor:
    """``torch.count_nonzero(x)`` (NaN counts), through a bool cast: counting on floats
    branches on the data, ~10x slower on ReLU outputs (half zeros) on CPU."""
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


def tensor_stats(
    t: torch.Tensor, bins: int = 0, zeros: bool = True, later: HistogramCounts | None = None
) -> TensorStats:
    """Mean, std (unbiased, like ``Tensor.std``), min, max, fraction of exact zeros and counts
    of NaN/Inf over the whole tensor as given, plus an optional histogram of its finite
    values (exact range, counts from a strided sample of at most 16 384 values; with
    ``later``, counted by its ``run()``).

    NaN/Inf propagate into mean/std/min/max as they would in ``t.mean()``; they are reported
    as ``None``. One device-to-host transfer in the common (finite) case.
    """
    x = as_float(t).reshape(-1)
    s = stats_many([x], zeros)[0]
    if bins and s.numel:
        hist = _histogram(x, s.min, s.max, s.nan_count + s.inf_count > 0, bins, later)
        s = dataclasses.replace(s, histogram=hist)
    return s


def stats_many(tensors: list[torch.Tensor], zeros: bool = True) -> list[TensorStats]:
    """:func:`tensor_stats` (without histograms) of several tensors, their reductions read
    back together: per tensor three passes (aminmax, sum, sum of squares) and, with
    ``zeros``, a count; one transfer per device for all of them."""
    xs = [as_float(t).reshape(-1) for t in tensors]
    parts: list[torch.Tensor] = []
    for x in xs:
        n = x.numel()
        if n:
            lo, hi = torch.aminmax(x)
            # One pass for the variance: the sum and the sum of squares, combined in float64
            # here (measured accurate to ~1e-5 up to mean^2 = 100 var); when mean^2 >
            # ONE_PASS_LIMIT var, a second pass about the mean.
            parts += [x.sum(), torch.dot(x, x), lo, hi]
            if zeros and n < 2**24:
                # sign(x) . sign(x): two vectorised passes, ~1.5x faster than the bool cast
                # and sum, exact in float32 below 2**24. (sign(NaN) is 0: a tensor with NaN
                # is counted again below.)
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


def histogram(t: torch.Tensor, bins: int, later: HistogramCounts | None = None) -> Histogram | None:
    """The histogram of :func:`tensor_stats` alone (one pass for the range, not four)."""
    x = as_float(t).reshape(-1)
    if x.numel() == 0:
        return None
    lo_v, hi_v = torch.stack(torch.aminmax(x)).tolist()
    return _histogram(x, lo_v, hi_v, not (math.isfinite(lo_v) and math.isfinite(hi_v)), bins, later)


def _histogram(
    x: torch.Tensor, lo_v: float, hi_v: float, non_finite: bool, bins: int, later: HistogramCounts | None = None
) -> Histogram | None:
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
    if later is not None:
        return later.add(sample, lo_v, hi_v, bins, every)
    return Histogram(lo_v, hi_v, bin_counts_many([(sample, lo_v, hi_v)], bins)[0], every)


class HistogramCounts:
    """Histograms counted later, all at once: :meth:`add` keeps a copy of the (small,
    strided) sample and returns its Histogram with no counts yet; :meth:`run` fills them,
    binning every sample with one bincount per device (:func:`bin_counts_many`) instead of
    six small ops per histogram inside a forward hook."""

    def __init__(self) -> None:
        self._todo: list[tuple[Histogram, torch.Tensor, int]] = []

    def add(self, sample: torch.Tensor, lo: float, hi: float, bins: int, every: int) -> Histogram:
        hist = Histogram(lo, hi, [], every)
        self._todo.append((hist, sample.clone(), bins))  # the model may rewrite it in place
        return hist

    def run(self) -> None:
        todo, self._todo = self._todo, []
        by_bins: dict[int, list[tuple[Histogram, torch.Tensor]]] = {}
        for hist, sample, bins in todo:
            by_bins.setdefault(bins, []).append((hist, sample))
        for bins, items in by_bins.items():
            counts = bin_counts_many([(sample, h.lo, h.hi) for h, sample in items], bins, overwrite=True)
            for (hist, _), c in zip(items, counts):
                hist.counts[:] = c


@dataclass(frozen=True)
class GridImage:
    """A small uint8 picture of a tensor, quantised between ``vmin`` and ``vmax``.

    ``kind == "channels"``: ``tiles`` tiles of ``tile_h x tile_w`` side by side in one strip
    (height ``tile_h``, width ``tiles * tile_w``); tile ``i`` shows channel ``channels[i]``.
    ``kind == "matrix"``: one ``tile_h x tile_w`` picture; rows are ``row_label`` indices
    ``rows``, columns ``col_label`` indices ``cols``.
    """

    kind: str
    pixels: bytes
    tile_h: int
    tile_w: int
    tiles: int
    vmin: float
    vmax: float
    diverging: bool
    source_hw: tuple[int, int]
    channels: list[int] = field(default_factory=list)
    channel_stats: list[list[float | None]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    row_label: str = ""
    col_label: str = ""


def _sample_index(size: int, limit: int) -> torch.Tensor | None:
    if size <= limit:
        return None
    return torch.linspace(0, size - 1, limit).round().long()


# A hook keeps the channels it draws at full resolution (see channel_parts) up to this many
# values per picture (1 MiB of float32), and this many in all in one forward pass (64 MiB);
# beyond, it pools them itself.
FULL_COPY_VALUES = 2**18
FULL_COPY_BUDGET = 2**24


@dataclass
class ImageParts:
    """What a hook keeps to draw a tensor later: small copies, on the tensor's device.

    ``values``: the picture before quantisation; ``(k, th, tw)`` pooled channel tiles or an
    ``(r, c)`` sampled matrix. ``moments``: per channel ``(min, max, first value, sum of
    values minus the first, sum of their squares)`` over the full-resolution channel.
    With ``tile``, ``values`` are still the ``(k, h, w)`` channels at full resolution (a
    copy): :func:`finish_images` pools them and takes their moments, in stacks.
    """

    kind: str
    values: torch.Tensor
    source_hw: tuple[int, int]
    moments: torch.Tensor | None = None
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    row_label: str = ""
    col_label: str = ""
    tile: int = 0


def channel_parts(t: torch.Tensor, example: int, max_channels: int, tile: int, full_copy: int = 0) -> ImageParts:
    """The first ``max_channels`` channels of example ``example`` of an ``(N, C, *spatial)``
    tensor, each average-pooled to at most ``tile`` pixels a side, and their moments; or,
    when those channels hold at most ``full_copy`` values, a copy of them at full
    resolution, pooled later by :func:`finish_images` (one copy here instead of a dozen
    small ops in a forward hook).

    3-D spatial maps (``N, C, D, H, W``) show their middle depth slice.
    """
    x = as_float(t[example])
    while x.dim() > 3:
        x = x[:, x.shape[1] // 2]
    c, h, w = x.shape
    x = x[: min(c, max_channels)]
    if x.numel() <= full_copy:  # a copy: the model may rewrite its output in place later
        return ImageParts("channels", x.clone(memory_format=torch.contiguous_format), (h, w), tile=tile)
    values, moments = _pool_channels(x.unsqueeze(0), tile, copy=True)
    return ImageParts("channels", values[0], (h, w), moments=moments[0])


def drawn_slice(shape: list[int] | torch.Size) -> str | None:
    """Which 2-D slice :func:`channel_parts` draws of an ``(N, C, *extra, H, W)`` tensor with
    extra dimensions (a video's frames, a volume's depth), in words; None without them."""
    extra = list(shape[2:-2])
    if not extra:
        return None
    where = "; ".join(f"dimension {k} (size {d}): index {d // 2}" for k, d in enumerate(extra, start=2))
    return (
        f"{len(shape)}-D output: each channel picture is its middle slice, {where} "
        "(e.g. the middle frame or depth); the numbers cover the whole output"
    )


def _pool_channels(x: torch.Tensor, tile: int, copy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, k, h, w)`` channels: each pooled to at most ``tile`` pixels a side, and their
    moments ``(B, k, 5)`` (see :class:`ImageParts`). ``copy``: ``x`` is not ours to keep."""
    b, k, h, w = x.shape
    flat = x.reshape(b * k, h * w)
    # Moments about each channel's first value: no cancellation when |mean| >> std.
    # (amin + amax: aminmax over a dim is ~7x slower on CPU.)
    first = flat[:, 0]
    shifted = flat - first.unsqueeze(1)
    moments = torch.stack(
        [flat.amin(dim=1), flat.amax(dim=1), first, shifted.sum(dim=1), torch.linalg.vecdot(shifted, shifted)],
        dim=1,
    ).view(b, k, 5)
    scale = max(h, w) / tile
    if scale > 1:
        th, tw = max(1, round(h / scale)), max(1, round(w / scale))
        return F.adaptive_avg_pool2d(x.float(), (th, tw)), moments
    return (x.clone() if copy else x), moments


def _pool_pending(parts: list[ImageParts]) -> None:
    """Pool the full-resolution copies of ``parts`` (those with ``tile``) in stacks of the
    same shape, at most FULL_COPY_VALUES * 16 values a stack."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(parts):
        if p.tile:
            v = p.values
            groups.setdefault((tuple(v.shape), v.dtype, v.device, p.tile), []).append(i)
    for (shape, _, _, tile), idx in groups.items():
        per_stack = max(1, (FULL_COPY_VALUES * 16) // max(1, math.prod(shape)))
        for at in range(0, len(idx), per_stack):
            chunk = idx[at : at + per_stack]
            values, moments = _pool_channels(torch.stack([parts[i].values for i in chunk]), tile, copy=False)
            for j, i in enumerate(chunk):
                parts[i].values, parts[i].moments, parts[i].tile = values[j], moments[j], 0


def matrix_parts(m: torch.Tensor, max_rows: int, max_cols: int, row_label: str, col_label: str) -> ImageParts:
    """A 2-D tensor as one picture, rows and columns evenly sampled down to the limits."""
    m = as_float(m)
    source_hw = (int(m.shape[0]), int(m.shape[1]))
    r_idx = _sample_index(m.shape[0], max_rows)
    c_idx = _sample_index(m.shape[1], max_cols)
    if r_idx is not None:
        m = m.index_select(0, r_idx.to(m.device))
    if c_idx is not None:
        m = m.index_select(1, c_idx.to(m.device))
    rows = r_idx.tolist() if r_idx is not None else list(range(m.shape[0]))
    cols = c_idx.tolist() if c_idx is not None else list(range(m.shape[1]))
    return ImageParts("matrix", m.clone(), source_hw, rows=rows, cols=cols, row_label=row_label, col_label=col_label)


def _quantise(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """uint8 pictures of a stack of same-shaped arrays ``v[i]``, each between its own
    ``lo[i]`` and ``hi[i]`` (symmetric about zero when it has both signs: ``diverging``).
    NaN and Inf are drawn as 0."""
    v = np.nan_to_num(v.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    axes = tuple(range(1, v.ndim))
    if v[0].size:
        lo, hi = v.min(axis=axes).astype(np.float64), v.max(axis=axes).astype(np.float64)
    else:
        lo = hi = np.zeros(len(v))
    diverging = (lo < 0) & (hi > 0)
    hi = np.where(diverging, np.maximum(-lo, hi), hi)
    lo = np.where(diverging, -hi, lo)
    span = hi - lo
    scale = np.divide(255.0, span, out=np.zeros_like(span), where=span > 0).astype(np.float32)
    shape = (-1,) + (1,) * (v.ndim - 1)
    q = np.rint((v - lo.astype(np.float32).reshape(shape)) * scale.reshape(shape)).clip(0, 255).astype(np.uint8)
    return q, lo, hi, diverging


def finish_images(parts: list[ImageParts]) -> list[GridImage]:
    """Quantise what the hooks kept into pictures: after the forward pass, in stacks of
    same-shaped pictures (one transfer per stack; per-channel statistics rounded in one
    vectorised call)."""
    if not parts:
        return []
    _pool_pending(parts)
    with_moments = [p.moments for p in parts if p.moments is not None]
    channel_stats: list[list[float | None]] = []
    if with_moments:
        mom = np.concatenate(to_numpy(with_moments)).astype(np.float64)
        lo, hi, first, s1, s2 = mom.T
        sizes = np.repeat(
            [p.source_hw[0] * p.source_hw[1] for p in parts if p.moments is not None], [len(m) for m in with_moments]
        ).astype(np.float64)
        m1 = s1 / sizes
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.maximum(s2 / sizes - m1 * m1, 0.0) * (sizes / (sizes - 1))
        var[sizes < 2] = np.nan
        flat = round_sig(np.stack([first + m1, np.sqrt(var), lo, hi], axis=1))
        channel_stats = [flat[i * 4 : (i + 1) * 4] for i in range(len(flat) // 4)]
    # Quantised in stacks of same-shaped pictures (a handful per model, not one per layer).
    # (Stacked one shape at a time, on the tensors' device: no copy of them all at once.)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(parts):
        groups.setdefault((p.kind, tuple(p.values.shape), p.values.device), []).append(i)
    drawn: dict[int, tuple] = {}
    for idx in groups.values():
        stack = torch.stack([parts[i].values.detach() for i in idx]).to("cpu", torch.float32).numpy()
        q, lo, hi, diverging = _quantise(stack)
        del stack
        for j, i in enumerate(idx):
            drawn[i] = (q[j], float(lo[j]), float(hi[j]), bool(diverging[j]))
    images = []
    at = 0
    for i, p in enumerate(parts):
        q, lo, hi, diverging = drawn[i]
        if p.kind == "channels":
            k, th, tw = q.shape
            images.append(
                GridImage(
                    kind="channels",
                    pixels=np.ascontiguousarray(q.transpose(1, 0, 2)).reshape(th, k * tw).tobytes(),
                    tile_h=th,
                    tile_w=tw,
                    tiles=k,
                    vmin=lo,
                    vmax=hi,
                    diverging=diverging,
                    source_hw=p.source_hw,
                    channels=list(range(k)),
                    channel_stats=channel_stats[at : at + k],
                )
            )
            at += k
        else:
            images.append(
                GridImage(
                    kind="matrix",
                    pixels=np.ascontiguousarray(q).tobytes(),
                    tile_h=q.shape[0],
                    tile_w=q.shape[1],
                    tiles=1,
                    vmin=lo,
                    vmax=hi,
                    diverging=diverging,
                    source_hw=p.source_hw,
                    rows=p.rows,
                    cols=p.cols,
                    row_label=p.row_label,
                    col_label=p.col_label,
                )
            )
    return images


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
