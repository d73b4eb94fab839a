"""What a capture cannot see into, and says so: modules the forward pass never called,
TorchScript modules (compiled code runs without Python hooks), and parameters created under
inference mode (autograd cannot record them)."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from .distributed import class_name, module_names


def uncalled(model: nn.Module, counts: Counter[str]) -> list[tuple[str, str, str]]:
    out = []
    modules = {name: module for module, name in module_names(model).items()}
    for name, module in modules.items():
        if counts[name]:
            continue
        parent = modules.get(name.rpartition(".")[0]) if name else None
        if isinstance(module, torch.jit.ScriptModule):
            if isinstance(parent, torch.jit.ScriptModule):
                continue  # said of the outermost TorchScript module
            why = (
                "TorchScript (torch.jit.script/trace): runs as compiled code, which forward hooks "
                "and the functional-activation view cannot see into"
            )
        elif isinstance(parent, nn.MultiheadAttention) and name.endswith("out_proj"):
            why = "applied functionally by MultiheadAttention; its output is the attention block's entry"
        elif any(counts[n] for n in modules if n.startswith(name + ".")):
            why = "a container whose children were called directly"
        else:
            why = "not called by forward (unused, or skipped by a fused fast path)"
        out.append((name, class_name(module), why))
    return out


def scripted_modules(model: nn.Module) -> list[str]:
    """The outermost TorchScript modules of ``model``, by name ("(root)": the model)."""
    modules = dict(model.named_modules())
    return [
        n or "(root)"
        for n, m in modules.items()
        if isinstance(m, torch.jit.ScriptModule)
        and not (n and isinstance(modules.get(n.rpartition(".")[0]), torch.jit.ScriptModule))
    ]


def scripted_notes(model: nn.Module, scripted: list[str]) -> list[str]:
    if not scripted:
        return []
    return [
        (
            f"the model is a TorchScript module ({model.original_name})"
            if scripted == ["(root)"]
            else f"TorchScript modules: {', '.join(scripted[:4])}{' and more' if len(scripted) > 4 else ''}"
        )
        + ": compiled code runs without Python hooks, so the layer outputs and activation calls "
        "inside it are not in this report (its output, parameters and autograd graph are); pass "
        "the module as it was before torch.jit.script/trace to see them"
    ]


def inference_tensors(model: nn.Module) -> str | None:
    """Why autograd cannot run through ``model``, or None: parameters or buffers created
    under ``torch.inference_mode()`` cannot be saved for a backward pass. (The forward pass
    then runs without autograd: every number of the report but the graph.)"""
    names = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_inference()]
    if not names:
        return None
    return (
        f"the model's parameters and buffers ({names[0]}{' and more' if len(names) > 1 else ''}) were "
        "created under torch.inference_mode(), and autograd cannot record them; create the model "
        "outside inference mode (load_state_dict copies the weights) to see the graph"
    )
