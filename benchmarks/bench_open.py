"""How fast a report opens for its reader, in headless Chromium, against a naive page.

    python benchmarks/bench_open.py [--report existing.html]

Builds the ResNet-50 report (224x224, with a before-state) unless given one, opens it
offline and measures from navigation start: first contentful paint, the moment every
element in the first screen is drawn (the page's "nnviz-first-screen" mark), plotly.js
ready, each figure's draw time, and a scroll through the whole page. The baseline, made
from the same report in the same run, is the naive page: the full plotly.js bundle
(Python plotly's plotly.min.js) loaded in <head> and every figure, picture and the graph
drawn at load.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))

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


def naive_variant(html: str) -> str:
    """The same report the naive way: the full plotly.js in <head>, everything drawn at load."""
    import plotly

    full = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text(encoding="utf-8")
    html = re.sub(r'<script type="text/plain" id="nnviz-plotly">.*?</script>', "", html, count=1, flags=re.S)
    html = html.replace("</head>", "<script>" + full.replace("</script", "<\\/script") + "</script>\n</head>", 1)
    eager = "<script>window.nnviz.drawAll().then(function(){performance.mark('naive-all-drawn')});</script>"
    return html.replace("</body>", eager + "\n</body>", 1)


def mark(page, name: str) -> float | None:
    return page.evaluate(f"(performance.getEntriesByName('{name}')[0] || {{}}).startTime || null")


def open_page(browser, path: Path, naive: bool) -> dict:
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
    requests, errors = [], []
    context.route(
        "**/*",
        lambda r: (
            (requests.append(r.request.url), r.abort())
            if not r.request.url.startswith(("file:", "data:", "blob:"))
            else r.continue_()
        ),
    )
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_function("window.nnviz !== undefined")
    page.evaluate("window.nnviz.firstScreen")
    result = {
        "fcp": page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null"),
        "load": page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"),
    }
    if naive:
        page.wait_for_function("performance.getEntriesByName('naive-all-drawn').length > 0", timeout=120000)
        result["all_drawn"] = mark(page, "naive-all-drawn")
    else:
        result["first_screen"] = mark(page, "nnviz-first-screen")
        page.wait_for_function("performance.getEntriesByName('nnviz-plotly-ready').length > 0")
        result["plotly_ready"] = mark(page, "nnviz-plotly-ready")
        started = time.perf_counter()
        height = page.evaluate("document.body.scrollHeight")
        for y in range(0, height, 800):
            page.evaluate(f"window.scrollTo({{top: {y}, behavior: 'instant'}})")
            page.wait_for_function("document.querySelectorAll('.fig.pending').length === 0", timeout=60000)
        result["scroll_through"] = time.perf_counter() - started
        draw = page.evaluate("window.nnviz.stats.drawMs")
        result["figures_drawn"] = len(draw)
        result["figure_ms_median"] = statistics.median(draw) if draw else None
        result["figure_ms_max"] = max(draw) if draw else None
        result["figures"] = page.evaluate("window.nnviz.counts().figures")
    result["errors"] = errors
    result["requests"] = requests
    context.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", type=Path, help="an existing report to open instead of building ResNet-50's")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nnviz-open-"))
    if args.report:
        path = args.report
    else:
        import torch
        from bench_build import trained_resnet50

        import nnviz_report

        model, snap = trained_resnet50()
        path = nnviz_report.build_report(model, torch.randn(1, 3, 224, 224), before=snap).save(tmp / "resnet50.html")
    naive = tmp / "naive.html"
    naive.write_text(naive_variant(path.read_text(encoding="utf-8")), encoding="utf-8")

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ours = [open_page(browser, path, naive=False) for _ in range(args.runs)]
        theirs = [open_page(browser, naive, naive=True) for _ in range(max(1, args.runs - 1))]
        browser.close()

    def med(rows, key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    first = max(med(ours, "fcp"), med(ours, "first_screen"))
    print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB; {ours[0]['figures']} figures; median of {len(ours)} opens")
    print(f"  first contentful paint        {med(ours, 'fcp') / 1000:6.2f} s")
    print(f"  first screen drawn            {med(ours, 'first_screen') / 1000:6.2f} s   (goal <= 1.5 s)")
    print(f"  plotly.js ready               {med(ours, 'plotly_ready') / 1000:6.2f} s")
    print(f"  load event                    {med(ours, 'load') / 1000:6.2f} s")
    print(
        f"  per figure when scrolled to   median {med(ours, 'figure_ms_median'):.0f} ms, "
        f"max {med(ours, 'figure_ms_max'):.0f} ms"
    )
    print(
        f"  scrolling through everything  {med(ours, 'scroll_through'):6.2f} s "
        f"({ours[0]['figures_drawn']} figures drawn)"
    )
    print(f"naive page (full plotly.js in <head>, everything drawn at load): {naive.stat().st_size / 1e6:.2f} MB")
    print(f"  first contentful paint        {med(theirs, 'fcp') / 1000:6.2f} s")
    print(f"  everything drawn              {med(theirs, 'all_drawn') / 1000:6.2f} s")
    print(f"ratio: the naive page shows a complete first screen {med(theirs, 'all_drawn') / first:.1f}x later")
    problems = [r for r in ours + theirs if r["errors"] or r["requests"]]
    print(
        "console errors / requests:",
        "none" if not problems else problems[0]["errors"][:3] + problems[0]["requests"][:3],
    )


if __name__ == "__main__":
    main()
