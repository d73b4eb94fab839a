"""Open real reports in headless Chromium, offline: no request leaves the page, no console
error, every figure, picture and graph draws, and the controls work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nnviz_report
from chromium import chromium, offline_page
from models import ResNet18
from nnviz_report.demo import train_demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    model, example, before, _ = train_demo(steps=10)
    demo = nnviz_report.build_report(model, example, before=before).save(folder / "demo.html")
    resnet = ResNet18()
    snap = nnviz_report.snapshot(resnet)
    with torch.no_grad():
        for p in resnet.parameters():
            p.add_(0.01)
    res = nnviz_report.build_report(resnet, torch.randn(2, 3, 32, 32), before=snap).save(folder / "resnet.html")
    return {"demo": demo, "resnet": res}


def open_offline(browser, path: Path):
    context, page, requests, errors = offline_page(browser)
    page.goto(path.as_uri())
    page.wait_for_function("window.nnviz !== undefined")
    page.evaluate("window.nnviz.firstScreen")
    return context, page, requests, errors


@pytest.mark.parametrize("name", ["demo", "resnet"])
def test_opens_offline_and_draws_everything(browser, reports, name, tmp_path):
    context, page, requests, errors = open_offline(browser, reports[name])
    page.screenshot(path=str(tmp_path / f"{name}-top.png"))
    height = page.evaluate("document.body.scrollHeight")
    for y in range(0, height, 700):
        page.evaluate(f"window.scrollTo({{top: {y}, behavior: 'instant'}})")
        page.wait_for_timeout(60)
    page.evaluate("window.nnviz.drawAll()")
    page.wait_for_function("window.nnviz.stats.figures === window.nnviz.counts().figures", timeout=30000)
    stats = page.evaluate("window.nnviz.stats")
    counts = page.evaluate("window.nnviz.counts()")
    assert stats["errors"] == [] and errors == []
    assert requests == []
    assert counts["figures"] > 20 and stats["figures"] == counts["figures"]
    assert stats["images"] == counts["images"] > 5
    assert stats["graphs"] == 1
    drawn = page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length")
    assert drawn >= counts["figures"]
    page.evaluate("document.getElementById('graph').scrollIntoView()")
    page.wait_for_timeout(300)
    shot = tmp_path / f"{name}-graph.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20000
    context.close()


def assert_found_in_the_middle(page):
    """The node a graph search picked is drawn in the middle of the canvas."""
    x, y, width, height = page.evaluate(
        "(() => { const n = document.querySelector('#graph .graph-canvas g.hit').getBoundingClientRect();"
        " const c = document.querySelector('#graph .graph-canvas').getBoundingClientRect();"
        " return [n.x + n.width / 2 - c.x, n.y + n.height / 2 - c.y, c.width, c.height]; })()"
    )
    assert abs(x - width / 2) < width / 10 and abs(y - height / 2) < height / 10, (x, y, width, height)


def test_controls(browser, reports):
    context, page, requests, errors = open_offline(browser, reports["resnet"])
    # Graph: search a block, jump to it, and follow the node to its feature map.
    page.evaluate("document.getElementById('graph').scrollIntoView()")
    page.wait_for_function("window.nnviz.stats.graphs === 1")
    page.fill("[data-graph-search]", "layers.1.0.conv1")
    page.click(".graph-results button")
    info = page.locator(".graph-info")
    assert "layers.1.0.conv1" in info.inner_text()
    # ... and the node found is in sight, in the middle of the canvas (it was drawn off it).
    assert_found_in_the_middle(page)
    page.fill("[data-graph-search]", "AddBackward0")  # an op node of a view
    page.click(".graph-results button >> nth=3")
    assert_found_in_the_middle(page)
    page.fill("[data-graph-search]", "layers.1.0.conv1")
    page.click(".graph-results button")
    href = info.locator("a").first.get_attribute("href")
    assert href.startswith("#fm-")
    assert page.evaluate(f"!!document.getElementById('{href[1:]}')")
    # The search opened the block's view; the path above it is a breadcrumb.
    crumbs = page.locator(".graph-crumbs").inner_text()
    assert "layers.1.0 · ResidualBlock" in crumbs and crumbs.startswith("ResNet")
    # Double-clicking a box opens its view; the breadcrumb leads back up.
    page.click(".graph-crumbs button >> nth=0")
    assert page.locator(".graph-crumbs").inner_text() == "ResNet"
    page.dblclick("#graph .graph-canvas g.node.opens >> nth=0")
    assert "›" in page.locator(".graph-crumbs").inner_text()
    # The full autograd view draws too.
    page.click("[data-tab=full]")
    assert page.evaluate("document.querySelectorAll('.graph-canvas g.node').length") > 100
    # Tables sort; filters hide rows.
    page.click("#fm-table th:nth-child(5)")
    means = page.evaluate(
        "[...document.querySelectorAll('#fm-table tbody tr td:nth-child(5)')]"
        ".map(td => td.dataset.v).filter(v => v !== '').map(Number)"
    )
    assert means == sorted(means)
    # ... from the keyboard too: a header takes focus, Enter sorts the other way.
    page.focus("#fm-table th:nth-child(5)")
    page.keyboard.press("Enter")
    means = page.evaluate(
        "[...document.querySelectorAll('#fm-table tbody tr td:nth-child(5)')]"
        ".map(td => td.dataset.v).filter(v => v !== '').map(Number)"
    )
    assert means == sorted(means, reverse=True)
    page.fill("#feature_maps input[data-filter]", "layers.3")
    visible = page.evaluate(
        "[...document.querySelectorAll('#fm-table tbody tr')]"
        ".filter(r => r.offsetParent !== null).map(r => r.dataset.name)"
    )
    assert visible and all("layers.3" in n for n in visible)
    # A parameter link opens its closed card.
    page.evaluate("location.hash = '#pm-layers.2.0.bn1'")
    assert page.evaluate("document.getElementById('pm-layers.2.0.bn1').open")
    # Hovering a channel grid shows its numbers; scrolling the page takes the tooltip away.
    page.fill("#feature_maps input[data-filter]", "")
    canvas = page.locator("#feature_maps canvas[data-img]").first
    canvas.scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#feature_maps canvas[data-img]')._nnviz !== undefined")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 3, box["y"] + 3)
    assert "channel" in page.locator(".tooltip").inner_text()
    page.mouse.wheel(0, 400)
    page.wait_for_function("document.querySelector('.tooltip').hidden", timeout=5000)
    # Theme switch.
    page.click("[data-theme-toggle]")
    assert page.evaluate("document.documentElement.getAttribute('data-theme')") in ("dark", "light")
    assert errors == [] and requests == []
    context.close()


def test_printing_a_page_just_opened_draws_every_picture_and_the_whole_graph(browser, reports, tmp_path):
    """Printing draws everything within the beforeprint event: pictures whose sheets were
    not decoded yet printed blank, and the graph printed at its first view's crop."""
    context, page, requests, errors = open_offline(browser, reports["demo"])
    page.wait_for_timeout(1000)  # idle: the picture sheets decode
    # A listener added after the page's own runs after it and its promise callbacks.
    page.evaluate(
        """window.addEventListener("beforeprint", () => {
             const svg = document.querySelector("#graph .graph-canvas svg"), vb = svg && svg.viewBox.baseVal;
             const drawn = svg && svg.querySelector("g").getBBox();
             window.atPrint = {images: window.nnviz.stats.images, total: window.nnviz.counts().images,
                               whole: !!svg && vb.width >= drawn.width && vb.height >= drawn.height};
           })"""
    )
    page.pdf(path=str(tmp_path / "demo.pdf"))
    at = page.evaluate("window.atPrint")
    assert at["images"] == at["total"] > 5 and at["whole"], at
    assert errors == [] and requests == []
    context.close()


def test_on_a_phone_a_swipe_over_the_graph_scrolls_the_page(browser, reports):
    context = browser.new_context(offline=True, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(reports["demo"].as_uri())
    page.wait_for_function("window.nnviz !== undefined")
    page.evaluate("document.getElementById('graph').scrollIntoView()")
    page.wait_for_function("window.nnviz.stats.graphs === 1")
    style = page.evaluate("getComputedStyle(document.querySelector('#graph .graph-canvas')).touchAction")
    assert style == "pan-y"
    context.close()
