"""How a saved state lines up with a model: the names each parameter may be saved under (tied
weights have several), the prefix a wrapper's checkpoint adds, and what is missing,
unexpected or of another shape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .._text import listed
from .stored import StoredTensors


@dataclass
class Weights:
    """What a model holds, by name: its parameters (tied ones once, in
    ``named_parameters`` order), the shape of every parameter and buffer its state_dict
    names, every name of each parameter (tied weights have several) and whether it trains.
    Built from the live model, or under FSDP from the full state gathered on rank 0."""

    named: list[tuple[str, torch.Tensor]]  # Parameters, or the gathered state's tensors
    shapes: dict[str, tuple[int, ...]]
    aliases: dict[str, list[str]] = field(default_factory=dict)
    trainable: dict[str, bool] = field(default_factory=dict)


def weights_of(model: nn.Module) -> Weights:
    state = {k: v for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    by_tensor: dict[int, list[str]] = {}
    for k, v in state.items():
        by_tensor.setdefault(id(v), []).append(k)
    named: list[tuple[str, torch.Tensor]] = list(model.named_parameters())
    return Weights(
        named=named,
        shapes={k: tuple(v.shape) for k, v in state.items()},
        aliases={n: by_tensor.get(id(p), [n]) for n, p in named},
        trainable={n: p.requires_grad for n, p in named},
    )


def _shape(state: Mapping[str, torch.Tensor], name: str) -> tuple[int, ...]:
    if isinstance(state, StoredTensors):
        return state.specs[name].shape
    return tuple(state[name].shape)


def align(weights: Weights, state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """``state`` with the prefix that stands between its names and the model's removed,
    when one does: Lightning keeps a module's weights under ``model.`` (the attribute's
    name), a checkpoint of a wrapper under the wrapper's. Names without it are kept."""
    names = list(state)
    direct = sum(n in weights.shapes for n in names)
    prefixes: Counter[str] = Counter()
    for n in names:
        parts = n.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in weights.shapes:
                prefixes[".".join(parts[:i]) + "."] += 1
    if not prefixes:
        return state
    prefix, hits = prefixes.most_common(1)[0]
    if hits <= direct:
        return state
    mapping = {n: n for n in names if not n.startswith(prefix)}
    mapping.update({n[len(prefix) :]: n for n in names if n.startswith(prefix)})
    if isinstance(state, StoredTensors):
        return state.renamed(mapping)
    return {new: state[old] for new, old in mapping.items()}


@dataclass(frozen=True)
class StateMatch:
    missing: list[str]  # in the model, not in the state (tied names whose twin is there excluded)
    unexpected: list[str]  # in the state, not in the model
    mismatched: list[str]  # "name: state (a, b) vs model (c, d)"
    tied: list[str] = field(default_factory=list)  # "name = twin": saved once, under the twin's name
    comparable: int = 0  # parameters found (under a name of theirs) with the same shape
    parameters: int = 0  # parameters of the model (tied ones once)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing {len(self.missing)} ({listed(self.missing, 6)})")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)} ({listed(self.unexpected, 6)})")
        if self.mismatched:
            parts.append(f"shape mismatch {len(self.mismatched)} ({listed(self.mismatched, 3)})")
        return "; ".join(parts)

    @property
    def partial(self) -> bool:
        """Some of the model's parameters have nothing to be compared with."""
        return self.comparable < self.parameters


def match_state(model: nn.Module | Weights, state: Mapping[str, torch.Tensor]) -> StateMatch:
    weights = model if isinstance(model, Weights) else weights_of(model)
    expected = weights.shapes
    twins = {a: names for names in weights.aliases.values() for a in names if len(names) > 1}
    missing, tied = [], []
    for k in expected:
        if k in state:
            continue
        twin = next((t for t in twins.get(k, ()) if t in state), None)
        if twin is None:
            missing.append(k)
        else:
            tied.append(f"{k} = {twin}")
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {_shape(state, k)} vs model {expected[k]}"
        for k in expected
        if k in state and _shape(state, k) != expected[k]
    ]
    comparable = sum(1 for n, _ in weights.named if pick(weights, state, n) is not None)
    return StateMatch(
        missing,
        unexpected,
        mismatched,
        tied,
        comparable,
        len(weights.named),
    )


def pick(weights: Weights, state: Mapping[str, torch.Tensor], name: str) -> str | None:
    """The name under which ``state`` holds parameter ``name`` with its shape (its own, or a
    tied twin's), or None."""
    shape = weights.shapes.get(name)
    for alias in weights.aliases.get(name, [name]):
        if alias in state and (shape is None or _shape(state, alias) == shape):
            return alias
    return None
