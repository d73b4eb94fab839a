"""The page where others show it: as a file, inside MLflow's kind of preview (a sandboxed
frame with scripts allowed and nothing else: no storage, no same-origin, no pop-ups), and
with a table of contents that lands on its heading while the sections above draw."""

from __future__ import annotations

import pytest
import torch

import nnviz_report
from chromium import chromium, draw_everything, offline_page, report_frame
from models import SmallCNN, TransformerClassifier

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def tall_report(tmp_path_factory):
    """Eight encoder layers: the sections above the parameters grow by ~2,000 px as their
    charts draw (before the fix a click on "Parameters" left the heading 1,700 px off)."""
    torch.manual_seed(0)
    model = TransformerClassifier(layers=8)
    snap = nnviz_report.snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    report = nnviz_report.build_report(model, torch.randint(0, 1000, (2, 16)), before=snap)
    return report, report.save(tmp_path_factory.mktemp("frames") / "tall.html")


@pytest.fixture(scope="module")
def small_report():
    torch.manual_seed(0)
    model = SmallCNN()
    snap = nnviz_report.snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    return nnviz_report.build_report(model, torch.randn(2, 1, 28, 28), before=snap)


def heading_top(frame, section: str) -> float:
    return frame.evaluate(f"document.getElementById('{section}').getBoundingClientRect().top")


def settle(frame) -> None:
    """Until plotly.js is loaded and no chart in or near the view is still drawing."""
    quiet = "window.Plotly !== undefined && !document.querySelector('.fig.pending')"
    for _ in range(2):  # twice: a chart that scrolled into view starts drawing a frame later
        frame.wait_for_function(quiet, timeout=20000)
        frame.wait_for_timeout(250)


@pytest.mark.parametrize("section", ["parameters", "graph"])
def test_toc_lands_on_its_heading_while_sections_above_draw(browser, tall_report, section):
    _, path = tall_report
    context, page, requests, errors = offline_page(browser)
    page.goto(path.as_uri())
    page.wait_for_function("window.nnviz !== undefined")
    page.evaluate("window.nnviz.firstScreen")
    page.click(f".toc a[href='#{section}']")
    settle(page)  # figures of the sections passed on the way draw meanwhile
    assert abs(heading_top(page, section)) < 2
    assert page.url.endswith(f"#{section}")  # the address still follows, as a plain link would
    # A second entry, from where the first one landed, lands too; and so does the back button.
    page.click(".toc a[href='#feature_maps']")
    settle(page)
    assert abs(heading_top(page, "feature_maps")) < 2
    page.go_back()
    settle(page)
    assert abs(heading_top(page, section)) < 2
    assert errors == [] and requests == []
    context.close()


@pytest.mark.parametrize("how", ["blob", "srcdoc"])
def test_works_in_a_sandboxed_frame(browser, small_report, tmp_path, how):
    """As MLflow's UI shows an HTML artifact: sandbox="allow-scripts" (opaque origin, no
    storage), from a Blob URL or srcdoc."""
    report = small_report
    host = tmp_path / "host.html"
    host.write_text(
        "<!DOCTYPE html><title>host</title><h1>artifact preview</h1><div id=slot></div>"
        "<div style='height:3000px'></div>",
        encoding="utf-8",
    )
    context, page, requests, errors = offline_page(browser)
    page.goto(host.as_uri())
    page.evaluate(
        """([html, how]) => {
        const f = document.createElement('iframe');
        f.setAttribute('sandbox', 'allow-scripts');
        f.style.cssText = 'width: 1300px; height: 800px';
        if (how === 'blob') f.src = URL.createObjectURL(new Blob([html], {type: 'text/html'}));
        else f.srcdoc = html;
        document.getElementById('slot').appendChild(f);
    }""",
        [report.html, how],
    )
    frame = report_frame(page)
    assert (
        frame.evaluate("(() => { try { localStorage.length; return 'storage'; } catch (e) { return 'none'; } })()")
        == "none"
    )
    url = frame.url
    frame.evaluate("window.beforeClick = true")
    frame.click(".toc a[href='#parameters']")
    settle(frame)
    # Neither the frame nor the page navigated: the frame holds the same document.
    assert frame.evaluate("window.beforeClick === true") and frame.url.split("#")[0] == url
    assert page.url == host.as_uri()
    assert abs(heading_top(frame, "parameters")) < 2
    assert page.evaluate("window.scrollY") == 0  # the host page did not scroll
    stats, counts = draw_everything(frame)
    assert stats["errors"] == [] and errors == [] and requests == []
    assert stats["figures"] == counts["figures"] > 10
    assert stats["images"] == counts["images"] > 0 and stats["graphs"] == 1
    page.screenshot(path=str(tmp_path / f"sandboxed-{how}.png"))
    context.close()
