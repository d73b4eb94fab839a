"""An activation as a 1-D function: its curve and derivative over a range of inputs, from
torch.nn's own module differentiated with autograd (no formula is written by hand here)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..numbers import round_sig
from .kinds import ACTIVATION_CLASSES, GATED, SOFTMAX, ctor_defaults, kind_of, params_key, plain_value

if TYPE_CHECKING:
    from .custom import CustomActivation


def make_function(
    name: str,
    params: Mapping[str, Any],
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation as an elementwise function of a 1-D tensor, built from torch.nn.

    Softmax-like modules are evaluated on the 2-class slice ``[x, 0]`` (first output), GLU on
    ``[x, x]``; PReLU with several learned slopes uses their mean; RReLU runs in eval mode
    (its fixed mean slope).
    """
    cls = ACTIVATION_CLASSES[name]
    kwargs = {k: v for k, v in params.items() if k in ctor_defaults(name) and v is not None}
    if name == "PReLU":
        module: nn.Module = cls(num_parameters=1, init=float(kwargs.pop("weight", 0.25)))
    elif kind_of(name) in (SOFTMAX, GATED) and name != "Softmax2d":
        kwargs["dim"] = -1
        module = cls(**kwargs)
    else:
        module = cls(**kwargs)
    module.to(device=device, dtype=dtype).eval()

    if name == "Softmax2d":
        return lambda x: module(torch.stack([x, torch.zeros_like(x)], dim=1)[:, :, None, None])[:, 0, 0, 0]
    if kind_of(name) == SOFTMAX:
        return lambda x: module(torch.stack([x, torch.zeros_like(x)], dim=-1))[..., 0]
    if name == "GLU":
        return lambda x: module(torch.stack([x, x], dim=-1))[..., 0]
    return module


@functools.lru_cache(maxsize=64)
def cached_function(name: str, key: tuple, dtype: torch.dtype, device: torch.device) -> Callable:
    return make_function(name, {k: list(v) if isinstance(v, tuple) else v for k, v in key}, dtype, device)


def curve(name: str, params: Mapping[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x), f'(x))`` with the derivative from autograd."""
    return curve_of(make_function(name, params, x.dtype, x.device), x)


def curve_of(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        xs = x.detach().clone().requires_grad_(True)
        y = fn(xs)
        (dy,) = torch.autograd.grad(y.sum(), xs)
    return y.detach(), dy.detach()


GALLERY_X = torch.linspace(-6.0, 6.0, 121, dtype=torch.float64)  # step 0.1: kinks at integers and 0.5s


@dataclass(frozen=True)
class CurveInfo:
    x: list[float | None]
    y: list[float | None]
    dy: list[float | None]
    output_range: tuple[float | None, float | None]  # None: unbounded on that side
    derivative_max: float


def _round(values: torch.Tensor, digits: int = 4) -> list[float | None]:
    return round_sig(values, digits)


FAR_X = torch.tensor([-1e6, -1e3, 1e3, 1e6], dtype=torch.float64)


@functools.lru_cache(maxsize=256)
def cached_curve_info(name: str, key: tuple) -> CurveInfo:
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in key}
    return info_of(functools.partial(curve, name, params))


def info_of(curve_at: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> CurveInfo:
    y, dy = curve_at(GALLERY_X)
    yf, dyf = curve_at(FAR_X)
    all_y = torch.cat([y, yf])
    lo, hi = float(all_y.min()), float(all_y.max())
    # A side is unbounded when the function still moves between |x| = 1e3 and 1e6.
    f_neg6, f_neg3, f_pos3, f_pos6 = yf.tolist()
    ends = [v for v in (f_neg6, f_pos6)]
    moving = [abs(f_neg6 - f_neg3) > 1.0, abs(f_pos6 - f_pos3) > 1.0]
    grows_up = any(m and e > 0 for m, e in zip(moving, ends))
    grows_down = any(m and e < 0 for m, e in zip(moving, ends))
    dmax = float(torch.cat([dy, dyf]).abs().max())
    return CurveInfo(
        x=_round(GALLERY_X, 6),
        y=_round(y),
        dy=_round(dy),
        output_range=(None if grows_down else float(f"{lo:.5g}"), None if grows_up else float(f"{hi:.5g}")),
        derivative_max=float(f"{dmax:.5g}"),
    )


def curve_info(name: str, params: Mapping[str, Any]) -> CurveInfo:
    return cached_curve_info(name, params_key(params))


def curve_over(
    name: str, params: Mapping[str, Any], lo: float, hi: float, custom: CustomActivation | None = None
) -> tuple[list, list, list]:
    """Points of the curve dense around zero and covering ``[lo, hi]`` (observed inputs)."""
    grid = torch.arange(-8.0, 8.0 + 1e-9, 0.05, dtype=torch.float64)
    lo, hi = min(lo, -1.0), max(hi, 1.0)
    span = torch.linspace(lo, hi, 201, dtype=torch.float64)
    x = torch.unique(torch.cat([grid[(grid >= lo) & (grid <= hi)], span]))
    y, dy = custom.curve(x) if custom is not None else curve(name, params, x)
    return _round(x, 6), _round(y), _round(dy)


GALLERY_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    (n, {k: plain_value(v) for k, v in ctor_defaults(n).items()}) for n in ACTIVATION_CLASSES
] + [("GELU", {"approximate": "tanh"})]
