"""Peak memory of comparing against a checkpoint, on a Llama-style model of 1.24e9 parameters.

    python benchmarks/bench_memory.py                 # bf16 and fp32, the 1B model (~8 GB free RAM, ~8 GB disk)
    python benchmarks/bench_memory.py --layers 2      # a smaller model of the same shape, for a quick look

The model is built from a config by hand (examples/models.py: LLAMA_1B, the shape of Llama
3.2 1B, tied embeddings; random init) in its dtype. Its untrained weights are written
with ``snapshot(model, path=...)`` (safetensors) and, for the second format, with
``torch.save``; then every parameter moves a little (the stand-in for training). Each
measurement runs in a fresh process, one at a time: build the model, reset the kernel's
peak-RSS counter (``/proc/self/clear_refs``), run one ``build_report`` and read the peak
(VmHWM). The baseline is the same build without a before-state, in the same kind of
process; the comparison's memory is the difference of the two peaks, set against the
largest tensor of the model (the embedding, 262.7e6 values). Graph off: its layout is not
what is measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {examples!r}); sys.path.insert(0, {root!r})
import torch
from dataclasses import replace
from models import LLAMA_1B, LlamaForCausalLM
import nnviz_report

def status():
    out = {{}}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out

torch.manual_seed(0)
dtype = getattr(torch, {dtype!r})
config = replace(LLAMA_1B, num_hidden_layers={layers})
with torch.device("meta"):
    model = LlamaForCausalLM(config)
model = model.to_empty(device="cpu").to(dtype)
model.lm_head.weight = model.model.embed_tokens.weight
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0.0, 0.02)
    for m in model.modules():
        if isinstance(m, torch.nn.RMSNorm):
            m.weight.fill_(1.0)
task, path = {task!r}, {path!r}
result = {{"task": task, "dtype": {dtype!r}}}
if task == "write":
    open("/proc/self/clear_refs", "w").write("5")
    base = status()["VmRSS"]
    t = time.perf_counter()
    nnviz_report.snapshot(model, path=path + ".safetensors")
    result["snapshot_seconds"] = time.perf_counter() - t
    result["snapshot_extra"] = status()["VmHWM"] - base
    torch.save(model.state_dict(), path + ".pt")
    print(json.dumps(result)); sys.exit(0)
with torch.no_grad():  # "training": every parameter moves a little
    for p in model.parameters():
        p.add_(torch.randn_like(p), alpha=0.001)
tokens = torch.randint(0, config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
before = None if task == "alone" else f"{{path}}.{{task}}"
nnviz_report.build_report(model, tokens, graph=False)  # warm up: imports, first allocations
import gc; gc.collect()
open("/proc/self/clear_refs", "w").write("5")
result["model_rss"] = status()["VmRSS"]
t = time.perf_counter()
report = nnviz_report.build_report(model, tokens, before=before, graph=False)
result["seconds"] = time.perf_counter() - t
result["peak"] = status()["VmHWM"]
result["parameters"] = sum(p.numel() for p in model.parameters())
result["model_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
result["largest"] = max(p.numel() * p.element_size() for p in model.parameters())
result["largest_float32"] = max(p.numel() * 4 for p in model.parameters())
result["tensors"] = len(report.data["parameters"])
result["compared"] = sum(p["before"] is not None for p in report.data["parameters"])
result["warnings"] = list(report.warnings)
print(json.dumps(result))
"""


def child(task: str, dtype: str, layers: int, path: str) -> dict:
    code = CHILD.format(
        examples=str(ROOT / "examples"), root=str(ROOT), dtype=dtype, layers=layers, task=task, path=path
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{task} {dtype} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=16, help="decoder layers (16: the 1.24e9-parameter model)")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nnviz-bench-memory-") as tmp:
        for dtype in args.dtypes:
            path = os.path.join(tmp, f"before-{dtype}")
            written = child("write", dtype, args.layers, path)
            alone = child("alone", dtype, args.layers, path)
            print(
                f"\n{dtype}: {alone['parameters'] / 1e9:.3f}e9 parameters, {gb(alone['model_bytes'])}; largest "
                f"tensor {gb(alone['largest'])} ({gb(alone['largest_float32'])} as float32)"
            )
            print(
                f"  snapshot(model, path=...): {written['snapshot_seconds']:.1f} s, "
                f"peak +{gb(written['snapshot_extra'])}"
                " over the model"
            )
            print(
                f"  build_report, model alone:        peak {gb(alone['peak'])} "
                f"({gb(alone['peak'] - alone['model_rss'])}"
                f" over the process before it), {alone['seconds']:.1f} s"
            )
            row = {"dtype": dtype, "write": written, "alone": alone}
            for fmt in ("safetensors", "pt"):
                got = child(fmt, dtype, args.layers, path)
                assert got["compared"] == got["tensors"] and not got["warnings"], got
                extra = got["peak"] - alone["peak"]
                print(
                    f"  build_report, before=.{fmt:<12} peak {gb(got['peak'])} ({gb(got['peak'] - got['model_rss'])} "
                    f"over the process before it), {got['seconds']:.1f} s, {got['compared']} tensors compared\n"
                    f"    comparison memory (peak - peak of the model alone): {gb(extra)} = "
                    f"{extra / alone['largest']:.2f}x the largest tensor ({extra / alone['largest_float32']:.2f}x "
                    "its float32 size)"
                )
                row[fmt] = got
            rows.append(row)
            for suffix in (".safetensors", ".pt"):
                os.unlink(path + suffix)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
