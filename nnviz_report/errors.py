"""The one error type the package raises for problems a user can fix."""

from __future__ import annotations


class NNVizError(ValueError):
    """A problem with the input (model, example input, checkpoint, output path); a
    ValueError, as a bad argument is.

    The message is one line that names the problem and how to fix it; the CLI prints it as is
    and exits with a non-zero status.
    """
