"""Every private torch symbol the package uses, each behind a function with a fallback.

torch does not promise these names; they are here, and only here, so that a torch release
that renames one breaks one line of this file instead of a report. ``tests/test_compat.py``
checks that each exists on the pinned torch and that each fallback gives a working (if
slower, or less detailed) report. Each fallback is chosen when this module is imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

# -- torch-function modes ---------------------------------------------------------------------

_pop_mode_temporarily: Callable[[], contextlib.AbstractContextManager[Any]] | None
try:  # what torch's own mode machinery uses (since torch 1.13)
    from torch.overrides import _pop_mode_temporarily
except ImportError:  # pragma: no cover - checked by tests/test_compat.py
    _pop_mode_temporarily = None
_mode_stack_len: Callable[[], int] | None = getattr(torch._C, "_len_torch_function_stack", None)


def modes_off() -> contextlib.AbstractContextManager[Any]:
    """Step out of the active torch-function mode(s) for the capture's own tensor work.
    Without the private names the work stays inside the mode, which lets it through:
    slower, same result."""
    if _pop_mode_temporarily is None or _mode_stack_len is None or _mode_stack_len() == 0:
        return contextlib.nullcontext()
    return _pop_mode_temporarily()


# -- foreach ops (one call for a list of tensors, as torch.optim uses them) ---------------------

Scalars = float | Sequence[float]


def _each(values: Scalars, n: int) -> Sequence[float]:
    return values if isinstance(values, Sequence) else [values] * n


def one_by_one(method: str) -> Callable[..., Any]:
    """The fallback of a foreach op: the tensor method ``method`` on each tensor in turn
    (with its own value from a list of them, or all with one value)."""
    in_place = method.endswith("_")

    def each(tensors: list[torch.Tensor], values: Scalars | None = None) -> list[torch.Tensor] | None:
        args = [()] * len(tensors) if values is None else [(v,) for v in _each(values, len(tensors))]
        out = [getattr(t, method)(*a) for t, a in zip(tensors, args)]
        return None if in_place else out

    return each


FOREACH_OPS = ("sub", "sub_", "mul_", "clamp_min_", "clamp_max_", "floor_", "add_")
_foreach: dict[str, Callable[..., Any]] = {
    m: getattr(torch, f"_foreach_{m}", None) or one_by_one(m) for m in FOREACH_OPS
}
foreach_sub = _foreach["sub"]
foreach_sub_ = _foreach["sub_"]
foreach_mul_ = _foreach["mul_"]
foreach_clamp_min_ = _foreach["clamp_min_"]
foreach_clamp_max_ = _foreach["clamp_max_"]
foreach_floor_ = _foreach["floor_"]
foreach_add_ = _foreach["add_"]


# -- tensors ------------------------------------------------------------------------------------

HAS_VERSION = hasattr(torch.Tensor, "_version")
HAS_VIEWS = hasattr(torch.Tensor, "_is_view") and hasattr(torch.Tensor, "_base")


def version(t: torch.Tensor) -> int | None:
    """The tensor's version counter (bumped by every in-place write; torch raises a
    RuntimeError for an inference tensor, which has none), or None on a torch without
    ``Tensor._version`` (then no tensor counts as unchanged)."""
    if not HAS_VERSION:
        return None
    return t._version


def view_base(t: torch.Tensor) -> torch.Tensor | None:
    """The tensor ``t`` is a view of, or None (not a view, or a torch that does not say)."""
    if not HAS_VIEWS or not t._is_view():
        return None
    return t._base


# -- modules -------------------------------------------------------------------------------------

HAS_SLOTS = hasattr(nn.Module(), "_parameters") and hasattr(nn.Module(), "_buffers")


def parameter_slots(module: nn.Module) -> list[tuple[str, nn.Parameter | None]]:
    """The parameters ``module`` holds itself, by attribute name (None where it holds none,
    e.g. ``bias=False``); without ``Module._parameters``, the ones ``named_parameters`` lists."""
    if not HAS_SLOTS:
        return list(module.named_parameters(recurse=False, remove_duplicate=False))
    return list(module._parameters.items())


def buffer_slots(module: nn.Module) -> list[tuple[str, torch.Tensor | None]]:
    """The buffers ``module`` holds itself, by attribute name (see :func:`parameter_slots`)."""
    if not HAS_SLOTS:
        return list(module.named_buffers(recurse=False, remove_duplicate=False))
    return list(module._buffers.items())


def put_parameter(module: nn.Module, name: str, p: nn.Parameter | None) -> None:
    """Make ``p`` the parameter ``module`` holds under ``name``, unless it already is."""
    if not HAS_SLOTS:
        if getattr(module, name, None) is not p:
            setattr(module, name, p)
    elif module._parameters.get(name) is not p:
        module._parameters[name] = p


def put_buffer(module: nn.Module, name: str, buf: torch.Tensor | None) -> None:
    """Make ``buf`` the buffer ``module`` holds under ``name`` (persistent or not, as it
    was), unless it already is."""
    if not HAS_SLOTS:
        if getattr(module, name, None) is not buf:
            setattr(module, name, buf)
    elif module._buffers.get(name) is not buf:
        module._buffers[name] = buf


_functorch_level: Callable[[], int | None] | None = getattr(
    getattr(torch._C, "_functorch", None), "maybe_current_level", None
)


def in_functorch_transform() -> bool:
    """Whether this runs inside ``torch.func.vmap``, ``grad`` or another functorch transform,
    where tensors are wrappers whose values cannot be read (False where torch does not say)."""
    return _functorch_level is not None and _functorch_level() is not None


def holds_packed_weights(module: nn.Module) -> bool:
    """A quantized module with weights (``torch.ao.nn.quantized``'s Linear, Conv, ...): they
    are packed in ``_packed_params``, not ``nn.Parameter``s. (Quantize/DeQuantize hold only
    a scale.)"""
    return hasattr(module, "_packed_params") and not type(module).__name__.endswith("PackedParams")


def hook_dicts(module: nn.Module) -> list[tuple[str, dict[Any, Any]]]:
    """Every per-module hook registry (``_forward_hooks``, ``_forward_pre_hooks_with_kwargs``,
    ``_backward_hooks``, state-dict hooks, ...), found by name, so that a registry a later
    torch adds is covered too."""
    return [(name, value) for name, value in vars(module).items() if "hooks" in name and isinstance(value, dict)]


_CHANNELS_FIRST_BASES = (
    (nn.modules.conv, "_ConvNd"),
    (nn.modules.pooling, "_MaxPoolNd"),
    (nn.modules.pooling, "_AvgPoolNd"),
    (nn.modules.batchnorm, "_BatchNorm"),
    (nn.modules.pooling, "_AdaptiveAvgPoolNd"),
)
# Their public subclasses, for a torch without those bases.
_CHANNELS_FIRST_PUBLIC = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)  # fmt: skip


def channels_first_classes(bases: Sequence[tuple[Any, str]] = _CHANNELS_FIRST_BASES) -> tuple[type, ...]:
    """Modules whose 3-D outputs are (channels, positions) per example: convolutions,
    poolings and batch norms, by their private base classes (which a user's subclass of
    them has too), or their public classes where a base is missing."""
    found = tuple(getattr(where, name, None) for where, name in bases)
    if all(isinstance(c, type) for c in found):
        return found  # type: ignore[return-value]
    return _CHANNELS_FIRST_PUBLIC


CHANNELS_FIRST = channels_first_classes()


def compiled_module(model: nn.Module) -> nn.Module | None:
    """The module ``torch.compile`` wrapped (``OptimizedModule._orig_mod``), or None."""
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) else None


_eager_lock = threading.Lock()
_eager_builds = 0  # builds inside eager_stance now, in any thread
_eager_set: Any = None  # the set_stance object whose exit puts the stance before them back


@contextlib.contextmanager
def eager_stance() -> Iterator[None]:
    """Every ``torch.compile`` directive ignored while it is entered (``set_stance("force_eager")``,
    process-wide), or nothing to do: when Dynamo was never imported, nothing was compiled
    (and importing it would cost seconds); inside a compiled region, or in a torch without
    stances, nothing either. Builds in several threads share it: the first in sets it, the
    last out puts back the stance from before the first (each putting back its own would
    leave force_eager on when two overlap without nesting)."""
    global _eager_builds, _eager_set
    set_stance = getattr(torch.compiler, "set_stance", None)
    if "torch._dynamo" not in sys.modules or set_stance is None:
        yield
        return
    with _eager_lock:
        if _eager_builds == 0:
            try:
                _eager_set = set_stance("force_eager")
            except RuntimeError:  # "attempted to set_stance in a torch.compile region"
                _eager_set = None
        _eager_builds += 1
    try:
        yield
    finally:
        with _eager_lock:
            _eager_builds -= 1
            if _eager_builds == 0 and _eager_set is not None:
                _eager_set.__exit__(None, None, None)
                _eager_set = None


# -- autograd ------------------------------------------------------------------------------------


def output_numel(fn: Any, nr: int) -> int | None:
    """How many values the forward output ``nr`` of autograd node ``fn`` had (from the
    metadata autograd keeps to check gradients' shapes), or None where torch does not say."""
    try:
        return math.prod(fn._input_metadata[nr].shape)
    except (AttributeError, IndexError, RuntimeError, TypeError):
        return None


def sequence_nr(fn: Any) -> int:
    """When autograd created the node (it numbers them per thread, in order); -1 for
    accumulators of leaves, which have none, and where torch does not say."""
    try:
        n = fn._sequence_nr()
    except (AttributeError, RuntimeError):
        return -1
    return -1 if n >= 2**63 else int(n)


_OP_OVERLOAD: Any = getattr(getattr(torch, "_ops", None), "OpOverload", ())


def writes_first_argument(func: Any) -> bool | None:
    """For a torch operator overload (``torch.ops.aten.add_.Tensor``), whether its schema
    says it writes its arguments; None for anything else (and where torch does not say)."""
    if not isinstance(func, _OP_OVERLOAD):
        return None
    schema = getattr(func, "_schema", None)
    return None if schema is None else bool(schema.is_mutable)


# -- kernel threads ------------------------------------------------------------------------------


@functools.cache
def thread_controls() -> tuple[Any, Any, Any] | None:
    """``omp_get_max_threads`` and ``omp_set_num_threads`` of the OpenMP runtime torch's CPU
    kernels run on, and MKL's ``MKL_Set_Num_Threads_Local`` (None without MKL); or None
    when OpenMP cannot be reached (no OpenMP build, or its symbols are not visible). All
    three act on the calling thread only."""
    if os.name != "posix" or "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        omp = ctypes.CDLL(None)
        get, set_ = omp.omp_get_max_threads, omp.omp_set_num_threads
    except (OSError, AttributeError):
        return None
    mkl = None
    for lib in sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")):
        try:  # already loaded (privately): this finds that copy. (The lower-case name is
            # the Fortran entry point, which takes a pointer.)
            mkl = ctypes.CDLL(str(lib)).MKL_Set_Num_Threads_Local
        except (OSError, AttributeError):
            continue
        mkl.argtypes, mkl.restype = [ctypes.c_int], ctypes.c_int
        break
    return get, set_, mkl


# -- torch.distributed ---------------------------------------------------------------------------


def default_store() -> Any:
    """The key-value store of the default process group, or None where torch does not
    expose it."""
    import torch.distributed as dist

    get = getattr(dist.distributed_c10d, "_get_default_store", None)
    return None if get is None else get()


def flat_parameter_names(p: Any) -> Sequence[str]:
    """The names of the parameters an FSDP1 flat parameter holds (``FlatParameter._fqns``);
    empty where torch does not say."""
    return getattr(p, "_fqns", None) or ()


def flat_parameter_ties(p: Any) -> list[tuple[str, str]]:
    """The tied parameters an FSDP1 flat parameter holds once, as (name, name of the one it
    is tied to), both relative to the flat parameter's module (``_shared_param_infos``);
    empty where torch does not say."""
    ties = []
    for info in getattr(p, "_shared_param_infos", None) or ():
        try:
            alias = f"{info.module_name}.{info.param_name}" if info.module_name else info.param_name
            prim = f"{info.prim_module_name}.{info.prim_param_name}" if info.prim_module_name else info.prim_param_name
        except AttributeError:
            return []
        ties.append((alias, prim))
    return ties
