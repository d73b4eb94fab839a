"""Small text helpers shared by sections (numbers in plain words)."""

from __future__ import annotations

import html

from .._text import listed


def pct(x: float | None) -> str:
    if x is None:
        return "–"
    if 0 < x < 0.001:
        return "<0.1%"
    return f"{x * 100:.1f}%".replace(".0%", "%")


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, ..."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def complex_text(names: list[str], what: str, magnitude: str, shown: str) -> str:
    """The notice for complex tensors: their numbers are of the magnitude (``stats.as_float``)."""
    verb = "is" if len(names) == 1 else "are"
    counted = plural(len(names), "complex " + what)
    return f"{counted} {verb} summarised by magnitude, {magnitude} ({shown}): {listed(names, 4)}"


def integer_ticks(count: int) -> dict:
    """Axis settings for positions 0..count-1 (layers, bias indices): Plotly's automatic ticks
    fall on halves when there are few (0.5, 1.5); at most 10, one tick per position."""
    return {"dtick": 1, "tick0": 0} if count <= 10 else {"tickformat": "d"}


def plotly_text(s: str) -> str:
    """A user string as Plotly text: Plotly reads a subset of HTML in labels, legends and
    hover text, so tags and entities are escaped to show literally."""
    return html.escape(s, quote=False)
