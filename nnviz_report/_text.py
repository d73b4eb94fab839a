"""Text shared by errors, notices and pages."""

from __future__ import annotations

from collections.abc import Sequence


def listed(items: Sequence[str], limit: int) -> str:
    """The first ``limit`` items, comma-separated, and how many more: ``a, b and 3 more``."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
