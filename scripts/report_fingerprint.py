"""Everything a fixed set of reports holds, as canonical JSON: a refactor's before/after check.

    python scripts/report_fingerprint.py OUT.json            # this checkout's package
    PYTHONPATH=/path/to/other/checkout python scripts/report_fingerprint.py OUT.json

Builds reports of fixed models with fixed seeds (the demo; examples/models.py's ResNet18,
TransformerClassifier, LSTMTagger and UNet; a few of examples/zoo.py), each without a
before-state, with one, and with a trajectory of two, and writes per report: ``Report.data``
without what changes from run to run (``environment.created``), the page's per-section view
payloads decoded, the pictures, the command-line warnings, and a hash of the page with the
creation time taken out. Two runs of the same code give the same file; compare two files with ``cmp`` or
``diff``. The graph layouts get a generous timeout so that a loaded machine does not
change which views are drawn. String hashing is fixed (``PYTHONHASHSEED=0``, the script
runs itself again with it): the order of the junction edges in a bundled view follows set
iteration, so without it two runs of DenseNet differ in the order of their SVG's edges.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import nnviz_report  # noqa: E402
from nnviz_report.capture.snapshot import snapshot  # noqa: E402


def _perturbed(model: torch.nn.Module, seed: int) -> None:
    """Move every parameter a little (a stand-in for training), deterministically."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.01)


def _cases() -> list[tuple[str, Callable[[], tuple[torch.nn.Module, Any, Any]]]]:
    from models import LSTMTagger, ResNet18, TransformerClassifier, UNet
    from nnviz_report.demo import train_demo
    from zoo import R3D, DataclassOutput, DenseNet, InceptionNet, Seq2Seq, TinyDecoder, TinyDetector

    def demo() -> tuple[torch.nn.Module, Any, Any]:
        model, example, before, _ = train_demo(steps=5, seed=0)
        return model, example, [before]

    def plain(build: Callable[[], torch.nn.Module], example: Callable[[], Any]) -> Callable:
        def make() -> tuple[torch.nn.Module, Any, Any]:
            torch.manual_seed(0)
            model = build()
            first = snapshot(model, label="init")
            _perturbed(model, 1)
            middle = snapshot(model, label="middle")
            _perturbed(model, 2)
            torch.manual_seed(3)
            return model, example(), [first, middle]

        return make

    return [
        ("demo", demo),
        ("ResNet18", plain(ResNet18, lambda: torch.randn(2, 3, 32, 32))),
        ("TransformerClassifier", plain(TransformerClassifier, lambda: torch.randint(0, 1000, (2, 16)))),
        ("LSTMTagger", plain(LSTMTagger, lambda: torch.randint(0, 100, (2, 12)))),
        ("UNet", plain(UNet, lambda: torch.randn(1, 3, 64, 64))),
        ("TinyDecoder", plain(TinyDecoder, lambda: torch.randint(0, 256, (2, 16)))),
        ("DenseNet", plain(lambda: DenseNet((3, 4), growth=8, init=16), lambda: torch.randn(1, 3, 32, 32))),
        ("InceptionNet", plain(InceptionNet, lambda: torch.randn(1, 3, 32, 32))),
        ("R3D", plain(R3D, lambda: torch.randn(1, 3, 8, 32, 32))),
        ("Seq2Seq", plain(Seq2Seq, lambda: (torch.randint(0, 200, (2, 12)), torch.randint(0, 200, (2, 9))))),
        ("TinyDetector", plain(TinyDetector, lambda: torch.randn(1, 3, 32, 32))),
        ("DataclassOutput", plain(DataclassOutput, lambda: torch.randn(2, 8))),
    ]


def _views(html: str) -> dict[str, Any]:
    out = {}
    for section, text in re.findall(
        r'<script[^>]*class="nnviz-view"[^>]*data-section="([^"]+)"[^>]*>(.*?)</script>', html, re.S
    ):
        out[section] = json.loads(gzip.decompress(base64.b64decode(text)))
    return out


def _script(html: str, element_id: str) -> Any:
    m = re.search(rf'<script[^>]*id="{re.escape(element_id)}"[^>]*>(.*?)</script>', html, re.S)
    return json.loads(m.group(1)) if m else None


def fingerprint(report: Any) -> dict[str, Any]:
    data = copy.deepcopy(report.data)
    created = data["environment"].pop("created")
    page = report.html.replace(created, "<created>")
    page = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "<created_text>", page)
    return {
        "data": data,
        "views": _views(report.html),
        "images": _script(report.html, "nnviz-images"),
        "warnings": list(report.warnings),
        "page_sha256": hashlib.sha256(page.encode("utf-8")).hexdigest(),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, __file__, *argv], {**os.environ, "PYTHONHASHSEED": "0"})
    torch.set_num_threads(1)  # reductions summed in one order, whatever the machine's load
    out: dict[str, Any] = {"package": str(Path(nnviz_report.__file__).parent)}
    for name, make in _cases():
        model, example, befores = make()
        variants = {"alone": None, "before": befores[0]}
        if len(befores) > 1:
            variants["trajectory"] = befores
        for variant, before in variants.items():
            key = f"{name} {variant}"
            torch.manual_seed(4)
            report = nnviz_report.build_report(model, example, before=before, dot_timeout=120.0)
            out[key] = fingerprint(report)
            print(key, out[key]["page_sha256"][:12], file=sys.stderr)
    text = json.dumps({k: v for k, v in out.items() if k != "package"}, sort_keys=True, indent=1, ensure_ascii=False)
    Path(argv[0]).write_text(text, encoding="utf-8")
    print(f"{out['package']}: {len(out) - 1} reports -> {argv[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
