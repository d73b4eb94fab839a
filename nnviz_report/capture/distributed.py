"""``build_report`` and ``snapshot`` inside a ``torch.distributed`` job (torchrun).

Both are called on every rank. A model that every rank holds whole (DDP, DataParallel,
a plain module) needs no collective: rank 0 builds from its own copy, the other ranks
return None at once. A sharded model (FSDP2 ``fully_shard``, FSDP1, DTensor parameters)
needs every rank: each runs the forward pass (it gathers parameters as it goes) and takes
part in gathering the full state onto rank 0's CPU
(``torch.distributed.checkpoint.state_dict.get_model_state_dict`` with
``full_state_dict=True, cpu_offload=True``); rank 0 builds, the others return None.

Between those steps the ranks agree through the job's key-value store, which waits with a
timeout of its own: a rank that fails posts its error and raises at once; the others raise
an ``NNVizError`` naming it as soon as they reach the next step; a rank that never comes
(it did not call, or is stuck) makes the others fail after ``dist_timeout`` seconds. The
model's own collectives (FSDP's all-gathers) run on the model's process group and wait as
long as it was told to (``init_process_group(timeout=...)``).
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from .. import _compat
from ..errors import NNVizError

T = TypeVar("T")
# Modules that wrap another without a name of their own (FSDP1, activation checkpointing),
# and the attribute their wrapped module sits under.
WRAPPERS = ("FullyShardedDataParallel", "CheckpointWrapper", "OffloadWrapper")
WRAPPER_PARTS = ("_fsdp_wrapped_module", "_checkpoint_wrapped_module")
_calls = itertools.count()


def class_name(module: nn.Module) -> str:
    """The class a user wrote: FSDP2 swaps each sharded module's class for a subclass
    named ``FSDP<Class>``; FSDP1 wraps the module."""
    cls = type(module)
    bases = cls.__bases__
    if len(bases) == 2 and bases[0].__name__ == "FSDPModule":
        return bases[1].__name__
    inner = getattr(module, "module", None)
    if cls.__name__ in WRAPPERS and isinstance(inner, nn.Module):
        return class_name(inner)
    return cls.__name__


def module_names(model: nn.Module) -> dict[nn.Module, str]:
    """Each module's qualified name as its author wrote it: FSDP1 and activation-checkpoint
    wrappers are left out and their attribute names taken out of the others'."""
    names: dict[nn.Module, str] = {}
    wrapped = False
    for name, module in model.named_modules():
        if type(module).__name__ in WRAPPERS:
            wrapped = True
            continue
        names.setdefault(module, clean_name(name) if wrapped else name)
    return names


@dataclass
class Job:
    rank: int
    world: int
    sharded: bool  # every rank takes part in the forward pass and the gathering of the state
    timeout: float
    store: Any = None
    key: str = ""
    steps: int = 0

    def step(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on this rank, then wait until every rank has done its part.

        The outcome of a step is decided once, in the store: ``ok`` by the last rank to
        arrive, or the first failure (a rank's error, a rank that gave up waiting, ranks at
        different steps). A rank that fails raises at once, without waiting; the others
        raise as soon as they reach the step. A rank that comes late to a step that failed
        raises too, so the ranks' next calls meet again."""
        self.steps += 1
        base = f"{self.key}/{self.steps}"
        try:
            result = fn()
        except BaseException as exc:
            mine = f"rank {self.rank} failed in {what}: {_line(exc)}"
            first = self._decide(base, mine)
            if first not in (mine, "ok") and isinstance(exc, Exception):  # another rank failed first
                raise NNVizError(f"{first}; then rank {self.rank}: {_line(exc)}") from exc
            raise
        there = self.store.compare_set(f"{base}/what", "", what).decode("utf-8", "replace")
        if there != what:
            self._decide(
                base,
                f"rank {self.rank} reached {what} while another rank was in {there}: "
                "every rank must make the same nnviz_report calls in the same order",
            )
        elif self.store.add(f"{base}/arrived", 1) == self.world:
            self._decide(base, "ok")
        try:
            self.store.wait([f"{base}/done"], datetime.timedelta(seconds=self.timeout))
        except Exception:  # noqa: BLE001 - the store's timeout (DistStoreError, RuntimeError, by backend)
            arrived = self.store.add(f"{base}/arrived", 0)
            self._decide(
                base,
                f"rank {self.rank} gave up after {self.timeout:g} s in {what}: only {arrived} of "
                f"{self.world} ranks arrived; call it on every rank of the job (a sharded model "
                "needs all of them), or raise dist_timeout",
            )
        outcome = self.store.get(f"{base}/done").decode("utf-8", "replace")
        if outcome != "ok":
            raise NNVizError(outcome)
        return result

    def _decide(self, base: str, outcome: str) -> str:
        """Set the step's outcome unless one is set already; return the one that holds."""
        return self.store.compare_set(f"{base}/done", "", outcome).decode("utf-8", "replace")


def _line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:400]}"


