"""Reports in notebooks (JupyterLab, Notebook, VS Code, Colab): the page in an iframe.

The page goes into the frame's ``srcdoc``: a relative ``src`` does not resolve in VS Code or
Colab, and a multi-MB ``data:`` URL fails in Chromium. The frame is sandboxed with scripts
allowed and nothing else (the page needs no storage, no pop-ups and no access to the
notebook). Above it, a plain caption says what the report is, so a notebook reopened
untrusted, whose viewer drops the frame and the script, still says what was there; with
scripts on, the caption offers the page as a download (a Blob URL made when clicked: opened
as a page, it would run in the notebook's origin, outside the sandbox).
Links inside the page scroll the frame (the page's own script handles them: in a
``srcdoc`` frame ``href="#..."`` would load the notebook's URL into it).
"""

from __future__ import annotations

import html as _html
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NNVizError

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

DEFAULT_HEIGHT = "80vh"
_LENGTH = re.compile(r"\d+(\.\d+)?(px|vh|em|rem|%)")

_OPEN_SCRIPT = """(function () {
  var frame = document.getElementById("%(id)s"), caption = document.getElementById("%(id)s-caption");
  if (!frame || !caption || !window.Blob || !window.URL) return;
  // A download, not a page opened from here: a Blob URL made here has the notebook's origin,
  // and the report would run there outside its sandbox.
  var a = document.createElement("a"), url = null;
  a.textContent = "save as HTML"; a.href = "#"; a.download = "nnviz-report.html";
  a.addEventListener("click", function () {
    if (!url) url = URL.createObjectURL(new Blob([frame.getAttribute("srcdoc")], { type: "text/html" }));
    a.href = url;
  });
  caption.appendChild(document.createTextNode(" · "));
  caption.appendChild(a);
})();"""


def caption_text(report: Report) -> str:
    data = report.data
    model = data.get("model", {})
    findings = data.get("findings") or []
    warnings = sum(f.get("level") == "warning" for f in findings)
    created = str(data.get("environment", {}).get("created", "")).replace("T", " ").replace("+00:00", " UTC")
    params = model.get("num_parameters")
    parts = [f"nnviz-report: {data.get('title', 'report')}"]
    if model.get("class_name"):
        parts.append(f"{model['class_name']}" + (f", {params:,} parameters" if isinstance(params, int) else ""))
    parts.append(
        f"{len(findings)} finding{'s' if len(findings) != 1 else ''}"
        + (f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else "")
    )
    if created:
        parts.append(f"created {created}")
    return " · ".join(parts)


def _height(height: int | str | None) -> str:
    if height is None:
        return DEFAULT_HEIGHT
    if isinstance(height, bool) or not isinstance(height, (int, str)):
        raise NNVizError(f"height must be a number of pixels or a CSS length such as '80vh', not {height!r}")
    if isinstance(height, int):
        if height < 100:
            raise NNVizError(f"height must be at least 100 pixels, not {height}")
        return f"{height}px"
    if not _LENGTH.fullmatch(height):
        raise NNVizError(f"height must be a number of pixels or a CSS length such as '80vh', not {height!r}")
    return height


def frame_html(report: Report, *, height: int | str | None = None, link: str | None = None) -> str:
    """The caption, the page in a sandboxed ``srcdoc`` iframe, and the script that offers it
    as a download. ``link``: the saved file, linked from the caption."""
    fid = f"nnviz-{uuid.uuid4().hex[:12]}"
    esc = _html.escape
    caption = esc(caption_text(report))
    if link is not None:
        caption += f' · <a href="{esc(link)}" target="_blank" rel="noopener">{esc(link)}</a>'
    return (
        f'<div class="nnviz-report-output">'
        f'<p id="{fid}-caption" style="margin:0 0 .4em;font:13px/1.4 system-ui,-apple-system,sans-serif">{caption}</p>'
        f'<iframe id="{fid}" title="{esc(str(report.data.get("title", "nnviz-report")))}" '
        f'sandbox="allow-scripts allow-downloads" '
        f'style="display:block;width:100%;height:{_height(height)};min-height:420px;'
        'border:1px solid #c8ccd0;border-radius:4px" '
        f'srcdoc="{esc(report.html, quote=True)}"></iframe>'
        f"<script>{_OPEN_SCRIPT % {'id': fid}}</script>"
        f"</div>"
    )


def show(report: Report, path: str | os.PathLike | None = None, *, height: int | str | None = None) -> Path | None:
    """Display the report in the running notebook; with ``path``, save it there first and
    link the file from the caption. Returns the saved path, if any."""
    try:
        from IPython.display import HTML, display
    except ImportError:
        raise NNVizError(
            "show() needs IPython (a notebook); install it with: pip install ipython, "
            "or save the report with report.save('report.html')"
        ) from None
    saved = None
    link = None
    if path is not None:
        saved = report.save(path)
        link = Path(os.fspath(path)).as_posix()
    display(HTML(frame_html(report, height=height, link=link)))
    return saved
