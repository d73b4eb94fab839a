"""One rank of the 2-rank job tests/test_distributed.py starts with torchrun (gloo, CPU).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_job.py OUT

Each scenario runs on both ranks, in order, and writes what it saw to OUT: rank 0's reports
(HTML and data), the weights and inputs a single-process build needs to check them, a
torch.distributed.checkpoint folder, and per rank a JSON file of outcomes and timings.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import nnviz_report
from models import LlamaForCausalLM  # examples/, on PYTHONPATH (see tests/test_distributed.py)

PG_TIMEOUT = 8.0  # the job's own collectives (FSDP's all-gathers) give up after this
DIST_TIMEOUT = 30.0  # build_report's waits between steps


class BatchNormNet(nn.Module):
    """DDP broadcasts BatchNorm buffers in its forward: a collective, if the report called it."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.bn = nn.BatchNorm1d(32)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x):
        return self.fc2(self.act(self.bn(self.fc1(x))))


class TiedNet(nn.Module):
    """An embedding tied to the output layer: FSDP1's flat parameter holds the weight once."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(37, 16)
        self.head = nn.Linear(16, 37, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.emb(ids))


class FailsOnRank1(nn.Module):
    """Raises in the second layer's forward on rank 1, after FSDP gathered the first."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(8, 8)
        self.second = nn.Linear(8, 8)
        self.third = nn.Linear(8, 8)

    def forward(self, x):
        x = self.first(x)
        if dist.get_rank() == 1:
            raise RuntimeError("rank 1 broke")
        return self.third(self.second(x))


