"""What building a report changes beyond its own objects, in one place."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import torch

from . import _compat


class BuildEnvironment:
    """Everything a build changes in the process and its threads, each put back on exit.

    - Python's cyclic garbage collector is paused, process-wide, and resumed on exit if it
      was on: a build allocates many short-lived objects and no garbage cycles to speak of,
      and each collection would stop every thread. What the build leaves is collected at
      the collector's next run.
    - In the calling thread, autograd is on and inference mode off, whatever the caller's
      context (``torch.no_grad()``, ``torch.inference_mode()``): the example input's copy
      must be an autograd leaf for the graph to start at it.
    - Where anything may have been compiled (Dynamo imported), ``torch.compile`` is set to
      run eagerly, process-wide (``torch.compiler.set_stance("force_eager")``, the previous
      stance put back on exit): a compiled submodule would hide its layers from the hooks
      and its operations from the autograd graph, and Dynamo would trace the hooks' own
      code (seconds of recompiling).
    - While :meth:`lanes` runs: torch's CPU kernels run on one thread, in the calling
      thread and in each lane thread (OpenMP's and MKL's per-thread settings, put back in
      the calling thread on exit): two-thread kernels on busy cores spin-wait for each
      other. Not ``torch.set_num_threads``, which is process-wide: threads started meanwhile
      would keep 1 for their whole life, and it clears oneDNN's primitive cache under other
      threads' convolutions.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> BuildEnvironment:
        with self._stack as stack:
            if gc.isenabled():
                gc.disable()
                stack.callback(gc.enable)
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            stack.enter_context(_compat.eager_stance())
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return self._stack.__exit__(kind, exc, tb)

    @contextlib.contextmanager
    def lanes(self, workers: int) -> Iterator[ThreadPoolExecutor]:
        """A pool of ``workers`` lane threads, with one kernel thread each and in the caller."""
        before = one_kernel_thread()
        try:
            with ThreadPoolExecutor(max_workers=workers, initializer=one_kernel_thread) as pool:
                yield pool
        finally:
            _restore_kernel_threads(before)


def one_kernel_thread() -> tuple[int, int] | None:
    """This thread's torch CPU kernels run on one thread from now on; returns the settings
    before (None: unchanged). OpenMP's setting belongs to the calling thread, and so does
    MKL's local one (BLAS calls such as torch.dot follow it, not OpenMP's, once
    torch.set_num_threads has been called in the thread)."""
    controls = _compat.thread_controls()
    if controls is None:
        return None
    get, set_, mkl = controls
    torch.get_num_threads()  # torch sets up this thread's OpenMP count once, on first use
    before = get()
    set_(1)
    return before, (mkl(1) if mkl is not None else 0)


def _restore_kernel_threads(before: tuple[int, int] | None) -> None:
    """Undo :func:`one_kernel_thread` in this thread."""
    controls = _compat.thread_controls()
    if before is not None and controls is not None:
        _, set_, mkl = controls
        set_(before[0])
        if mkl is not None:
            mkl(before[1])  # 0: the process-wide setting again
