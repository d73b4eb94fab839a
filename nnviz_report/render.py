"""Rendering: Jinja templates + inlined assets -> one self-contained HTML page.

The page carries ``nnviz-data`` (``Report.data`` as JSON, for people and scripts),
one ``nnviz-view`` per section (its Plotly figure dicts, which point into the data instead
of repeating it, and view payloads such as the graph's SVG: JSON, gzip-compressed,
base64; the browser inflates them with DecompressionStream) and ``nnviz-images``
(pictures as data URIs, which would not compress). plotly.js is inlined once, as inert
text the page evaluates after its first paint.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from .sections import Notice, Section
from .sections._format import pct

PLOTLY_VERSION = "4.1.1"
PLOTLY_JS = f"assets/vendor/plotly-cartesian-{PLOTLY_VERSION}.min.js"
PLOTLY_LICENSE = "assets/vendor/plotly-LICENSE.txt"


def templates_dir() -> Path:
    """``templates/`` ships inside the wheel as ``nnviz_report/templates``; in a source
    checkout (editable install) it is the top-level folder beside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "report.html.j2").is_file():
            return candidate
    raise RuntimeError(f"nnviz-report templates not found beside {here}; the installation is incomplete")


_SURROGATES = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD. A file name or argument that
    is not UTF-8 reaches Python as such surrogates (a model can have them in a module
    name too); they cannot be written as UTF-8. (Encoding is the check: faster than
    searching for them.)"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def _clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become null, tuples lists, keys strings, lone
    surrogates U+FFFD."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return valid_text(obj)
    if isinstance(obj, Mapping):
        return {valid_text(str(k)): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _dumps_bytes(obj: Any) -> bytes:
    """Strict, compact UTF-8 JSON: non-finite floats become null (orjson's rule), keys
    strings, tuples lists. A type orjson does not know, or a string with a lone surrogate,
    goes through :func:`_clean` and the standard library."""
    try:
        return orjson.dumps(obj, option=_ORJSON)
    except TypeError:
        return json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _dumps(obj: Any) -> str:
    return _dumps_bytes(obj).decode("utf-8")


def to_json(obj: Any) -> str:
    """Strict JSON (non-finite floats as null) without any character that could end or
    confuse a ``<script>`` element."""
    text = _dumps(obj)
    for ch, esc in _SCRIPT_ESCAPES.items():
        text = text.replace(ch, esc)
    return text


def packed(obj: Any) -> str:
    """JSON, gzip (deterministic: no timestamp), base64. Level 1: several times faster than
    higher levels, for a few tens of kB next to megabytes of pictures and plotly.js
    (docs/performance.md)."""
    raw = _dumps_bytes(obj)
    return base64.b64encode(gzip.compress(raw, compresslevel=1, mtime=0)).decode("ascii")


def unpacked(text: str) -> Any:
    """The inverse of ``packed``."""
    return json.loads(gzip.decompress(base64.b64decode(text)))


def _script_json(obj: Any) -> Markup:
    return Markup(to_json(obj))


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e5:
            return f"{value:.{digits}g}"
        return f"{value:.{max(digits - 1, 1)}e}"
    return str(value)


def _shape(shape: Iterable[int] | None) -> str:
    return "×".join(str(int(s)) for s in shape) if shape is not None else "–"


def _sortval(value: Any) -> str:
    """A number for ``data-v`` (what tables sort by): 6 significant digits; missing ones
    sort last."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class _DedentingLoader(FileSystemLoader):
    """Templates without their indentation (a large part of a big report's markup): the
    templates stay readable, the pages small. The page has no <pre> or <textarea>; the
    inlined CSS/JS and the JSON come from variables and are left alone."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        return re.sub(r"\n[ \t]+", "\n", source), filename, uptodate


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Environment(Environment):
    """Jinja's ``a.b`` tries ``getattr(a, "b")`` first, then ``a["b"]``; on a dict the first
    step raises and catches AttributeError, a large part of a big report's rendering time. A plain
    dict has no attributes but its methods, so looking the key up first (for any other
    name) gives the same answer."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


@functools.cache
def environment() -> Environment:
    env = _Environment(
        loader=_DedentingLoader(str(templates_dir())),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(num=_num, pct=pct, shape=_shape, sortval=_sortval, script_json=_script_json)
    return env


@functools.cache
def _asset(name: str) -> str:
    text = (templates_dir() / name).read_text(encoding="utf-8")
    low = text.lower()
    if "</script" in low or "</style" in low or "<!--" in low:
        raise RuntimeError(f"asset {name} contains a sequence that would end its inline element")
    return text


def assets() -> dict[str, Markup | str]:
    """Our CSS/JS and the vendored plotly.js, to be inlined verbatim (checked above not to
    contain ``</script``, ``</style`` or ``<!--``)."""
    return {
        "css": Markup(_asset("assets/report.css")),
        "js": Markup(_asset("assets/report.js")),
        "plotly": Markup(_asset(PLOTLY_JS)),
        "plotly_license": _asset(PLOTLY_LICENSE).splitlines()[2].strip(),
    }


def render_section(section: Section) -> Markup:
    """One section's HTML: its template, which sees the section as ``s``."""
    return Markup(environment().get_template(section.template).render(s=section))


def pack_payload(section: Section) -> Markup | None:
    """A section's browser payload (its figures and assets, :func:`packed`), or None when it
    has neither. Packed one section at a time, each as soon as it is built: zlib lets go
    of the GIL, and the graph's SVG, most of the bytes, is packed in the graph's lane."""
    if not section.figures and not section.assets:
        return None
    return Markup(packed({"figures": section.figures, "assets": section.assets}))


def render_page(
    *,
    title: str,
    data: Mapping[str, Any],
    sections: list[Section],
    notices: list[Notice],
    meta: Mapping[str, Any],
    bodies: Mapping[str, Markup],
    payloads: Mapping[str, Markup | None],
) -> str:
    """The page, from each section's HTML (:func:`render_section`) and browser payload
    (:func:`pack_payload`), by section id."""
    seen: set[str] = set()
    for s in sections:
        overlap = seen & s.figures.keys()
        if overlap:
            raise RuntimeError(f"figure ids used twice: {sorted(overlap)}")
        seen.update(s.figures)
    images = {s.id: s.images for s in sections if s.images}
    return valid_text(
        environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            data=data,
            sections=sections,
            bodies=bodies,
            payloads=payloads,
            notices=notices,
            meta=meta,
            data_json=_script_json(data),
            images_json=_script_json(images),
            assets=assets(),
        )
    )