def job_for(model: nn.Module, timeout: float) -> Job | None:
    """The job this process is a rank of, or None when it runs alone."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    import torch.distributed as dist

    world = dist.get_world_size()
    if world < 2:
        return None
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise NNVizError(f"dist_timeout must be a positive number of seconds, not {timeout!r}")
    job = Job(rank=dist.get_rank(), world=world, sharded=is_sharded(model), timeout=float(timeout))
    if job.sharded:
        job.store = _compat.default_store()
        if job.store is None:
            raise NNVizError(
                f"this torch ({torch.__version__}) does not expose the process group's key-value store, which a "
                "sharded model's report needs to keep the ranks in step; gather the full state_dict yourself "
                "and build the report from an unsharded copy on rank 0"
            )
        job.key = f"nnviz_report/{next(_calls)}"
    return job


def is_sharded(model: nn.Module) -> bool:
    """Whether the model's parameters are split across ranks (FSDP, DTensor)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    from torch.distributed.tensor import DTensor

    kinds: tuple[type, ...] = ()
    try:
        from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

        kinds = (FSDPModule, FullyShardedDataParallel)
    except ImportError:  # pragma: no cover - a torch built without FSDP
        pass
    return any(isinstance(m, kinds) for m in model.modules()) or any(isinstance(p, DTensor) for p in model.parameters())


def clean_name(name: str) -> str:
    return ".".join(part for part in name.split(".") if part not in WRAPPER_PARTS)


def gather_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full state_dict on rank 0's CPU ({} on the other ranks): a collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FullyShardedDataParallel

    # FSDP1 on the CPU cannot offload to the CPU (torch 2.13 frees the storage it reads:
    # "setStorage ... out of bounds for storage of size 0"); there every rank gathers.
    fsdp1_cpu = any(
        isinstance(m, FullyShardedDataParallel) and getattr(m.compute_device, "type", None) == "cpu"
        for m in model.modules()
    )
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=not fsdp1_cpu))
    if torch.distributed.get_rank() != 0:
        return {}
    return {k: v.cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}


def full_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> Any:
    """The model's Weights from the full state gathered on rank 0."""
    from .matching import Weights

    buffers = {clean_name(n) for n, _ in model.named_buffers()}
    named_params = [(clean_name(n), p) for n, p in model.named_parameters(remove_duplicate=False)]
    by_tensor: dict[int, list[str]] = {}
    for n, p in named_params:
        by_tensor.setdefault(id(p), []).append(n)
    aliases = {names[0]: names for names in by_tensor.values()}
    trainable = {n: p.requires_grad for n, p in named_params}
    for n, p in named_params:  # FSDP1's flat parameters: one flag for the parameters they hold
        if n.endswith("_flat_param"):
            prefix = n[: -len("_flat_param")]
            for fqn in _compat.flat_parameter_names(p):
                trainable[prefix + fqn] = p.requires_grad
            for alias, prim in _compat.flat_parameter_ties(p):  # held once: the tie is only known here
                trainable[prefix + alias] = p.requires_grad
                aliases.setdefault(prefix + prim, [prefix + prim]).append(prefix + alias)
    later = {n for names in aliases.values() for n in names[1:]}
    firsts = [k for k in state if k not in buffers and k not in later]
    return Weights(
        named=[(k, state[k]) for k in firsts],
        shapes={k: tuple(v.shape) for k, v in state.items()},
        aliases={k: aliases.get(k, [k]) for k in firsts},
        trainable=trainable,
    )


def settle() -> None:
    """Collect the garbage the sharded forward pass and gathering left (the build pauses the
    collector) before returning: left to Python's shutdown, a gloo thread may free an
    all-gather's tensors while Python shuts down, and the process aborts at exit
    (docs/performance.md)."""
    import gc

    gc.collect()
