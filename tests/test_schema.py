"""Report.data, as a page embeds it, has exactly the documented shape: every key, and the type
of every value, for a tiny model that has each kind of entry (a conv map, a vector, module
and functional activations, a trajectory of two before-states, the graph)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import nnviz_report


@dataclass(frozen=True)
class Null:
    """The value or None (JSON null)."""

    inner: Any


@dataclass(frozen=True)
class Maybe:
    """A key that only some entries have."""

    inner: Any


@dataclass(frozen=True)
class MapOf:
    """An object with any string keys, each value of one shape."""

    values: Any


NUMBER = float  # a JSON number: int or float, never a bool
JSON = object  # anything JSON (an activation's constructor arguments)

HISTOGRAM = {"lo": NUMBER, "hi": NUMBER, "counts": [int], "every": int}
PARAMETER_STATS = {
    "mean": Null(NUMBER),
    "std": Null(NUMBER),
    "min": Null(NUMBER),
    "max": Null(NUMBER),
    "norm": Null(NUMBER),
    "nan_count": int,
    "inf_count": int,
}
CURVE = {"activation": str, "params": MapOf(JSON), "x": [Null(NUMBER)], "y": [Null(NUMBER)], "dy": [Null(NUMBER)]}

SCHEMA = {
    "schema_version": int,
    "title": str,
    "model": {
        "class_name": str,
        "num_parameters": int,
        "trainable_parameters": int,
        "input_shape": [int],
        "inputs": [{"name": str, "shape": [int], "dtype": str}],
        "device": str,
        "device_name": Null(str),
        "dtype": str,
        "mode": str,
    },
    "environment": {"nnviz_report": str, "torch": str, "python": str, "created": str},
    "activations": {
        "used": [str],
        "gallery_x": [Null(NUMBER)],
        "gallery": [
            {
                "name": str,
                "params": MapOf(JSON),
                "kind": str,
                "custom": bool,
                "used": bool,
                "output_range": [Null(NUMBER)],
                "derivative_max": NUMBER,
                "y": [Null(NUMBER)],
                "dy": [Null(NUMBER)],
            }
        ],
        "calls": [
            {
                "activation": str,
                "params": MapOf(JSON),
                "function": str,
                "source": str,
                "where": str,
                "call": int,
                "shape": [int],
                "kind": str,
                "dead_fraction": Null(NUMBER),
                "dead_channel_fraction": Null(NUMBER),
                "saturated_fraction": Null(NUMBER),
                "mean_derivative": Null(NUMBER),
                "batch": Null(int),
                "input_histogram": Null(HISTOGRAM),
                "curve": Null(str),
                "flagged": bool,
                "notes": [str],
            }
        ],
        "curves": MapOf({**CURVE, "derivative_max": NUMBER}),
        "internal": [{"module": str, "type": str, "activations": [str], "note": str}],
        "flags": [str],
    },
    "feature_maps": [
        {
            "name": str,
            "call": int,
            "type": str,
            "output": str,
            "shape": [int],
            "dtype": str,
            "mean": Null(NUMBER),
            "std": Null(NUMBER),
            "min": Null(NUMBER),
            "max": Null(NUMBER),
            "zero_fraction": Null(NUMBER),
            "nan_count": int,
            "inf_count": int,
            "histogram": Null(HISTOGRAM),
            "channels": Maybe(
                {
                    "index": [int],
                    "mean": [Null(NUMBER)],
                    "std": [Null(NUMBER)],
                    "min": [Null(NUMBER)],
                    "max": [Null(NUMBER)],
                }
            ),
            "notes": [str],
        }
    ],
    "parameters": [
        {
            "name": str,
            "module": str,
            "shape": [int],
            "dtype": str,
            "numel": int,
            "requires_grad": bool,
            "is_bias": bool,
            "before": Null(PARAMETER_STATS),
            "after": PARAMETER_STATS,
            "abs_change": Null(NUMBER),
            "relative_change": Null(NUMBER),
            "max_abs_change": Null(NUMBER),
            "flags": [str],
            "hist_before": Null(HISTOGRAM),
            "hist_after": Null(HISTOGRAM),
            "bias_before": Null([Null(NUMBER)]),
            "bias_after": Null([Null(NUMBER)]),
            "history": Null(
                [
                    {
                        "label": str,
                        "norm": Null(NUMBER),
                        "mean": Null(NUMBER),
                        "std": Null(NUMBER),
                        "relative_change": Null(NUMBER),
                    }
                ]
            ),
            "bias_history": Null([[Null(NUMBER)]]),
            "bias_history_index": Null([int]),
        }
    ],
    "graph": {
        "nodes": int,
        "edges": int,
        "residual_connections": int,
        "concat_skips": int,
        "branch_merges": int,
        "skips": [
            {
                "kind": str,
                "module": str,
                "node": str,
                "source": str,
                "through": [str],
                "projection": bool,
                "around": int,
            }
        ],
        "merges": [{"kind": str, "module": str, "node": str, "source": str, "branches": int}],
        "views": [{"id": str, "title": str, "nodes": int, "edges": int, "rendered": bool, "error": Null(str)}],
        "dot_version": Null(str),
        "note": Null(str),
    },
    "findings": [{"level": str, "section": str, "text": str}],
}


def check(value: Any, schema: Any, path: str = "data") -> None:
    """``value`` has the shape ``schema`` describes; an AssertionError names the first place
    where it does not."""
    if isinstance(schema, Null):
        if value is not None:
            check(value, schema.inner, path)
        return
    if schema is JSON:
        json.dumps(value, allow_nan=False)
        return
    if schema is NUMBER:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {value!r} is not a number"
        return
    if schema in (int, str, bool):
        assert type(value) is schema, f"{path}: {value!r} is not a {schema.__name__}"
        return
    if isinstance(schema, MapOf):
        assert isinstance(value, dict), f"{path}: not an object"
        for key, item in value.items():
            assert isinstance(key, str), f"{path}: key {key!r}"
            check(item, schema.values, f"{path}[{key!r}]")
        return
    if isinstance(schema, list):
        assert isinstance(value, list), f"{path}: not a list"
        for i, item in enumerate(value):
            check(item, schema[0], f"{path}[{i}]")
        return
    assert isinstance(schema, dict)
    assert isinstance(value, dict), f"{path}: not an object"
    required = {k for k, s in schema.items() if not isinstance(s, Maybe)}
    assert required <= value.keys() <= schema.keys(), (
        f"{path}: missing {sorted(required - value.keys())}, unexpected {sorted(value.keys() - schema.keys())}"
    )
    for key, item in value.items():
        inner = schema[key].inner if isinstance(schema[key], Maybe) else schema[key]
        check(item, inner, f"{path}[{key!r}]")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        y = self.act(self.conv(x)) + x  # a residual connection
        return self.fc(torch.sigmoid(y).flatten(1))


def test_the_data_of_a_tiny_model_has_the_documented_shape(tmp_path):
    model = Tiny()
    first = nnviz_report.snapshot(model, label="init")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    middle = nnviz_report.snapshot(model, label="middle")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    report = nnviz_report.build_report(model, torch.randn(2, 1, 4, 4), before=[first, middle])
    data = nnviz_report.read_report(report.save(tmp_path / "report.html"))  # as a reader gets it
    check(data, SCHEMA)
    # Each kind of entry is there, so that the schema above was checked against something.
    assert [c["source"] for c in data["activations"]["calls"]] == ["module", "functional"]
    assert "channels" in data["feature_maps"][0] and "channels" not in data["feature_maps"][-1]
    assert all(p["history"] for p in data["parameters"]) and data["parameters"][1]["bias_before"]
    assert data["graph"]["skips"] and data["graph"]["views"] and data["activations"]["curves"]


def test_the_checker_finds_what_differs():
    good = {"a": 1, "b": [1.5, None], "c": {"x": "y"}}
    schema = {"a": int, "b": [Null(NUMBER)], "c": MapOf(str), "d": Maybe(bool)}
    check(good, schema)
    for bad, where in (
        ({**good, "a": True}, "data['a']"),
        ({**good, "b": [1.5, "2"]}, "data['b'][1]"),
        ({**good, "e": 1}, "unexpected ['e']"),
        ({"b": [], "c": {}}, "missing ['a']"),
        ({**good, "c": {"x": 1}}, "data['c']['x']"),
    ):
        try:
            check(bad, schema)
        except AssertionError as exc:
            assert where in str(exc), (where, str(exc))
        else:
            raise AssertionError(f"{bad} passed")
