"""What a capture is asked for."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("eval", "train", "as-is")


@dataclass(frozen=True)
class CaptureOptions:
    layers: tuple[str, ...] = ()  # fnmatch patterns on qualified module names
    layer_types: tuple[str, ...] = ()  # module class names (subclasses match too)
    max_channels: int = 16  # channels drawn per conv map
    tile: int = 32  # largest side of one channel tile, in pixels
    example: int = 0  # which example of the batch is drawn
    bins: int = 32  # histogram bins per layer
    mode: str = "eval"  # mode of the forward pass: "eval", "train" or "as-is"
    max_rows: int = 64  # rows of a drawn matrix (examples, tokens, channels)
    max_cols: int = 128  # columns of a drawn matrix (features, positions)
    graph: bool = True  # capture the autograd graph
    dot_timeout: float = 5.0  # seconds each Graphviz layout may take (the layout budget)
