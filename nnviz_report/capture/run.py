"""Capture everything a report needs from one model and one example input, and finish the
work the forward pass left pending.

:func:`capture` runs the forward pass and walks the autograd graph: a :class:`CapturedRun`,
which nothing changes afterwards. The rest can run while Graphviz lays the graph out (the
graph section needs none of it), each step returning what it made: :func:`count_histograms`,
``layers.draw_layer_pictures`` and ``layers.finish_layers`` (the feature maps),
:func:`measure_activations` (then ``summarise_activations`` with the counts), and
``parameters.compare`` with the snapshots.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import NNVizError
from . import distributed
from .activations import summary as activation_summary
from .activations.summary import MeasuredActivations
from .distributed import Job, class_name
from .forward import AutogradTrace, ForwardCapture, run_forward
from .graph import GraphCapture, capture_graph
from .histograms import CountedHistograms
from .matching import Weights
from .options import CaptureOptions
from .snapshot import Snapshot, load_checkpoint, unwrap_model


@dataclass(frozen=True)
class ModelInfo:
    class_name: str
    num_parameters: int
    trainable_parameters: int
    device: str
    dtype: str
    inputs: list[dict[str, Any]]  # {"name", "shape", "dtype"}
    mode: str  # mode the forward pass ran in


@dataclass(frozen=True)
class CapturedRun:
    """The forward pass and the autograd graph of one model on one example input."""

    model: ModelInfo
    forward: ForwardCapture
    graph: GraphCapture | None
    options: CaptureOptions
    graph_note: str | None = None  # why the graph is missing although it was asked for
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict)  # forward, graph


BeforeArg = Snapshot | Mapping[str, torch.Tensor] | str | os.PathLike[str] | None


def resolve_before(before: BeforeArg | Sequence[BeforeArg], trust_metadata: bool = False) -> list[Snapshot]:
    """Snapshots from what ``build_report(before=...)`` accepts: a Snapshot, a state_dict
    mapping, a checkpoint path (file or folder), or a sequence of them (oldest first) for
    trajectories. ``trust_metadata``: read torch.distributed.checkpoint folders."""
    if before is None:
        return []
    items = list(before) if isinstance(before, (list, tuple)) else [before]
    snaps = []
    for i, item in enumerate(items):
        label = "before" if len(items) == 1 else f"point {i}"
        if isinstance(item, Snapshot):
            snaps.append(item)
        elif isinstance(item, (str, os.PathLike)):
            snaps.append(load_checkpoint(item, trust_metadata=trust_metadata))
        elif isinstance(item, Mapping):
            snaps.append(Snapshot(dict(item), label=label, source=f"state_dict #{i}"))
        elif isinstance(item, nn.Module):
            raise NNVizError(
                "before= got a model; pass nnviz_report.snapshot(model) taken before training "
                "(a model object changes as it trains)"
            )
        else:
            raise NNVizError(
                f"before= got a {type(item).__name__}; pass a Snapshot, a state_dict, a checkpoint "
                "path, or a list of them"
            )
    return snaps


def check_model(model: Any) -> nn.Module:
    """The module to capture (unwrapped from DataParallel/DDP/torch.compile)."""
    if not isinstance(model, nn.Module):
        raise NNVizError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    model = unwrap_model(model)
    meta = next((n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta), None)
    if meta is not None:
        raise NNVizError(
            f"the model's tensors are on the meta device ({meta}: a shape without values), so there is "
            "nothing to run or draw; materialise it first, e.g. model.to_empty(device='cpu') and "
            "load_state_dict(...) with its weights"
        )
    return model


def capture(model: nn.Module, example_input: Any, options: CaptureOptions) -> CapturedRun:
    """The forward pass and the autograd graph of ``model`` (as :func:`check_model` returns
    it) on ``example_input``."""
    timings: dict[str, float] = {}
    fwd, trace = run_forward(model, example_input, options)
    timings["forward"] = fwd.seconds
    graph_capture = None
    t = time.perf_counter()
    try:
        if options.graph and fwd.no_autograd is None:
            graph_capture = _graph_or_note(fwd, trace, model)
    finally:
        trace.release()
    timings["graph"] = time.perf_counter() - t

    params = list(model.parameters())
    first = params[0] if params else None
    info = ModelInfo(
        class_name=model.original_name if isinstance(model, torch.jit.ScriptModule) else class_name(model),
        num_parameters=sum(p.numel() for p in params),
        trainable_parameters=sum(p.numel() for p in params if p.requires_grad),
        device=fwd.device,
        dtype=str(first.dtype).replace("torch.", "") if first is not None else "none",
        inputs=[
            {"name": label, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
            for label, t in fwd.inputs
        ],
        mode=fwd.mode,
    )
    graph_note = f"no autograd graph: {fwd.no_autograd}" if options.graph and fwd.no_autograd else None
    return CapturedRun(info, fwd, graph_capture, options, graph_note=graph_note, timings=timings)


def _graph_or_note(fwd: ForwardCapture, trace: AutogradTrace, model: nn.Module) -> GraphCapture:
    """The autograd graph; if capturing it fails, a note says why and the report goes on
    (the graph section can fail, the report cannot)."""
    params = trace.gathered if trace.gathered is not None else dict(model.named_parameters())
    try:
        return capture_graph(trace.output, params, trace.inputs, trace.owner, fwd.calls, trace.entries)
    except Exception as exc:  # noqa: BLE001 - any failure here must not cost the other sections
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return GraphCapture(note=f"the autograd graph could not be captured ({type(exc).__name__}: {first})")


def capture_sharded(
    job: Job, model: nn.Module, example_input: Any, options: CaptureOptions
) -> tuple[CapturedRun, Weights] | None:
    """The forward pass on every rank of a sharded model (the graph on rank 0 only), then
    the full state gathered onto rank 0: the run and the full weights there, None on the
    other ranks."""
    mine = options if job.rank == 0 else dataclasses.replace(options, graph=False)
    run = job.step("the forward pass", lambda: capture(model, example_input, mine))
    state = distributed.gather_state(model)
    if job.rank != 0:
        distributed.settle()
        return None
    weights = distributed.full_weights(model, state)
    info = dataclasses.replace(  # FSDP1's flat parameters hold this rank's shard
        run.model,
        num_parameters=sum(t.numel() for _, t in weights.named),
        trainable_parameters=sum(t.numel() for n, t in weights.named if weights.trainable.get(n, True)),
    )
    return dataclasses.replace(run, model=info), weights


def count_histograms(run: CapturedRun) -> CountedHistograms:
    """The counts of every histogram the hooks left pending (layer outputs and activation
    inputs), from the samples they kept."""
    return run.forward.histograms.count()


def measure_activations(run: CapturedRun) -> MeasuredActivations:
    """The activations' probes, derivatives (one autograd call per activation function) and
    curves, with the model's custom activation modules in the mode of the forward pass."""
    fwd, mode = run.forward, run.options.mode
    return activation_summary.measure_calls(
        fwd.activations, fwd.rnn_internals, fwd.custom, fwd.derivatives, None if mode == "as-is" else mode == "train"
    )
