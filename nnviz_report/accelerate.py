"""A report in an ``accelerate`` training script: call :func:`report` on every process.

>>> from nnviz_report.accelerate import report
>>> r = report(accelerator, model, example_input, before=snap)   # every process
>>> if r is not None:                                              # the main process
...     r.save("report.html")
"""

from __future__ import annotations

from typing import Any

from . import _integration as integ
from .errors import NNVizError

_accelerate = integ.require("accelerate", "'nnviz-report[accelerate]'")

__all__ = ["report"]

_UNSUPPORTED = ("DEEPSPEED", "MEGATRON_LM")  # shardings build_report cannot gather (FSDP it can)


def report(
    accelerator: Any, model: Any, example_input: Any, *, before: Any = None, timeout: float = 600.0, **build_kwargs: Any
) -> Any:
    """Build the report of ``model`` on the main process; call it on every process.

    The model is unwrapped first (``accelerator.unwrap_model``: DDP, torch.compile), so
    the forward pass never goes through a DDP wrapper, whose forward is a collective. With
    DDP every process holds the full parameters, so nothing needs gathering; with FSDP
    every process takes part in the forward pass and the gathering (take ``before`` with
    :func:`nnviz_report.snapshot` on every process too). DeepSpeed and Megatron are refused. The other
    processes wait at a barrier (at most ``timeout`` seconds) until the build is done; an
    error of the build is raised on the main process after that barrier. Returns the
    :class:`~nnviz_report.Report` on the main process and None elsewhere. Other keyword
    arguments go to :func:`nnviz_report.build_report`.
    """
    if not isinstance(accelerator, _accelerate.Accelerator):
        raise NNVizError(f"report() needs the accelerate.Accelerator of the run, not {type(accelerator).__name__}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise NNVizError(f"timeout must be a positive number of seconds, not {timeout!r}")
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper()
    if any(s in kind for s in _UNSUPPORTED):
        raise integ.sharded_strategy(kind)
    integ.check_build_kwargs(build_kwargs)
    integ.cpu_group()  # a collective: every process makes the barrier's group now
    module = accelerator.unwrap_model(model)
    if integ.sharded(module):
        # FSDP: every process takes part in the forward pass and in gathering the full
        # state; build_report keeps them in step and gives the report to rank 0 only. An
        # error is raised on every process alike.
        from .report import build_report

        result = build_report(module, example_input, before=before, **build_kwargs)
        integ.barrier(timeout, "the main process's nnviz-report")
        return result
    result = error = None
    if accelerator.is_main_process:
        from .report import build_report

        try:
            result = build_report(module, example_input, before=before, **build_kwargs)
        except Exception as exc:  # noqa: BLE001 - raised after the barrier, so no process waits for nothing
            error = exc
    integ.barrier(timeout, "the main process's nnviz-report")
    if error is not None:
        raise error
    return result
