"""What the training-framework integrations share: importing an optional framework with a
clear error, copying an example batch, and the one collective they call (a barrier with a
timeout) so that no rank waits forever for the rank that builds the report."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import inspect
import random
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from .errors import NNVizError

# Keys of a dict batch that are targets, not model inputs (Lightning's first-batch guess).
LABEL_KEYS = ("labels", "label", "target", "targets", "y")


def require(module: str, pip: str) -> Any:
    """Import an optional framework, or say which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NNVizError(f"{module} is not installed ({exc}); install it with: pip install {pip}") from None


def check_build_kwargs(
    kwargs: Mapping[str, Any], taken: tuple[str, ...] = ("model", "example_input", "before")
) -> dict:
    """``build_report`` keyword arguments given to a callback, checked when the callback is
    made instead of at the end of training."""
    from .report import build_report

    allowed = set(inspect.signature(build_report).parameters) - set(taken)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise NNVizError(
            f"unknown build_report option(s) {', '.join(unknown)}; choose from {', '.join(sorted(allowed))}"
        )
    return dict(kwargs)


def check_filename(filename: Any) -> str:
    if (
        not isinstance(filename, str)
        or not filename.endswith(".html")
        or filename != filename.strip()
        or "/" in filename
        or "\\" in filename
        or filename.startswith(".")
    ):
        raise NNVizError(
            f"filename must be a plain file name ending in .html, such as 'nnviz-report.html', not {filename!r}"
        )
    return filename


def cpu_copy(value: Any) -> Any:
    """A detached CPU copy of every tensor in a (nested) batch; other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {k: cpu_copy(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(cpu_copy(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(v) for v in value)
    return value


def input_from_batch(batch: Any, drop_keys: tuple[str, ...] = LABEL_KEYS) -> Any:
    """The model input in a training batch, by the common conventions: a tensor as it is;
    a dict (``model(**batch)``) without its label keys; ``(x, y, ...)`` -> ``x``."""
    if isinstance(batch, Mapping):
        kept = {k: v for k, v in batch.items() if k not in drop_keys}
        if not kept:
            raise NNVizError(
                f"the training batch has only label keys ({', '.join(map(str, batch))}); pass example_input="
            )
        return kept
    if isinstance(batch, (list, tuple)) and batch and not hasattr(batch, "_fields"):
        return batch[0]
    return batch


@contextlib.contextmanager
def rng_kept() -> Iterator[None]:
    """Python's, NumPy's and torch's random states restored afterwards: drawing an example
    (a dataset with random augmentation) must not change the training run."""
    py = random.getstate()
    np_state = None
    try:
        import numpy as np

        np_state = np.random.get_state()
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            if np_state is not None:
                np.random.set_state(np_state)


def distributed() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


_cpu_group: list[Any] = [None, None]  # [the default group it was made for, the gloo group]


def cpu_group() -> Any:
    """A gloo group of all ranks, made once per default process group, for :func:`barrier`;
    None without a process group. Making it is a collective: call this on every rank at the
    same point (the integrations do at the start of training). On an NCCL group a barrier's
    ``wait(timeout)`` only makes the GPU stream wait; on gloo it blocks the CPU, with the
    timeout kept."""
    _rank, world = distributed()
    if world == 1:
        return None
    dist = torch.distributed
    if _cpu_group[0] is not dist.group.WORLD:
        _cpu_group[:] = [dist.group.WORLD, dist.new_group(backend="gloo")]
    return _cpu_group[1]


def barrier(timeout: float, what: str = "the report") -> bool:
    """Every rank waits here for the rank that builds the report, at most ``timeout``
    seconds (then a warning, not a hang), on :func:`cpu_group`. No-op without a process
    group. True when all ranks met."""
    rank, world = distributed()
    if world == 1:
        return True
    try:
        work = torch.distributed.barrier(group=cpu_group(), async_op=True)
        work.wait(timeout=_dt.timedelta(seconds=timeout))
    except Exception as exc:  # noqa: BLE001 - a timed-out or broken collective must not end training
        warnings.warn(
            f"nnviz-report: rank {rank} stopped waiting for {what} after {timeout:g} s ({exc})",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def sharded(model: Any) -> bool:
    """The model's parameters are split across the ranks (FSDP): every rank must then call
    snapshot() and build_report() (rank 0 gets the results), not rank zero alone."""
    from .capture.distributed import is_sharded

    return model is not None and is_sharded(model)


def sharded_strategy(name: str) -> NNVizError:
    """A sharding nnviz-report cannot gather (DeepSpeed, Megatron, Lightning's ModelParallel).
    FSDP is supported: build_report and snapshot gather the full state on every rank."""
    return NNVizError(
        f"{name} shards the model over the ranks in a way nnviz-report cannot gather (FSDP it can); "
        "use DDP or FSDP for the run you report on, or build the report after training from a saved "
        "full checkpoint (nnviz-report build ... --after CHECKPOINT)"
    )


def warn_failed(what: str, exc: BaseException) -> None:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    warnings.warn(f"nnviz-report: {what}: {type(exc).__name__}: {text}", RuntimeWarning, stacklevel=3)
