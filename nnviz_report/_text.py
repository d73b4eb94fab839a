"""Text shared by errors, notices and pages."""

from __future__ import annotations

from collections.abc import Sequence


def one_line(text: str) -> str:
    """``text`` as one printable line: control characters (a newline, a terminal escape in a
    name read from a file) and lone surrogates (bytes that were not UTF-8) written as
    escapes. What the command line prints goes through it."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none (an
    empty ``EOFError``)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def typed_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters of it), or the type's name."""
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def listed(items: Sequence[str], limit: int) -> str:
    """The first ``limit`` items, comma-separated (each as :func:`one_line`), and how many
    more: ``a, b and 3 more``."""
    shown = ", ".join(one_line(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
