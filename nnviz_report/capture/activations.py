"""Activation functions: what the model uses, what inputs they really get, and their curves.

Curves and derivatives always come from torch's own ``torch.nn`` modules, differentiated
with autograd: no formula is written by hand here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .tensors import Histogram, HistogramCounts, as_float, histogram, nonzero_count, round_sig

# How an activation can go wrong, which decides what is measured on its inputs.
ZEROING = "zeroing"  # a flat zero region: units can die (ReLU, ReLU6, Threshold, shrinks)
SATURATING = "saturating"  # flat tails: inputs can saturate (Sigmoid, Tanh, Hardtanh, ...)
SMOOTH = "smooth"  # gradient flows almost everywhere (GELU, SiLU, LeakyReLU, ELU, ...)
SOFTMAX = "softmax"  # normalises along a dimension; shown on a 2-class slice
GATED = "gated"  # GLU: halves a dimension; shown as GLU([x, x])

_KINDS = {
    "ReLU": ZEROING,
    "ReLU6": ZEROING,
    "Threshold": ZEROING,
    "Hardshrink": ZEROING,
    "Softshrink": ZEROING,
    "Sigmoid": SATURATING,
    "Tanh": SATURATING,
    "Hardsigmoid": SATURATING,
    "Hardtanh": SATURATING,
    "Softsign": SATURATING,
    "LogSigmoid": SATURATING,
    "Softmax": SOFTMAX,
    "Softmin": SOFTMAX,
    "LogSoftmax": SOFTMAX,
    "Softmax2d": SOFTMAX,
    "GLU": GATED,
}
# Constructor arguments that are not part of the function (or are shown another way).
_NOT_PARAMS = {"inplace", "num_parameters", "init", "device", "dtype"}
# The gallery needs a value for constructor arguments without a default.
_GALLERY_REQUIRED = {"Threshold": {"threshold": 0.1, "value": 20.0}}
# Activations torch.nn ships whose module is not an elementwise function.
_NOT_ACTIVATIONS = {"MultiheadAttention"}


def _activation_classes() -> dict[str, type[nn.Module]]:
    names = [n for n in nn.modules.activation.__all__ if n not in _NOT_ACTIVATIONS]
    return {n: getattr(nn, n) for n in names}


ACTIVATION_CLASSES: dict[str, type[nn.Module]] = _activation_classes()


def kind_of(name: str) -> str:
    return _KINDS.get(name, SMOOTH)


@functools.cache
def _ctor_defaults(name: str) -> dict[str, Any]:
    sig = inspect.signature(ACTIVATION_CLASSES[name].__init__)
    out = {}
    for pname, p in list(sig.parameters.items())[1:]:
        if pname in _NOT_PARAMS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[pname] = None if p.default is inspect.Parameter.empty else p.default
    if name == "PReLU":
        out["weight"] = 0.25
    out.update(_GALLERY_REQUIRED.get(name, {}))
    return out


def _plain(value: Any) -> Any:
    """A parameter value as JSON-able data (PReLU's learned slopes become their mean)."""
    if isinstance(value, torch.Tensor):
        return round(float(value.detach().float().mean()), 6)
    if isinstance(value, float):
        return round(value, 6)
    return value


def classify_module(module: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """``(torch.nn class name, parameters)`` when ``module`` is an activation.

    Subclasses count as their nearest torch.nn activation base (``class MyReLU(nn.ReLU)`` is
    a ReLU); ReLU6 stays ReLU6 although it subclasses Hardtanh.
    """
    for cls in type(module).__mro__:
        name = cls.__name__
        if ACTIVATION_CLASSES.get(name) is cls:
            params = {p: _plain(getattr(module, p, None)) for p in _ctor_defaults(name)}
            if name == "PReLU" and module.weight.numel() > 1:
                params["slopes"] = module.weight.numel()  # "weight" is their mean
            return name, params
    return None


# --- functional calls --------------------------------------------------------------------


def _functional_table() -> dict[Callable, tuple[str, tuple[str, ...]]]:
    T = torch.Tensor
    groups: list[tuple[str, tuple[str, ...], tuple[Any, ...]]] = [
        ("ReLU", (), (torch.relu, torch.relu_, F.relu, F.relu_, T.relu, T.relu_)),
        ("Sigmoid", (), (torch.sigmoid, torch.sigmoid_, F.sigmoid, torch.special.expit, T.sigmoid, T.sigmoid_)),
        ("Tanh", (), (torch.tanh, torch.tanh_, F.tanh, T.tanh, T.tanh_)),
        ("GELU", ("approximate",), (F.gelu,)),
        ("SiLU", (), (F.silu,)),
        ("Mish", (), (F.mish,)),
        ("ELU", ("alpha",), (F.elu, F.elu_)),
        ("SELU", (), (F.selu, F.selu_, torch.selu, torch.selu_)),
        ("CELU", ("alpha",), (F.celu, F.celu_, torch.celu, torch.celu_)),
        ("LeakyReLU", ("negative_slope",), (F.leaky_relu, F.leaky_relu_)),
        ("ReLU6", (), (F.relu6,)),
        ("Hardtanh", ("min_val", "max_val"), (F.hardtanh, F.hardtanh_)),
        ("Hardsigmoid", (), (F.hardsigmoid,)),
        ("Hardswish", (), (F.hardswish,)),
        ("LogSigmoid", (), (F.logsigmoid,)),
        ("Softplus", ("beta", "threshold"), (F.softplus,)),
        ("Softsign", (), (F.softsign,)),
        ("Softshrink", ("lambd",), (F.softshrink,)),
        ("Hardshrink", ("lambd",), (F.hardshrink, torch.hardshrink, T.hardshrink)),
        ("Tanhshrink", (), (F.tanhshrink,)),
        ("Threshold", ("threshold", "value"), (F.threshold, F.threshold_, torch.threshold, torch.threshold_)),
        ("GLU", ("dim",), (F.glu,)),
        ("Softmax", ("dim",), (F.softmax, torch.softmax, T.softmax)),
        ("LogSoftmax", ("dim",), (F.log_softmax, torch.log_softmax, T.log_softmax)),
        ("Softmin", ("dim",), (F.softmin,)),
        ("PReLU", ("weight",), (F.prelu, torch.prelu)),
        ("RReLU", ("lower", "upper"), (F.rrelu, F.rrelu_, torch.rrelu, torch.rrelu_)),
    ]
    table: dict[Callable, tuple[str, tuple[str, ...]]] = {}
    for name, positional, funcs in groups:
        for f in funcs:
            table[f] = (name, positional)
    return table


FUNCTIONAL: dict[Callable, tuple[str, tuple[str, ...]]] = _functional_table()


def function_name(func: Callable) -> str:
    """How the user wrote the call: ``torch.relu``, ``F.gelu``, ``Tensor.tanh``."""
    name = getattr(func, "__name__", repr(func))
    qual = getattr(func, "__qualname__", name)
    if qual.startswith(("TensorBase.", "Tensor.")):
        return "Tensor." + name
    module = getattr(func, "__module__", None) or ""
    if module.startswith("torch.nn.functional") or module == "torch._C._nn":
        return "F." + name
    if isinstance(func, type(torch.relu)) and getattr(torch, name, None) is func:
        return "torch." + name
    if getattr(F, name, None) is func:
        return "F." + name
    if getattr(torch.special, name, None) is func:
        return "torch.special." + name
    return "torch." + name


def classify_call(func: Callable, args: tuple, kwargs: Mapping) -> tuple[str, dict[str, Any]] | None:
    """``(torch.nn class name, parameters)`` when ``func(*args, **kwargs)`` is an activation."""
    entry = FUNCTIONAL.get(func)
    if entry is None or not args or not isinstance(args[0], torch.Tensor):
        return None
    name, positional = entry
    defaults = _ctor_defaults(name)
    params = {k: v for k, v in defaults.items() if k != "weight"}
    for pname, value in zip(positional, args[1:]):
        params[pname] = value
    for pname in positional:
        if pname in kwargs:
            params[pname] = kwargs[pname]
    if name == "RReLU":
        params.pop("inplace", None)
    return name, {k: _plain(v) for k, v in params.items()}


def rnn_internals(module: nn.Module) -> list[str] | None:
    """Activations fused inside recurrent modules, which no hook can observe."""
    if isinstance(module, (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell)):
        return ["Sigmoid", "Tanh"]
    if isinstance(module, (nn.RNN, nn.RNNCell)):
        return ["ReLU" if getattr(module, "nonlinearity", "tanh") == "relu" else "Tanh"]
    return None


# --- evaluating an activation as a 1-D function ------------------------------------------


def params_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


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
    kwargs = {k: v for k, v in params.items() if k in _ctor_defaults(name) and v is not None}
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
def _cached_function(name: str, key: tuple, dtype: torch.dtype, device: torch.device) -> Callable:
    return make_function(name, {k: list(v) if isinstance(v, tuple) else v for k, v in key}, dtype, device)


def curve(name: str, params: Mapping[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x), f'(x))`` with the derivative from autograd."""
    return _curve_of(make_function(name, params, x.dtype, x.device), x)


def _curve_of(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        xs = x.detach().clone().requires_grad_(True)
        y = fn(xs)
        (dy,) = torch.autograd.grad(y.sum(), xs)
    return y.detach(), dy.detach()


GALLERY_X = torch.linspace(-6.0, 6.0, 121, dtype=torch.float64)  # step 0.1: kinks at integers and 0.5s


@dataclass(frozen=True)
class CurveInfo:
    x: list[float]
    y: list[float]
    dy: list[float]
    output_range: tuple[float | None, float | None]  # None: unbounded on that side
    derivative_max: float


def _round(values: torch.Tensor, digits: int = 4) -> list[float | None]:
    return round_sig(values, digits)


FAR_X = torch.tensor([-1e6, -1e3, 1e3, 1e6], dtype=torch.float64)


@functools.lru_cache(maxsize=256)
def _curve_info(name: str, key: tuple) -> CurveInfo:
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in key}
    return _info_of(functools.partial(curve, name, params))


def _info_of(curve_at: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> CurveInfo:
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
    return _curve_info(name, params_key(params))


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


# --- modules that are activations in practice ----------------------------------------------

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


class CustomActivation:
    """A module that is an activation in practice: its curve, derivative and kind come from
    calling the module's own ``forward`` (no hooks) on a range of inputs, in the dtype and
    on the device it saw."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, device: torch.device):
        self.module = module
        self.name = type(module).__name__
        self.dtype = dtype if dtype.is_floating_point else torch.float32
        self.device = device
        self.kind = SMOOTH
        self.elementwise: bool | None = None  # decided by probe()
        self.why = ""
        self._info: CurveInfo | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) for any float tensor ``x``, differentiable, in ``x``'s dtype and device."""
        return self.module.forward(x.to(self.device, self.dtype)).to(x.device, x.dtype)

    def curve(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _curve_of(self, x)

    def info(self) -> CurveInfo:
        if self._info is None:
            self._info = _info_of(self.curve)
        return self._info

    def probe(self) -> None:
        """Elementwise or not (same shape; each output depends on its own input only:
        reversing the inputs reverses the outputs, changing one input changes one output),
        and its kind from the curve: zeroing (flat zero to the left), saturating (flat
        bounded tails) or smooth."""
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
                self.elementwise, self.why = False, "its outputs are not one per input"
                return
            info = self.info()
        except Exception as exc:
            self.elementwise = False
            self.why = f"calling it on a range of inputs failed ({type(exc).__name__}: {str(exc)[:80]})"
            return
        self.elementwise = True
        left = GALLERY_X <= -1.0
        y, dy = self.curve(GALLERY_X)
        if bool((y[left] == 0).all()) and bool((dy[left] == 0).all()):
            self.kind = ZEROING
        elif (
            None not in info.output_range and float(self.curve(FAR_X)[1].abs().max()) < SATURATION * info.derivative_max
        ):
            self.kind = SATURATING


# --- measuring real calls -----------------------------------------------------------------

SAMPLE = 16384  # inputs at which the derivative is evaluated (strided sample)
SATURATION = 0.01  # |f'(x)| below 1% of the derivative's maximum counts as saturated
SOFTMAX_PEAKED = 0.99


@dataclass
class ActivationCall:
    """One call of an activation during the forward pass, reduced to numbers."""

    activation: str  # torch.nn class name
    params: dict[str, Any]
    where: str  # qualified module name (module) or the module whose forward made the call
    source: str  # "module" or "functional"
    function: str  # "ReLU" / "MyReLU (ReLU subclass)" or "torch.relu"
    call: int  # 0-based count per (where, function)
    shape: list[int]
    input_hist: Histogram | None = None
    dead_fraction: float | None = None
    dead_channel_fraction: float | None = None
    saturated_fraction: float | None = None
    mean_derivative: float | None = None
    batch: int | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = ""  # ZEROING, SATURATING, ...: kind_of(activation), or a custom activation's
    custom: bool = False  # a module that is an activation in practice (probed after the forward)
    inside: ActivationCall | None = None  # the custom activation module this call ran in

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = kind_of(self.activation)


class Derivatives:
    """Derivatives at the sampled inputs of many activation calls, taken together after the
    forward pass: one autograd call per activation function, not one per call. The samples
    are small copies (at most ``SAMPLE`` values per call)."""

    def __init__(self) -> None:
        self._todo: dict[tuple, list[tuple[ActivationCall, torch.Tensor]]] = {}
        # Modules that are activations in practice, by (class name, params_key(parameters)).
        self.custom: dict[tuple, CustomActivation] = {}

    def add(self, call: ActivationCall, xs: torch.Tensor) -> None:
        key = (call.activation, params_key(call.params), xs.dtype, xs.device)
        self._todo.setdefault(key, []).append((call, xs))

    def run(self) -> None:
        todo, self._todo = self._todo, {}
        for (name, key, dtype, device), items in todo.items():
            custom = self.custom.get((name, key))
            if custom is not None and not custom.elementwise:
                continue
            info = custom.info() if custom is not None else _curve_info(name, key)
            fn = custom if custom is not None else _cached_function(name, key, dtype, device)
            with torch.enable_grad():
                xs = torch.cat([x for _, x in items]).requires_grad_(True)
                (dy,) = torch.autograd.grad(fn(xs).sum(), xs)
            # Per call: the mean of the derivatives and, outside the ReLU family (dead units
            # say it better), the fraction below 1% of the derivative's maximum; one
            # read-back for all calls. A call whose sum is not finite (NaN from non-finite
            # inputs, which are never "saturated") is averaged again over its non-NaN values.
            sizes = [x.numel() for _, x in items]
            parts = dy.split(sizes)
            sums = [part.sum() for part in parts]
            saturating = (custom.kind if custom is not None else kind_of(name)) != ZEROING
            if saturating:
                low = (dy.abs() < SATURATION * info.derivative_max).to(dtype)
                sums += [part.sum() for part in low.split(sizes)]
            values = torch.stack(sums).tolist()
            for i, ((call, x), part) in enumerate(zip(items, parts)):
                mean_d = values[i] / x.numel()
                if not math.isfinite(mean_d):
                    kept = part[~torch.isnan(part)]
                    mean_d = float(kept.mean()) if kept.numel() else math.nan
                call.mean_derivative = mean_d if math.isfinite(mean_d) else None
                if saturating:
                    call.saturated_fraction = values[len(items) + i] / x.numel()


def measure_input(
    call: ActivationCall,
    x: torch.Tensor,
    bins: int,
    hist: Histogram | None = None,
    derivatives: Derivatives | None = None,
    later: HistogramCounts | None = None,
) -> None:
    """Histogram of the inputs (``hist`` when the caller already has it) and, for
    elementwise activations, the derivative at a sample of them (strided, at most 16 384
    values), computed on the tensor's device. With ``derivatives``, the derivatives wait for its
    ``run()``; with ``later``, the histogram's counts wait for its ``run()``."""
    if not x.is_floating_point():
        call.notes.append(f"input dtype {x.dtype} is not floating point; not measured")
        return
    call.input_hist = hist if hist is not None else histogram(x, bins, later)
    if call.kind in (SOFTMAX, GATED) or x.numel() == 0:
        return
    flat = as_float(x).reshape(-1)
    step = max(1, -(-flat.numel() // SAMPLE))
    xs = flat[::step].detach()
    xs = xs.float() if xs.dtype not in (torch.float32, torch.float64) else xs.clone()
    own = derivatives is None
    derivatives = derivatives or Derivatives()
    derivatives.add(call, xs)
    if own:
        derivatives.run()


def measure_output(
    call: ActivationCall, y: torch.Tensor, zero_fraction: float | None = None, non_negative: bool = False
) -> None:
    """Dead units (zeroing activations) or peaked rows (softmax) from the real output.
    ``zero_fraction``: that of ``y``, when the caller has it (it is the dead fraction of a
    batch of one); ``non_negative``: the caller knows ``y``'s minimum is >= 0 (a ReLU's)."""
    kind = call.kind
    if kind == ZEROING and y.dim() >= 2 and y.shape[0] > 0:
        # A unit is dead when it is zero for every example (NaN is not zero). Everything is
        # counted through bool casts and min/max: comparing with zero branches on the data,
        # ~5x slower on ReLU outputs (half zeros) on CPU.
        y = y.detach()
        units = y[0] if y.shape[0] == 1 else y.abs().amax(dim=0)
        known = zero_fraction if y.shape[0] == 1 else None
        counts = [] if known is not None else [nonzero_count(units)]
        if units.dim() >= 2:  # per channel: dead at every position too
            flat = units.reshape(units.shape[0], -1)
            alive = flat.amax(dim=1).bool()  # NaN is True: alive
            if not (non_negative or y.shape[0] > 1):  # |y| above is >= 0 already
                alive |= flat.amin(dim=1).bool()
            counts.append(nonzero_count(alive))
        out = torch.stack(counts).tolist() if counts else []
        call.dead_fraction = known if known is not None else 1.0 - out.pop(0) / units.numel()
        call.dead_channel_fraction = 1.0 - out[0] / units.shape[0] if out else None
        call.batch = int(y.shape[0])
    elif kind == SOFTMAX and y.numel():
        dim = call.params.get("dim")
        if call.activation == "Softmax2d":
            dim = -3
        if dim is None:
            return
        probs = as_float(y)
        if call.activation == "LogSoftmax":
            probs = probs.exp()
        call.saturated_fraction = float((probs.amax(dim=dim) > SOFTMAX_PEAKED).float().mean())


# --- summary for the report -----------------------------------------------------------------

GALLERY_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    (n, {k: _plain(v) for k, v in _ctor_defaults(n).items()}) for n in ACTIVATION_CLASSES
] + [("GELU", {"approximate": "tanh"})]


@dataclass(frozen=True)
class GalleryEntry:
    name: str
    params: dict[str, Any]
    used: bool
    curve: CurveInfo
    kind: str = ""
    custom: bool = False  # a module that is an activation in practice, not one of torch.nn's

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", kind_of(self.name))


@dataclass
class ActivationSummary:
    calls: list[ActivationCall]
    call_curves: list[str | None]  # per call: key into ``curves``
    curves: dict[str, dict[str, Any]]  # dense curves over the observed input ranges
    gallery: list[GalleryEntry]
    internals: list[tuple[str, str, list[str]]]  # (module, type, activations) fused in RNNs
    used: list[str]  # torch.nn class names, in order of first use


def summarise(
    calls: list[ActivationCall],
    internals: list[tuple[str, str, list[str]]],
    custom: Mapping[tuple, CustomActivation] | None = None,
) -> ActivationSummary:
    """The gallery (every torch.nn activation; the used ones first, with the parameters the
    model used) and, per used (activation, parameters), a curve dense enough to be read at
    any observed input. ``custom``: modules that are activations in practice, by (name,
    params_key), probed: an entry that is not elementwise gets no curve."""
    custom = dict(custom or {})

    def own(c: ActivationCall) -> CustomActivation | None:
        return custom.get((c.activation, params_key(c.params))) if c.custom else None

    # A custom module that is elementwise stands for the calls inside it; one that is not is
    # no activation, and the calls inside it are listed as they are.
    calls = [
        c
        for c in calls
        if not ((c.custom and not own(c).elementwise) or (c.inside is not None and own(c.inside).elementwise))
    ]
    for c in calls:
        if c.custom:
            c.kind = own(c).kind
            if c.kind != ZEROING:
                c.dead_fraction = c.dead_channel_fraction = None
    drawable = {k for k, own in custom.items() if own.elementwise}
    used: list[str] = []
    variants: dict[tuple[str, tuple], dict[str, Any]] = {}
    ranges: dict[tuple[str, tuple], list[float]] = {}
    for c in calls:
        if c.activation not in used:
            used.append(c.activation)
        k = (c.activation, params_key(c.params))
        variants.setdefault(k, c.params)
        if c.input_hist is not None:
            lo_hi = ranges.setdefault(k, [c.input_hist.lo, c.input_hist.hi])
            lo_hi[0] = min(lo_hi[0], c.input_hist.lo)
            lo_hi[1] = max(lo_hi[1], c.input_hist.hi)
    for _, _, names in internals:
        for n in names:
            if n not in used:
                used.append(n)

    curves: dict[str, dict[str, Any]] = {}
    keys: dict[tuple[str, tuple], str] = {}

    def info(name: str, params: Mapping[str, Any]) -> CurveInfo:
        own = custom.get((name, params_key(params)))
        return own.info() if own is not None else curve_info(name, params)

    for k, params in variants.items():
        if k not in ranges or (k in custom and k not in drawable):
            continue
        lo, hi = ranges[k]
        x, y, dy = curve_over(k[0], params, lo, hi, custom.get(k))
        key = f"c{len(curves)}"
        keys[k] = key
        curves[key] = {
            "activation": k[0],
            "params": params,
            "x": x,
            "y": y,
            "dy": dy,
            "derivative_max": info(k[0], params).derivative_max,
        }
    call_curves = [keys.get((c.activation, params_key(c.params))) for c in calls]

    gallery = [
        GalleryEntry(k[0], p, True, info(k[0], p), kind=custom[k].kind if k in custom else "", custom=k in custom)
        for k, p in variants.items()
        if k not in custom or k in drawable
    ]
    shown = set(variants)
    for _, _, names in internals:
        for n in names:
            default = next(p for v, p in GALLERY_VARIANTS if v == n)
            if (n, params_key(default)) not in shown:
                shown.add((n, params_key(default)))
                gallery.append(GalleryEntry(n, default, True, curve_info(n, default)))
    for name, params in GALLERY_VARIANTS:
        if (name, params_key(params)) not in shown:
            gallery.append(GalleryEntry(name, params, False, curve_info(name, params)))
    return ActivationSummary(calls, call_curves, curves, gallery, internals, used)
