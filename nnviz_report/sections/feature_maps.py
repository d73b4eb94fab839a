"""Feature maps: what every runtime-leaf module emitted for the example input."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from .._text import listed
from ..capture.layers import LayerCapture
from ..capture.pictures import GridImage
from ..capture.run import CapturedRun
from . import Notice, Section
from ._format import complex_text, integer_ticks, plotly_text, plural

ID = "feature_maps"
TITLE = "Feature maps"
TEMPLATE = "sections/feature_maps.html.j2"
# Pictures whose tiles hold a JPEG block (8x8) are JPEG; tinier ones PNG (exact, as small).
JPEG_MIN_SIDE = 8
JPEG_MIN_PIXELS = 1024


def anchor(call_id: int) -> str:
    return f"fm-{call_id}"


SHEET_MAX_HEIGHT = 4096  # pixels per sheet (JPEG allows 65 535; browsers' canvases less)


def _strip(image: GridImage, jpeg: bool) -> tuple[np.ndarray, int]:
    """The picture's pixels, tiles side by side; for JPEG each tile padded to a multiple
    of 8 pixels wide and the strip to a multiple of 8 tall, so that no JPEG block
    straddles two channels or two pictures. Returns (pixels, stride between tiles)."""
    pixels = np.frombuffer(image.pixels, dtype=np.uint8).reshape(image.tile_h, image.tiles * image.tile_w)
    stride = image.tile_w
    if jpeg and image.tiles > 1 and image.tile_w % 8:
        stride = -(-image.tile_w // 8) * 8
        tiles = pixels.reshape(image.tile_h, image.tiles, image.tile_w)
        pad = np.repeat(tiles[:, :, -1:], stride - image.tile_w, axis=2)
        pixels = np.concatenate([tiles, pad], axis=2).reshape(image.tile_h, image.tiles * stride)
    if jpeg and pixels.shape[0] % 8:
        pixels = np.concatenate([pixels, np.repeat(pixels[-1:], 8 - pixels.shape[0] % 8, axis=0)])
    return pixels, stride


def encode_all(images: dict[str, GridImage]) -> dict:
    """Every picture, stacked into a few sheets (one image file per format and width, not
    one per layer: encoding each small file costs more than its pixels), plus what the
    browser needs to cut, colour and label each.

    Pictures are JPEG (quality 80: smaller and faster to encode than PNG on feature maps,
    where zlib finds little to match in noisy pixels), but tiny ones PNG (exact, as small):
    tiles under 8 pixels a side (a JPEG block) or under JPEG_MIN_PIXELS in all.
    """
    strips: dict[tuple[bool, int], list[tuple[str, np.ndarray]]] = {}
    pictures: dict[str, dict] = {}
    for key, image in images.items():
        jpeg = (
            min(image.tile_h, image.tile_w) >= JPEG_MIN_SIDE
            and image.tile_h * image.tiles * image.tile_w >= JPEG_MIN_PIXELS
        )
        pixels, stride = _strip(image, jpeg)
        strips.setdefault((jpeg, pixels.shape[1]), []).append((key, pixels))
        pictures[key] = {
            "sheet": None,
            "y": 0,
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
    sheets: list[str] = []
    for (jpeg, _), group in strips.items():
        batch: list[np.ndarray] = []
        height = 0
        for n, (key, pixels) in enumerate(group):
            pictures[key].update(sheet=len(sheets), y=height)
            batch.append(pixels)
            height += pixels.shape[0]
            last = n == len(group) - 1
            if last or height + group[n + 1][1].shape[0] > SHEET_MAX_HEIGHT:
                sheets.append(_encode(np.concatenate(batch), jpeg))
                batch, height = [], 0
    return {"sheets": sheets, "pictures": pictures}


def _encode(pixels: np.ndarray, jpeg: bool) -> str:
    buf = io.BytesIO()
    if jpeg:
        Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
    else:
        Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    mime = "image/jpeg" if jpeg else "image/png"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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
        "histogram": layer.histogram.as_dict() if layer.histogram else None,
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


def build(run: CapturedRun, layers: list[LayerCapture]) -> Section:
    """``layers``: the layer outputs of ``run``, finished (``run.finish_layers``)."""
    fwd = run.forward
    entries = [_entry(layer) for layer in layers]
    images = encode_all({str(i): layer.image for i, layer in enumerate(layers) if layer.image is not None})
    pictures = images["pictures"]
    cards = []
    for i, (layer, entry) in enumerate(zip(layers, entries)):
        cards.append(
            {
                "i": i,
                "anchor": anchor(layer.call_id) if i == 0 or layers[i - 1].call_id != layer.call_id else None,
                "entry": entry,
                "label": layer.name or run.model.class_name,
                "image": pictures.get(str(i)),
            }
        )

    notices = []
    root = run.model.class_name

    def label(e: dict) -> str:
        return f"{e['name'] or root}{e['output']}"

    nan_layers = [label(e) for e in entries if e["nan_count"] or e["inf_count"]]
    if nan_layers:
        notices.append(
            Notice("warning", f"{plural(len(nan_layers), 'layer output')} with NaN/Inf: {listed(nan_layers, 4)}", ID)
        )
    if fwd.output_non_finite and not any(e["name"] == "" for e in entries):  # else: the root is a layer above
        found = [
            f"output{path} ({' and '.join(f'{n} {w}' for n, w in ((nan, 'NaN'), (inf, 'Inf')) if n)})"
            for path, nan, inf in fwd.output_non_finite
        ]
        notices.append(Notice("warning", f"The model's output has NaN/Inf values: {listed(found, 4)}", ID))
    zero_layers = [label(e) for e in entries if e["zero_fraction"] == 1.0 and e["shape"] and min(e["shape"]) > 0]
    if zero_layers:
        notices.append(
            Notice("warning", f"{plural(len(zero_layers), 'layer output')} entirely zero: {listed(zero_layers, 4)}", ID)
        )

    complex_ = [label(e) for e in entries if e["dtype"].startswith("complex")]
    if complex_:
        notices.append(
            Notice("info", complex_text(complex_, "layer output", "|z|", "statistics, histograms and pictures"), ID)
        )

    if fwd.scripted:  # what the report cannot show, at the top of the page too
        notices.append(Notice("info", fwd.notes[0], ID))

    not_captured = [
        {"name": n or run.model.class_name, "what": f"call {c + 1}, output{p or ''}: {kind}", "why": "not a tensor"}
        for n, c, p, kind in fwd.skipped_outputs
    ] + [{"name": n, "what": t, "why": why} for n, t, why in fwd.uncalled]

    data = entries
    figures = {"fm-propagation": _propagation(entries)} if entries else {}
    return Section(
        id=ID,
        title=TITLE,
        template=TEMPLATE,
        data=data,
        context={
            "cards": cards,
            "not_captured": not_captured,
            "notes": fwd.notes,
            "filtered": bool(run.options.layers or run.options.layer_types),
            "options": run.options,
        },
        figures=figures,
        images=images,
        notices=tuple(notices),
        summary=f"{plural(len(entries), 'output')} of {plural(len({e['name'] for e in entries}), 'module')}, "
        f"{plural(len(pictures), 'picture')}",
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
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "mean",
                "x": x,
                "y": [e["mean"] for e in entries],
                "text": text,
                "hovertemplate": hover,
                "marker": {"size": 4},
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "std",
                "x": x,
                "y": [e["std"] for e in entries],
                "text": text,
                "hovertemplate": hover,
                "marker": {"size": 4},
            },
            {
                "type": "scatter",
                "mode": "lines" if len(entries) > 1 else "markers",  # one point: no line to draw
                "name": "|max|",
                "x": x,
                "y": absmax,
                "text": text,
                "hovertemplate": hover,
                "line": {"dash": "dot"},
            },
            {
                "type": "scatter",
                "mode": "lines" if len(entries) > 1 else "markers",
                "name": "zero fraction",
                "x": x,
                "y": [e["zero_fraction"] for e in entries],
                "text": text,
                "hovertemplate": hover,
                "yaxis": "y2",
                "line": {"width": 1},
            },
        ],
        "layout": {
            "height": 340,
            "margin": {"l": 50, "r": 60, "t": 10, "b": 40},
            "xaxis": {"title": {"text": "layer output, in execution order"}, **integer_ticks(len(entries))},
            "yaxis": {"title": {"text": "value"}},
            "yaxis2": {
                "overlaying": "y",
                "side": "right",
                "range": [0, 1],
                "title": {"text": "zero fraction"},
                "tickmode": "auto",
                "showgrid": False,
            },
            "legend": {"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
            "hovermode": "closest",
        },
    }
