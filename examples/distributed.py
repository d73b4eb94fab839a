"""Train with FSDP2 under torchrun and write one report, on rank 0.

torchrun --standalone --nproc_per_node=2 examples/distributed.py --output report.html
"""

import argparse
import datetime
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import fully_shard

import nnviz_report


class Net(nn.Module):
    def __init__(self, width: int = 64, blocks: int = 4, classes: int = 10):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
            for _ in range(blocks)
        )
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default="report.html")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=5))
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)

    torch.manual_seed(0)  # the same initial weights on every rank
    model = Net().to(device)
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)

    before = nnviz_report.snapshot(model)  # every rank calls; rank 0 gets the full weights
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(rank)  # each rank its own batches
    for _ in range(args.steps):
        x = torch.randn(32, 64, generator=data).to(device)
        y = (x[:, :10].argmax(dim=1)).to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    example = torch.randn(8, 64, generator=torch.Generator().manual_seed(0)).to(device)
    report = nnviz_report.build_report(model, example, before=before, title="FSDP2 run")  # every rank calls
    if report is not None:  # rank 0
        report.save(args.output)
        print(f"rank {rank} wrote {args.output}")
    dist.barrier()  # the other ranks wait for rank 0 to finish before the group goes away
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
