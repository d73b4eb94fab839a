"""Feature maps: what every runtime-leaf module emitted for the example input."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from ..capture.forward import LayerCapture
from ..capture.run import CapturedRun
from ..capture.tensors import GridImage
from . import Notice, Section
from ._format import names, plotly_text, plural

ID = "feature_maps"
JPEG_MIN_PIXELS = 4096  # smaller pictures are PNG: exact, and as small


def anchor(call_id: int) -> str:
    return f"fm-{call_id}"


def encode(image: GridImage) -> dict:
    """The picture as a data URI plus what the browser needs to colour and slice it.

    Big pictures are JPEG (quality 80, under half the bytes of PNG on feature maps); each tile is
    padded to a multiple of 8 pixels so no JPEG block straddles two channels.
    """
    pixels = np.frombuffer(image.pixels, dtype=np.uint8).reshape(image.tile_h, image.tiles * image.tile_w)
    use_jpeg = pixels.size >= JPEG_MIN_PIXELS
    stride = image.tile_w
    if use_jpeg and image.tiles > 1 and image.tile_w % 8:
        stride = -(-image.tile_w // 8) * 8
        tiles = pixels.reshape(image.tile_h, image.tiles, image.tile_w)
        pad = np.repeat(tiles[:, :, -1:], stride - image.tile_w, axis=2)
        pixels = np.concatenate([tiles, pad], axis=2).reshape(image.tile_h, image.tiles * stride)
    buf = io.BytesIO()
    if use_jpeg:
        Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
        mime = "image/jpeg"
    else:
        Image.fromarray(pixels).save(buf, format="PNG", compress_level=9)  # optimize=True: 2x the time, same bytes here
        mime = "image/png"
    return {
        "src": f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
        "kind": image.kind,
        "tile_h": image.tile_h,
        "tile_w": image.tile_w,
        "stride": stride,
        "tiles": image.tiles,
        "vmin": image.vmin,
        "vmax": image.vmax,
        "diverging": image.diverging,
        "source_hw": list(image.source_hw),
        "rows": image.rows,
        "cols": image.cols,
        "row_label": image.row_label,
        "col_label": image.col_label,
    }


def _entry(layer: LayerCapture) -> dict:
    s = layer.stats
    entry = {
        "name": layer.name,
        "call": layer.call,
        "type": layer.type,
        "output": layer.output,
        "shape": layer.shape,
        "dtype": layer.dtype,
        "mean": s.mean,
        "std": s.std,
        "min": s.min,
        "max": s.max,
        "zero_fraction": s.zero_fraction,
        "nan_count": s.nan_count,
        "inf_count": s.inf_count,
        "histogram": s.histogram.as_dict() if s.histogram else None,
    }
    if layer.image is not None and layer.image.kind == "channels":
        # Column-wise: the drawn channels' numbers (4 significant digits).
        stats = layer.image.channel_stats
        entry["channels"] = {
            "index": layer.image.channels,
            **{key: [row[k] for row in stats] for k, key in enumerate(("mean", "std", "min", "max"))},
        }
    entry["notes"] = layer.notes
    return entry


def build(run: CapturedRun) -> Section:
    fwd = run.forward
    entries = [_entry(layer) for layer in fwd.layers]
    images = {}
    cards = []
    for i, (layer, entry) in enumerate(zip(fwd.layers, entries)):
        if layer.image is not None:
            images[str(i)] = encode(layer.image)
        cards.append({
            "i": i,
            "anchor": anchor(layer.call_id) if i == 0 or fwd.layers[i - 1].call_id != layer.call_id else None,
            "entry": entry,
            "label": layer.name or run.model.class_name,
            "has_image": layer.image is not None,
            "image": images.get(str(i)),
        })

    notices = []
    nan_layers = [f"{e['name']}{e['output']}" for e in entries if e["nan_count"] or e["inf_count"]]
    if nan_layers:
        notices.append(Notice("warning", f"{plural(len(nan_layers), 'layer output')} with NaN/Inf: {names(nan_layers)}", ID))
    zero_layers = [f"{e['name']}{e['output']}" for e in entries if e["zero_fraction"] == 1.0 and e["shape"] and min(e["shape"]) > 0]
    if zero_layers:
        notices.append(Notice("warning", f"{plural(len(zero_layers), 'layer output')} entirely zero: {names(zero_layers)}", ID))

    not_captured = [
        {"name": n or run.model.class_name, "what": f"call {c + 1}, output{p or ''}: {kind}", "why": "not a tensor"}
        for n, c, p, kind in fwd.skipped_outputs
    ] + [{"name": n, "what": t, "why": why} for n, t, why in fwd.uncalled]

    data = entries
    figures = {"fm-propagation": _propagation(entries)} if entries else {}
    return Section(
        id=ID,
        title="Feature maps",
        template="sections/feature_maps.html.j2",
        data=data,
        view={
            "cards": cards,
            "not_captured": not_captured,
            "notes": fwd.notes,
            "filtered": bool(run.options.layers or run.options.layer_types),
            "options": run.options,
        },
        figures=figures,
        images=images,
        notices=tuple(notices),
        summary=f"{plural(len(entries), 'output')} of {plural(len({e['name'] for e in entries}), 'module')}, {plural(len(images), 'picture')}",
    )


def _propagation(entries: list[dict]) -> dict:
    x = list(range(len(entries)))
    text = [
        plotly_text(f"{e['name']}{e['output']}" + (f" (call {e['call'] + 1})" if e["call"] else "") + f" · {e['type']}")
        for e in entries
    ]
    absmax = [None if e["min"] is None or e["max"] is None else max(abs(e["min"]), abs(e["max"])) for e in entries]
    hover = "%{text}<br>%{fullData.name}: %{y:.4g}<extra></extra>"
    return {
        "data": [
            {"type": "scatter", "mode": "lines+markers", "name": "mean", "x": x, "y": [e["mean"] for e in entries],
             "text": text, "hovertemplate": hover, "marker": {"size": 4}},
            {"type": "scatter", "mode": "lines+markers", "name": "std", "x": x, "y": [e["std"] for e in entries],
             "text": text, "hovertemplate": hover, "marker": {"size": 4}},
            {"type": "scatter", "mode": "lines", "name": "|max|", "x": x, "y": absmax, "text": text,
             "hovertemplate": hover, "line": {"dash": "dot"}},
            {"type": "scatter", "mode": "lines", "name": "zero fraction", "x": x,
             "y": [e["zero_fraction"] for e in entries], "text": text, "hovertemplate": hover,
             "yaxis": "y2", "line": {"width": 1}},
        ],
        "layout": {
            "height": 340,
            "margin": {"l": 50, "r": 60, "t": 10, "b": 40},
            "xaxis": {"title": {"text": "layer output, in execution order"}},
            "yaxis": {"title": {"text": "value"}},
            "yaxis2": {"overlaying": "y", "side": "right", "range": [0, 1], "title": {"text": "zero fraction"}, "tickmode": "auto",
                       "showgrid": False},
            "legend": {"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
            "hovermode": "closest",
        },
    }
