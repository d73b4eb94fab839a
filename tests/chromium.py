"""Headless Chromium for the tests that open pages inside frames (notebooks, MLflow's
sandboxed preview): Debian's chromium driven by Playwright, offline."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


@contextlib.contextmanager
def chromium():
    if not Path(CHROMIUM).exists() and not os.environ.get("NNVIZ_REQUIRE_BROWSER"):
        pytest.skip("Chromium is not installed (apt-get install chromium); CI sets NNVIZ_REQUIRE_BROWSER=1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def offline_page(browser, viewport=(1400, 900)):
    """A page that may load file:, data:, blob: and about: URLs only; it records every
    other request (aborted) and every console error or uncaught exception, in any frame."""
    context = browser.new_context(offline=True, viewport={"width": viewport[0], "height": viewport[1]})
    requests, errors = [], []

    def route(r):
        if not r.request.url.startswith(("file:", "data:", "blob:", "about:")):
            requests.append(r.request.url)
            return r.abort()
        return r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, requests, errors


def report_frame(page, timeout=30000):
    """The frame that holds a report (its script defined window.nnviz)."""
    page.wait_for_function("document.querySelector('iframe') !== null", timeout=timeout)
    for _ in range(timeout // 100):
        for frame in page.frames:
            if frame is page.main_frame:
                continue
            try:
                if frame.evaluate("window.nnviz !== undefined"):
                    return frame
            except Exception:  # noqa: BLE001 - a frame still loading
                pass
        page.wait_for_timeout(100)
    raise AssertionError(f"no report frame among {[f.url for f in page.frames]}")


def draw_everything(frame, timeout=30000):
    frame.evaluate("window.nnviz.drawAll()")
    frame.wait_for_function("window.nnviz.stats.figures === window.nnviz.counts().figures", timeout=timeout)
    stats = frame.evaluate("window.nnviz.stats")
    counts = frame.evaluate("window.nnviz.counts()")
    return stats, counts
