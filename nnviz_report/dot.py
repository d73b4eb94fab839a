"""Graphviz's ``dot``: SVG from DOT text, in a subprocess with a timeout.

``dot`` runs with only its core and dot-layout plugins where that can be set up, several
graphs per process, at a lower scheduling priority when asked; its SVG is embedded only if
it holds nothing but drawing elements (no script, handler or link). :func:`stop_all` ends
every layout this process waits for (an interrupted build).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

INSTALL_HINT = (
    "Graphviz's `dot` program was not found on PATH, so the graph is not drawn. Install it "
    "(Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; conda: "
    "conda install -c conda-forge graphviz) and build the report again."
)


@dataclass(frozen=True)
class SvgResult:
    svg: str | None
    error: str | None
    seconds: float


_SVG_TAGS = "svg|g|title|polygon|polyline|path|ellipse|text|circle|rect|line"
_SPACE = b" \t\n\r\f"  # what separates attributes in HTML
_OTHER_TAG = re.compile(rb"<(?!/?(?:" + _SVG_TAGS.encode() + rb")[ \t\n\r\f/>])", re.I)
_HANDLER_OR_LINK = re.compile(rb"[ \t\n\r\f](?:on[\w.-]*|[\w.:-]*href)[ \t\n\r\f]*=", re.I)


def _safe_svg(svg: str) -> bool:
    """Only drawing elements, no event handlers, no links: no tag but ``_SVG_TAGS``, and no
    ``on...=`` or ``...href=`` inside a tag (after a ``<`` with no ``>`` since; dot
    escapes "<" in label text, so such a ``<`` opens a real tag). Letters and word
    characters are ASCII's, as in HTML's tag and attribute names.

    The second part only looks where such an attribute could start: at a space before
    "on", or at the last space before an "href", found with bytes.find (one regex spanning
    from each ``<`` to each attribute is slower and holds the GIL: docs/performance.md)."""
    data = svg.encode("utf-8")  # bytes: lower() and find() at memory speed
    if _OTHER_TAG.search(data):
        return False
    low = data.lower()
    starts = set()
    for space in _SPACE:
        needle = bytes([space]) + b"on"
        at = low.find(needle)
        while at != -1:
            starts.add(at)
            at = low.find(needle, at + 1)
    at = low.find(b"href")
    while at != -1:
        starts.add(max(low.rfind(space, 0, at) for space in _SPACE))
        at = low.find(b"href", at + 1)
    for at in sorted(starts):
        if at >= 0 and _HANDLER_OR_LINK.match(data, at) and data.rfind(b"<", 0, at) > data.rfind(b">", 0, at):
            return False
    return True


def dot_available() -> bool:
    return shutil.which("dot") is not None


def dot_version() -> str | None:
    path = shutil.which("dot")
    return _version_of(path) if path else None


@functools.lru_cache(maxsize=4)
def _version_of(path: str) -> str | None:
    try:
        out = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version\s+(\S+)", out.stderr + out.stdout)
    return m.group(1) if m else None


_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def stop_all() -> None:
    """Kill every dot this process is waiting for (the build was interrupted: Ctrl-C in a
    notebook reaches Python only, and dot has no timeout of its own)."""
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.kill()


def render_svg(dot_source: str, timeout: float, nice: int = 0) -> SvgResult:
    """Lay out one graph with ``dot -Tsvg``; the SVG is returned ready to inline in HTML."""
    return render_svgs([dot_source], timeout, nice)[0]


def render_svgs(sources: list[str], timeout: float, nice: int = 0) -> list[SvgResult]:
    """Lay out several graphs with one ``dot -Tsvg`` (one process start for all: dot writes
    one SVG document per graph), within ``timeout`` seconds for all of them. ``nice``: how
    much lower than ours dot's scheduling priority is (where the system has one)."""
    started = time.perf_counter()
    if not dot_available():
        return [SvgResult(None, INSTALL_HINT, 0.0)] * len(sources)

    def failed(error: str) -> list[SvgResult]:
        return [SvgResult(None, error, time.perf_counter() - started)] * len(sources)

    try:
        proc = subprocess.Popen(
            ["dot", "-Tsvg"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=layout_environment(),
        )
    except OSError as exc:
        return failed(f"dot could not be run ({exc})")
    with _running_lock:
        _running.add(proc)
    try:
        with proc:
            if nice:
                with contextlib.suppress(OSError, AttributeError):
                    os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
            try:
                out, err = proc.communicate("".join(sources).encode("utf-8", "backslashreplace"), timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                return failed(f"dot did not finish within {timeout:g} s")
    finally:
        with _running_lock:
            _running.discard(proc)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        if proc.returncode < 0:
            return failed("dot was stopped")
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return failed(f"dot failed: {lines[-1] if lines else 'exit code ' + str(proc.returncode)}")
    docs = out.decode("utf-8", "replace").split("</svg>")[:-1]
    if len(docs) != len(sources):
        return failed(f"dot wrote {len(docs)} drawings for {len(sources)} graphs")
    return [_clean_svg(doc + "</svg>", seconds / len(sources)) for doc in docs]


def _clean_svg(svg: str, seconds: float) -> SvgResult:
    svg = svg[svg.find("<svg") :]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    head_end = svg.find(">") + 1
    svg = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end]) + svg[head_end:]
    if not _safe_svg(svg):
        return SvgResult(None, "dot produced SVG with links or scripts; refusing to embed it", seconds)
    return SvgResult(svg.strip(), None, seconds)


def layout_environment() -> dict[str, str] | None:
    """The environment ``dot`` runs in: one whose plugin folder (``GVBINDIR``) holds only
    Graphviz's core and dot-layout plugins, when that can be set up, else the inherited one.

    Without the Pango plugin, dot sizes labels from its built-in font metrics instead of
    starting fontconfig and shaping every label: layouts are faster (docs/performance.md)
    and no longer depend on the fonts installed, while the browser draws the text with its
    own fonts either way. The folder is private to this
    process (``mkdtemp``: mode 0700) and removed at exit.
    """
    path = shutil.which("dot")
    return _plugin_environment(path) if path else None


@functools.lru_cache(maxsize=4)
def _plugin_environment(dot: str) -> dict[str, str] | None:
    try:
        probe = subprocess.run([dot, "-v", "-Tsvg"], input=b"digraph{}", capture_output=True, timeout=10)
        m = re.search(r'libdir = "([^"]+)"', probe.stderr.decode("utf-8", "replace"))
        if not m:
            return None
        libdir = m.group(1)
        wanted = [f for f in sorted(os.listdir(libdir)) if re.match(r"(lib)?gvplugin_(core|dot_layout)\b", f)]
        if not any("core" in f for f in wanted) or not any("dot_layout" in f for f in wanted):
            return None
        folder = tempfile.mkdtemp(prefix="nnviz-report-graphviz-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        for f in wanted:
            os.symlink(os.path.join(libdir, f), os.path.join(folder, f))
        env = dict(os.environ, GVBINDIR=folder)
        subprocess.run([dot, "-c"], env=env, capture_output=True, timeout=10, check=True)
        check = subprocess.run(
            [dot, "-Tsvg"], input=b'digraph{a[label="ok"]}', env=env, capture_output=True, timeout=10
        )
        if check.returncode != 0 or b"<svg" not in check.stdout:
            return None
        return env
    except (OSError, subprocess.SubprocessError, UnicodeError):
        return None
