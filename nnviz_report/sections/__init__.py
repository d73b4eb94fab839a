"""Sections: each turns what was captured into one part of the page.

A section module (see :class:`SectionModule`) has an ``ID``, a ``TITLE``, a ``TEMPLATE``
and a ``build(...) -> Section`` function that takes what the section shows, finished. The
Section carries the section's part of ``Report.data`` (JSON-safe), the context of its
template, its Plotly figures (plain dicts, drawn lazily in the browser) and notices for the
top of the page. No HTML is written here and no tensor is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Notice:
    level: str  # "warning" or "info"
    text: str
    section: str  # id of the section it comes from (the page links to it)
    about_input: bool = False  # a problem with what was passed in (not a finding): the CLI prints it too


@dataclass(frozen=True)
class Section:
    id: str  # anchor in the page and key in Report.data
    title: str
    template: str  # path under templates/
    data: Any  # Report.data[id]: JSON-safe
    context: dict[str, Any] = field(default_factory=dict)  # what its template reads besides data
    figures: dict[str, dict] = field(default_factory=dict)  # figure id -> Plotly figure dict
    assets: dict[str, Any] = field(default_factory=dict)  # browser payload (SVG, samples): compressed
    images: dict[str, Any] = field(default_factory=dict)  # pictures as data URIs: stored as they are
    notices: tuple[Notice, ...] = ()
    summary: str = ""  # one line for the table of contents


def ref(*path: Any) -> dict[str, str]:
    """A value the browser takes from the embedded JSON when it draws a figure, so arrays
    that are already in ``Report.data`` are not written into the page twice.

    ``ref("data", "parameters", 3, "bias_after")`` points at ``data.parameters[3].bias_after``.
    """
    return {"$ref": "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)}


class SectionModule(Protocol):
    """What a module under ``sections/`` provides; ``report.SECTIONS`` lists them in page
    order. A new section: one such module and one template under ``templates/sections/``."""

    @property
    def ID(self) -> str:
        """The section's anchor in the page and its key in ``Report.data``."""

    @property
    def TITLE(self) -> str:
        """Its heading."""

    @property
    def TEMPLATE(self) -> str:
        """Its template, under ``templates/``."""

    @property
    def build(self) -> Callable[..., Section]:
        """Its Section, from what it shows (each section takes its own finished inputs)."""
