"""What the parameters section says first: no before-state, before-states that fit the model
only in part, and flagged, complex or packed parameters."""

from __future__ import annotations

from .._text import listed
from ..capture.parameters import ParameterComparison
from . import Notice
from ._format import complex_text, plural

ID = "parameters"


def notices(comp: ParameterComparison) -> list[Notice]:
    """No before-state, before-states that fit the model only partly, and flagged parameters."""
    records = comp.records
    notices = []
    if not comp.labels:
        notices.append(
            Notice(
                "info",
                "No before-training state was given, so nothing is compared yet: call "
                "snap = nnviz_report.snapshot(model) before training and pass build_report(..., before=snap), "
                "or pass --before CHECKPOINT on the command line.",
                ID,
            )
        )
    for source, label, match in zip(comp.sources, comp.labels, comp.matches):
        if match.partial:
            notices.append(
                Notice(
                    "warning",
                    f"{source} ({label}) holds {match.comparable} of the model's {match.parameters} parameters under "
                    f"the same name and shape, so the others are not compared: {match.describe()}; was it saved "
                    "from this model?",
                    ID,
                    about_input=True,
                )
            )
        elif match.missing or match.unexpected or match.mismatched:
            notices.append(
                Notice("info", f"{source} ({label}) does not cover the model exactly: {match.describe()}", ID)
            )
        if match.tied:
            notices.append(Notice("info", f"{source} ({label}) saves tied weights once: {listed(match.tied, 4)}", ID))
    if comp.packed:
        notices.append(
            Notice(
                "info",
                f"{plural(len(comp.packed), 'quantized module')} "
                f"{'holds' if len(comp.packed) == 1 else 'hold'} packed weights, not parameters, so "
                f"{'it is' if len(comp.packed) == 1 else 'they are'} not summarised or compared: "
                f"{listed(comp.packed, 4)}",
                ID,
            )
        )
    complex_ = [r.name for r in records if r.dtype.startswith("complex")]
    if complex_:
        notices.append(
            Notice("info", complex_text(complex_, "parameter", "|w|", "statistics, histograms and changes"), ID)
        )
    for flag, level, text in (
        ("in the trained values", "warning", "with NaN/Inf values"),
        ("before training", "warning", "with NaN/Inf values in the before-state (the checkpoint or snapshot)"),
        ("exploded", "warning", "that exploded"),
        ("unchanged:", "warning", "unchanged by training although trainable"),
        ("frozen", "info", "frozen (requires_grad=False)"),
    ):
        hit = [r.name for r in records if any(_flagged(f, flag) for f in r.flags)]
        if hit:
            notices.append(Notice(level, f"{plural(len(hit), 'parameter')} {text}: {listed(hit, 4)}", ID))
    return notices


def _flagged(flag: str, kind: str) -> bool:
    """Whether ``flag`` (a ParamRecord flag) is of ``kind``: NaN/Inf flags end with where the
    values are ("... in the trained values", "... before training"), the others start with it."""
    if kind in ("in the trained values", "before training"):
        return flag.startswith(("NaN", "Inf")) and flag.endswith(kind)
    return flag.startswith(kind)
