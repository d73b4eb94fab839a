"""One rank of a 2-rank job (torchrun, gloo, CPU): the integrations with an FSDP2 model.

    ACCELERATE_USE_CPU=1 python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        tests/sharded_integrations_job.py OUT

accelerate's report() and the Hugging Face callback, each on a model sharded with
fully_shard: every rank takes part, rank 0 writes the report. Writes OUT/rank<N>.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

import nnviz_report
from accelerate import Accelerator
from nnviz_report.accelerate import report
from nnviz_report.huggingface import NNVizTrainerCallback


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def sharded_net() -> nn.Module:
    torch.manual_seed(0)  # the same weights on both ranks before they are sharded
    model = Net()
    fully_shard(model.fc1)
    fully_shard(model)
    return model


def train(model: nn.Module) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        loss = model(torch.randn(4, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def main(out: Path) -> None:
    accelerator = Accelerator()  # ACCELERATE_USE_CPU=1: gloo on the CPU
    rank = dist.get_rank()
    seen: dict[str, object] = {"rank": rank}

    model = sharded_net()
    snap = nnviz_report.snapshot(model)
    train(model)
    r = report(accelerator, model, torch.randn(4, 8), before=snap, graph=False)
    seen["accelerate"] = r is not None
    if r is not None:
        r.save(out / "accelerate.html")

    from transformers import TrainerControl, TrainerState, TrainingArguments

    model = sharded_net()
    args = TrainingArguments(output_dir=str(out / "hf"), per_device_train_batch_size=2, report_to=[], use_cpu=True)
    state = TrainerState()
    state.is_world_process_zero = rank == 0
    data = [{"x": torch.randn(8), "labels": torch.tensor(i % 3)} for i in range(6)]
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    callback = NNVizTrainerCallback(graph=False)
    callback.on_train_begin(args, state, TrainerControl(), model=model, train_dataloader=loader)
    train(model)
    callback.on_train_end(args, state, TrainerControl(), model=model)
    seen["hf"] = str(callback.saved) if callback.saved else None
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
    dist.barrier()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    dist.destroy_process_group()
