"""Reports in notebooks: the README's notebook example executed by nbclient, exported by
nbconvert and opened in headless Chromium; the frame markup itself; an untrusted export."""

from __future__ import annotations

import copy
import html as _html
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import nnviz_report
from chromium import chromium, draw_everything, offline_page, report_frame
from helpers import ROOT, need
from models import TwoLayerNet
from nnviz_report import NNVizError


@pytest.fixture(scope="module")
def report():
    model = TwoLayerNet()
    return nnviz_report.build_report(model, torch.randn(4, 20), title='<script>alert("x")</script> & co', graph=False)


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(markup: str) -> list:
    p = Tags()
    p.feed(markup)
    return p.tags


def test_frame_markup(report):
    markup = report._repr_html_()
    tags = parse(markup)
    [frame] = [a for t, a in tags if t == "iframe"]
    assert frame["srcdoc"] == report.html  # the whole page, exactly, and no src= or data: URL
    assert "src" not in frame
    assert frame["sandbox"].split() == ["allow-scripts", "allow-downloads"]  # no same-origin, no pop-ups
    assert "height:80vh" in frame["style"]
    # The caption is plain text outside the frame, escaped.
    caption = markup.split("<iframe", 1)[0]
    assert "<script>alert" not in caption and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in caption
    assert "TwoLayerNet" in caption and "finding" in caption
    assert [t for t, _ in tags].count("script") == 1  # the new-tab link's script, outside the frame


def test_show_saves_links_and_checks_height(report, tmp_path, monkeypatch, capsys):
    need("IPython")
    monkeypatch.chdir(tmp_path)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    assert report.show("saved.html", height=500) == Path("saved.html")
    assert (tmp_path / "saved.html").read_text(encoding="utf-8") == report.html
    [output] = shown
    assert '<a href="saved.html"' in output.data and "height:500px" in output.data
    for bad in (20, "100px; background:url(http://x)", True, 3.5):
        with pytest.raises(NNVizError, match="height"):
            report.show(height=bad)


def notebook_cells() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8").split("\n### Notebooks\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    return [c.strip() for c in re.split(r"^# %%.*$", code, flags=re.M) if c.strip()]


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The README's notebook example, executed in a real kernel and exported to HTML."""
    nbformat, nbclient, nbconvert = need("nbformat"), need("nbclient"), need("nbconvert")
    folder = tmp_path_factory.mktemp("notebook")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in notebook_cells()])
    nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    nbformat.write(nb, folder / "example.ipynb")
    exported, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    (folder / "example.html").write_text(exported, encoding="utf-8")
    # As a viewer shows it untrusted: nbconvert's sanitizer. It drops the frame whatever its
    # srcdoc holds; the page is shortened here because sanitizing 2 MB of it takes ~19 s.
    short = copy.deepcopy(nb)
    for cell in short.cells:
        for out in cell.outputs:
            if "text/html" in out.get("data", {}):
                out["data"]["text/html"] = re.sub(
                    r'srcdoc="[^"]*"', 'srcdoc="&lt;p&gt;the page&lt;/p&gt;"', out["data"]["text/html"]
                )
    untrusted, _ = nbconvert.HTMLExporter(sanitize_html=True).from_notebook_node(short)
    return nb, folder, exported, untrusted


def test_notebook_outputs(notebook):
    nb, folder, _exported, untrusted = notebook
    first, second = (c.outputs for c in nb.cells)
    [html_output] = [o for o in first if "text/html" in o.get("data", {})]
    assert "srcdoc=" in html_output["data"]["text/html"]
    # The plain-text form beside it is one line, not a second copy of the page.
    assert html_output["data"]["text/plain"].startswith("<Report: nnviz-report: notebook example · Sequential")
    assert len(html_output["data"]["text/plain"]) < 300
    assert (folder / "report.html").is_file() and 'href="report.html"' in second[0]["data"]["text/html"]
    assert len(second) == 1, "no echo of the returned path"
    # Opened untrusted (sanitized), the frame and the script are gone; the caption still says what was there.
    assert "<iframe" not in untrusted and "<script>(function" not in untrusted
    assert "nnviz-report: notebook example · Sequential" in _html.unescape(untrusted)


@pytest.mark.browser
def test_exported_notebook_in_chromium(notebook, tmp_path):
    _nb, folder, _exported, _untrusted = notebook
    with chromium() as browser:
        context, page, requests, errors = offline_page(browser)
        # nbconvert's page loads require.js, MathJax and Mermaid from CDNs: offline, those are
        # answered with an empty script, so that only the report's own behaviour is judged.
        context.route(
            re.compile(r"^https://(cdnjs\.cloudflare\.com|cdn\.jsdelivr\.net|unpkg\.com)/"),
            lambda r: r.fulfill(status=200, content_type="text/javascript", body=""),
        )
        page.goto((folder / "example.html").as_uri())
        frame = report_frame(page)
        assert frame.url == "about:srcdoc"
        # The caption and its download link (never a page opened in the notebook's origin),
        # outside the frame.
        caption = page.locator("p[id$='-caption']").first
        assert "nnviz-report: notebook example" in caption.inner_text()
        save = caption.locator("a", has_text="save as HTML")
        assert save.count() == 1 and save.get_attribute("download") == "nnviz-report.html"
        # A table-of-contents click scrolls the frame, nothing else: no navigation of the
        # frame or the notebook page, no scrolling of the notebook page.
        page_url, page_y = page.url, page.evaluate("window.scrollY")
        frame.evaluate("window.beforeClick = true")
        frame.click(".toc a[href='#parameters']")
        frame.wait_for_function("Math.abs(document.getElementById('parameters').getBoundingClientRect().top) < 2")
        page.wait_for_timeout(300)
        assert frame.evaluate("window.beforeClick === true") and frame.url == "about:srcdoc"
        assert page.url == page_url and page.evaluate("window.scrollY") == page_y
        stats, counts = draw_everything(frame)
        assert stats["errors"] == [] and errors == [] and requests == []
        assert stats["figures"] == counts["figures"] > 10 and stats["images"] == counts["images"] > 0
        assert stats["graphs"] == 1
        frame.evaluate("window.scrollTo(0, 0)")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(tmp_path / "notebook.png"))
        context.close()