def train(model, batches, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for x in batches[:steps]:
        out = model(x)
        loss = out.float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def outcome(fn):
    started = time.perf_counter()
    try:
        value = fn()
        return {"ok": True, "none": value is None, "seconds": time.perf_counter() - started}, value
    except nnviz_report.NNVizError as exc:
        return {"ok": False, "error": str(exc), "seconds": time.perf_counter() - started}, None


def main(out: Path) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=PG_TIMEOUT))
    rank = dist.get_rank()
    results: dict = {}

    def save_report(name, report):
        if report is not None:
            report.save(out / f"{name}.html")
            (out / f"{name}.json").write_text(json.dumps(report.data))

    # DDP: every rank holds the whole model; no collective may run on rank 0 alone.
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    net = BatchNormNet()
    ddp = DDP(net)
    results["ddp_snapshot"], snap = outcome(lambda: nnviz_report.snapshot(ddp))
    gen = torch.Generator().manual_seed(10 + rank)
    train(ddp, [torch.randn(16, 20, generator=gen) for _ in range(3)])
    x = torch.randn(8, 20, generator=torch.Generator().manual_seed(1))
    results["ddp"], report = outcome(lambda: nnviz_report.build_report(ddp, x, before=snap, dist_timeout=DIST_TIMEOUT))
    save_report("ddp", report)
    if rank == 0:
        torch.save({"state": net.state_dict(), "before": dict(snap.tensors), "x": x}, out / "ddp_weights.pt")
    train(ddp, [torch.randn(16, 20, generator=gen)], steps=1)  # training goes on
    if rank == 0:  # the usual "if rank == 0:" works as well: no collective runs
        results["ddp_rank0_only"], _ = outcome(lambda: nnviz_report.build_report(ddp, x, graph=False))
    train(ddp, [torch.randn(16, 20, generator=gen)], steps=1)

    # FSDP2: each rank holds a shard; every rank runs the forward pass and gathers the state.
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    llama = LlamaForCausalLM(num_hidden_layers=3)
    for layer in llama.model.layers:
        fully_shard(layer)
    fully_shard(llama)
    results["fsdp_snapshot"], snap = outcome(
        lambda: nnviz_report.snapshot(llama, path=out / "fsdp_before.safetensors", dist_timeout=DIST_TIMEOUT)
    )
    gen = torch.Generator().manual_seed(20 + rank)
    train(llama, [torch.randint(0, 128, (4, 8), generator=gen) for _ in range(3)])
    tokens = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(2))
    results["fsdp"], report = outcome(
        lambda: nnviz_report.build_report(llama, tokens, before=snap, dist_timeout=DIST_TIMEOUT)
    )
    save_report("fsdp", report)
    full = get_model_state_dict(llama, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        torch.save({"state": full, "tokens": tokens}, out / "fsdp_weights.pt")
    import torch.distributed.checkpoint as dcp

    dcp.save({"model": get_model_state_dict(llama)}, checkpoint_id=str(out / "dcp"))
    train(llama, [torch.randint(0, 128, (4, 8), generator=gen)], steps=1)  # training goes on
    results["fsdp_class_name"] = report.data["model"]["class_name"] if report is not None else None

    # FSDP1, each Linear a unit of its own inside the root's.
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    torch.manual_seed(0)
    fsdp1 = FSDP(BatchNormNet(), device_id=torch.device("cpu"), auto_wrap_policy=ModuleWrapPolicy({nn.Linear}))
    results["fsdp1_snapshot"], snap = outcome(lambda: nnviz_report.snapshot(fsdp1, dist_timeout=DIST_TIMEOUT))
    gen = torch.Generator().manual_seed(30 + rank)
    train(fsdp1, [torch.randn(16, 20, generator=gen) for _ in range(3)])
    results["fsdp1"], report = outcome(
        lambda: nnviz_report.build_report(fsdp1, x, before=snap, dist_timeout=DIST_TIMEOUT)
    )
    save_report("fsdp1", report)
    full = get_model_state_dict(fsdp1, options=StateDictOptions(full_state_dict=True))  # CPU: no offload
    if rank == 0:
        torch.save({"state": full, "before": dict(snap.tensors), "x": x}, out / "fsdp1_weights.pt")
    train(fsdp1, [torch.randn(16, 20, generator=gen)], steps=1)
    # FSDP1 of a model with tied weights (use_orig_params=False: the tie is in the flat parameter).
    torch.manual_seed(0)
    tied = FSDP(TiedNet(), device_id=torch.device("cpu"))
    ids = torch.arange(10).view(2, 5)
    results["fsdp1_tied"], report = outcome(
        lambda: nnviz_report.build_report(tied, ids, graph=False, dist_timeout=DIST_TIMEOUT)
    )
    save_report("fsdp1_tied", report)

    # A failure on rank 0 before the forward pass (its before= checkpoint is missing).
    results["missing_before"], _ = outcome(
        lambda: nnviz_report.build_report(
            llama, tokens, before=out / "missing.pt", graph=False, dist_timeout=DIST_TIMEOUT
        )
    )

    # A rank that does not call: the other gives up after dist_timeout; the first's next
    # call meets the failed step, fails too, and the ranks are in step again.
    if rank == 0:
        results["alone"], _ = outcome(lambda: nnviz_report.snapshot(llama, dist_timeout=2.0))
    dist.barrier()
    if rank == 1:
        results["late"], _ = outcome(lambda: nnviz_report.snapshot(llama, dist_timeout=DIST_TIMEOUT))
    dist.barrier()

    # Rank 1's forward pass raises half-way; rank 1 stays alive (it caught the error).
    torch.manual_seed(0)
    failing = FailsOnRank1()
    for m in (failing.first, failing.second, failing.third):
        fully_shard(m)
    fully_shard(failing)
    results["forward_fails"], _ = outcome(
        lambda: nnviz_report.build_report(failing, torch.randn(2, 8), graph=False, dist_timeout=DIST_TIMEOUT)
    )
    results["finished"] = time.time()
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    # The process group may be broken now (rank 0 timed out in an all-gather): meet
    # through the store, which still works, not through a collective; then leave without
    # torch's teardown (with FSDP1 on the CPU it sometimes aborts at exit: "terminate
    # called without an active exception", seen without nnviz-report too).
    store = dist.distributed_c10d._get_default_store()
    store.add("finished", 1)
    while int(store.add("finished", 0)) < 2:
        time.sleep(0.05)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
