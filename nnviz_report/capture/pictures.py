"""Pictures of layer outputs: what a hook keeps (:class:`ImageParts`, or a
:class:`FullResolution` copy still to be pooled), and the uint8 pictures drawn from them
after the pass (:class:`GridImage`, by :func:`draw_pictures`, in stacks of same-shaped
pictures)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .numbers import round_sig
from .stats import as_float, to_numpy

# A hook keeps the channels it draws at full resolution (see channel_parts) up to this many
# values per picture (1 MiB of float32), and this many in all in one forward pass (64 MiB);
# beyond, it pools them itself.
FULL_COPY_VALUES = 2**18


FULL_COPY_BUDGET = 2**24


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


@dataclass(frozen=True)
class ImageParts:
    """What a hook keeps to draw a tensor later: small copies, on the tensor's device.

    ``values``: the picture before quantisation; ``(k, th, tw)`` pooled channel tiles or an
    ``(r, c)`` sampled matrix. ``moments``: per channel ``(min, max, first value, sum of
    values minus the first, sum of their squares)`` over the full-resolution channel.
    """

    kind: str
    values: torch.Tensor
    source_hw: tuple[int, int]
    moments: torch.Tensor | None = None
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    row_label: str = ""
    col_label: str = ""


@dataclass(frozen=True)
class FullResolution:
    """The ``(k, h, w)`` channels a hook kept at full resolution (a copy), to be pooled to at
    most ``tile`` pixels a side, and their moments taken, by :func:`draw_pictures`."""

    values: torch.Tensor
    source_hw: tuple[int, int]
    tile: int

    @property
    def kind(self) -> str:
        return "channels"


Picture = ImageParts | FullResolution


def channel_parts(t: torch.Tensor, example: int, max_channels: int, tile: int, full_copy: int = 0) -> Picture:
    """The first ``max_channels`` channels of example ``example`` of an ``(N, C, *spatial)``
    tensor, each average-pooled to at most ``tile`` pixels a side, and their moments; or,
    when those channels hold at most ``full_copy`` values, a copy of them at full
    resolution, pooled later by :func:`draw_pictures` (one copy here instead of a dozen
    small ops in a forward hook).

    3-D spatial maps (``N, C, D, H, W``) show their middle depth slice.
    """
    x = as_float(t[example])
    while x.dim() > 3:
        x = x[:, x.shape[1] // 2]
    c, h, w = x.shape
    x = x[: min(c, max_channels)]
    if x.numel() <= full_copy:  # a copy: the model may rewrite its output in place later
        return FullResolution(x.clone(memory_format=torch.contiguous_format), (h, w), tile)
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
    # (amin + amax: aminmax over a dim is slower on CPU.)
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


def _pooled(parts: list[Picture]) -> list[ImageParts]:
    """``parts`` with every full-resolution copy pooled, in stacks of the same shape, at most
    FULL_COPY_VALUES * 16 values a stack."""
    out: list[ImageParts | None] = [p if isinstance(p, ImageParts) else None for p in parts]
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(parts):
        if isinstance(p, FullResolution):
            v = p.values
            groups.setdefault((tuple(v.shape), v.dtype, v.device, p.tile), []).append(i)
    for (shape, _, _, tile), idx in groups.items():
        per_stack = max(1, (FULL_COPY_VALUES * 16) // max(1, math.prod(shape)))
        for at in range(0, len(idx), per_stack):
            chunk = idx[at : at + per_stack]
            values, moments = _pool_channels(torch.stack([parts[i].values for i in chunk]), tile, copy=False)
            for j, i in enumerate(chunk):
                out[i] = ImageParts("channels", values[j], parts[i].source_hw, moments=moments[j])
    return out  # type: ignore[return-value]


def _sample_index(size: int, limit: int) -> torch.Tensor | None:
    if size <= limit:
        return None
    return torch.linspace(0, size - 1, limit).round().long()


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
    NaN and Inf are left out of the range and drawn at its low end."""
    v = v.astype(np.float32, copy=False)
    axes = tuple(range(1, v.ndim))
    finite = np.isfinite(v)
    if not finite.all():  # a range of the finite values, not stretched to 0 by a NaN drawn as 0
        low = np.where(finite, v, np.inf).min(axis=axes)
        low = np.where(np.isfinite(low), low, 0.0).astype(np.float32)
        v = np.where(finite, v, low.reshape((-1,) + (1,) * (v.ndim - 1)))
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


def draw_pictures(kept: list[Picture]) -> list[GridImage]:
    """Quantise what the hooks kept into pictures: after the forward pass, in stacks of
    same-shaped pictures (one transfer per stack; per-channel statistics rounded in one
    vectorised call)."""
    if not kept:
        return []
    parts = _pooled(kept)
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
