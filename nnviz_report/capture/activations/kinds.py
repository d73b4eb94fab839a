"""Which torch.nn activation a module or a functional call is, what kind it is, and its
constructor's parameters."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# How an activation can go wrong, which decides what is measured on its inputs.
ZEROING = "zeroing"  # a flat zero region: units can die (ReLU, ReLU6, Threshold, shrinks)
SATURATING = "saturating"  # flat tails: inputs can saturate (Sigmoid, Tanh, Hardtanh, ...)
SMOOTH = "smooth"  # gradient flows almost everywhere (GELU, SiLU, LeakyReLU, ELU, ...)
SOFTMAX = "softmax"  # normalises along a dimension; shown on a 2-class slice
GATED = "gated"  # GLU: halves a dimension; shown as GLU([x, x])
SATURATION = 0.01  # |f'(x)| below 1% of the derivative's maximum counts as saturated

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
def ctor_defaults(name: str) -> dict[str, Any]:
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


def plain_value(value: Any) -> Any:
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
            params = {p: plain_value(getattr(module, p, None)) for p in ctor_defaults(name)}
            weight = getattr(module, "weight", None)
            if name == "PReLU" and isinstance(weight, torch.Tensor) and weight.numel() > 1:
                params["slopes"] = weight.numel()  # "weight" is their mean
            return name, params
    return None


def params_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


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
        ("Threshold", ("threshold", "value"), (F.threshold, F.threshold_, torch.threshold, torch.threshold_)),  # type: ignore[attr-defined]
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
    defaults = ctor_defaults(name)
    params = {k: v for k, v in defaults.items() if k != "weight"}
    for pname, value in zip(positional, args[1:]):
        params[pname] = value
    for pname in positional:
        if pname in kwargs:
            params[pname] = kwargs[pname]
    if name == "RReLU":
        params.pop("inplace", None)
    return name, {k: plain_value(v) for k, v in params.items()}


def rnn_internals(module: nn.Module) -> list[str] | None:
    """Activations fused inside recurrent modules, which no hook can observe."""
    if isinstance(module, (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell)):
        return ["Sigmoid", "Tanh"]
    if isinstance(module, (nn.RNN, nn.RNNCell)):
        return ["ReLU" if getattr(module, "nonlinearity", "tanh") == "relu" else "Tanh"]
    return None
