"""Modules that are activations in practice without being torch.nn's (transformers'
NewGELUActivation, timm's activation layers, a user's Swish): picked by their class name,
measured like torch.nn's during the pass, and probed after it (is it elementwise? which
kind?) by calling the module's own ``forward`` on a range of inputs."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .curves import FAR_X, GALLERY_X, CurveInfo, curve_of, info_of
from .kinds import SATURATING, SATURATION, SMOOTH, ZEROING, classify_module

# Class names of activations that are not torch.nn's (transformers' NewGELUActivation,
# GELUActivation, SiLUActivation, timm's activation layers, a user's Swish or MyAct).
_ACTIVATION_NAME = re.compile(
    r"gelu|silu|swish|mish|relu|elu(?![a-z])|sigmoid|tanh|softplus|softsign|squareplus"
    r"|activation",
    re.I,
)


_ACT_WORD = re.compile(r"(?:^|(?<=[a-z0-9_]))Act(?=[A-Z0-9_]|$)")


CUSTOM_MAX_PARAMETERS = 64  # an activation holds at most a few learned numbers (a Swish's beta)


def custom_candidate(module: nn.Module) -> bool:
    """A leaf module named like an activation that is not one of torch.nn's. Whether it
    really is one (elementwise) is checked after the forward pass (:meth:`CustomActivation.probe`)."""
    if classify_module(module) is not None or next(module.children(), None) is not None:
        return False
    if sum(p.numel() for p in module.parameters(recurse=False)) > CUSTOM_MAX_PARAMETERS:
        return False
    name = type(module).__name__
    return bool(_ACTIVATION_NAME.search(name) or _ACT_WORD.search(name))


@contextlib.contextmanager
def running_custom(customs: Iterable[CustomActivation], training: bool | None) -> Iterator[None]:
    """Custom activation modules run after the forward pass (probe, curves, derivatives) in
    the mode of the forward pass, and without touching the global random state."""
    modules = [c.module for c in customs]
    before = [m.training for m in modules]
    devices = sorted({c.device.index or 0 for c in customs if c.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):
            for m in modules:
                if training is not None:
                    m.training = training
            yield
    finally:
        for m, mode in zip(modules, before):
            m.training = mode


@dataclass(frozen=True)
class Probe:
    """What :meth:`CustomActivation.probe` found: elementwise or not (same shape; each output
    depends on its own input only), and its kind from the curve: zeroing (flat zero to the
    left), saturating (flat bounded tails) or smooth."""

    elementwise: bool
    kind: str = SMOOTH


class CustomActivation:
    """A module that is an activation in practice: its curve, derivative and kind come from
    calling the module's own ``forward`` (no hooks) on a range of inputs, in the dtype and
    on the device it saw."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, device: torch.device):
        self.module = module
        self.name = type(module).__name__
        self.dtype = dtype if dtype.is_floating_point else torch.float32
        self.device = device
        self._info: CurveInfo | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) for any float tensor ``x``, differentiable, in ``x``'s dtype and device."""
        return self.module.forward(x.to(self.device, self.dtype)).to(x.device, x.dtype)

    def curve(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return curve_of(self, x)

    def info(self) -> CurveInfo:
        if self._info is None:
            self._info = info_of(self.curve)
        return self._info

    def probe(self) -> Probe:
        """Elementwise or not (reversing the inputs reverses the outputs, changing one input
        changes one output), and its kind (see :class:`Probe`). A module that cannot take a
        1-D range of inputs is not elementwise."""
        x = torch.cat([GALLERY_X, FAR_X])
        try:
            with torch.no_grad():
                y = self(x)
                flipped = self(x.flip(0))
                nudged = x.clone()
                nudged[60] += 0.5
                y2 = self(nudged)
            same = y.shape == x.shape and torch.allclose(flipped.flip(0), y, atol=1e-5, equal_nan=True)
            same = same and torch.equal(torch.cat([y[:60], y[61:]]), torch.cat([y2[:60], y2[61:]]))
            if not same:
                return Probe(elementwise=False)
            info = self.info()
        except Exception:  # noqa: BLE001 - any module's error: it is then not measured as an activation
            return Probe(elementwise=False)
        left = GALLERY_X <= -1.0
        y, dy = self.curve(GALLERY_X)
        if bool((y[left] == 0).all()) and bool((dy[left] == 0).all()):
            return Probe(elementwise=True, kind=ZEROING)
        if None not in info.output_range and float(self.curve(FAR_X)[1].abs().max()) < SATURATION * info.derivative_max:
            return Probe(elementwise=True, kind=SATURATING)
        return Probe(elementwise=True)
