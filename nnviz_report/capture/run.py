"""Capture everything a report needs from one model and one example input."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import NNVizError
from . import activations as act
from .distributed import class_name
from .forward import CaptureOptions, ForwardCapture, run_forward
from .graph import GraphCapture, capture_graph
from .parameters import ParameterComparison
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


@dataclass
class CapturedRun:
    model: ModelInfo
    forward: ForwardCapture
    graph: GraphCapture | None
    options: CaptureOptions
    snapshots: list[Snapshot]
    activations: act.ActivationSummary | None = None  # filled by finish_activations()
    parameters: ParameterComparison | None = None  # filled by build_report (parameters.compare)
    graph_note: str | None = None  # why the graph is missing although it was asked for
    timings: dict[str, float] = field(default_factory=dict)


BeforeArg = Snapshot | Mapping[str, torch.Tensor] | str | os.PathLike | None


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


def capture(
    model: nn.Module, example_input: Any, snapshots: Sequence[Snapshot] | None, options: CaptureOptions
) -> CapturedRun:
    """The forward pass and the autograd graph. Steps follow that can run while Graphviz
    lays the graph out (the graph section needs none of them): :func:`count_histograms`,
    :func:`finish_activations`, :func:`finish_images` and the comparison of the parameters
    with the snapshots (``parameters.compare``)."""
    model = check_model(model)
    snapshots = list(snapshots or [])
    timings: dict[str, float] = {}
    fwd = run_forward(model, example_input, options)
    timings["forward"] = fwd.seconds
    graph_capture = None
    t = time.perf_counter()
    try:
        if options.graph and fwd.no_autograd is None:
            graph_capture = _graph_or_note(fwd, model)
    finally:
        fwd.release()
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
    return CapturedRun(info, fwd, graph_capture, options, snapshots, timings=timings, graph_note=graph_note)


def _graph_or_note(fwd: ForwardCapture, model: nn.Module) -> GraphCapture:
    """The autograd graph; if capturing it fails, a note says why and the report goes on
    (the graph section can fail, the report cannot)."""
    params = fwd.gathered if fwd.gathered is not None else dict(model.named_parameters())
    try:
        return capture_graph(fwd.output, params, fwd.inputs, fwd.owner, fwd.calls, fwd.entries)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return GraphCapture(note=f"the autograd graph could not be captured ({type(exc).__name__}: {first})")


def finish_activations(run: CapturedRun) -> None:
    """The derivatives the hooks sampled (one autograd call per activation function) and
    the activation summary."""
    t = time.perf_counter()
    derivatives = run.forward.derivatives
    mode = run.options.mode
    with act.running_custom(derivatives.custom.values(), None if mode == "as-is" else mode == "train"):
        for custom in derivatives.custom.values():
            custom.probe()
        derivatives.run()
        run.activations = act.summarise(run.forward.activation_calls, run.forward.rnn_internals, derivatives.custom)
    run.timings["activation curves"] = time.perf_counter() - t


def count_histograms(run: CapturedRun) -> None:
    """The histograms of layer outputs and activation inputs, from the samples the hooks
    kept (the activations section and the feature-map section read them)."""
    t = time.perf_counter()
    run.forward.histograms.run()
    run.timings["histograms"] = time.perf_counter() - t


def finish_images(run: CapturedRun) -> None:
    """The feature maps' pictures, from the small copies the hooks kept."""
    t = time.perf_counter()
    run.forward.draw_images()
    run.timings["pictures"] = time.perf_counter() - t
