"""Tutorial 3: activations as functions in forward (torch.relu, torch.sigmoid)."""

import torch
import torch.nn.functional as F

from common import run_example
from models import FunctionalNet

TEACHER = torch.Generator().manual_seed(2)
W = torch.randn(20, generator=TEACHER)


def batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(64, 20, generator=gen)
    return x, (x @ W > 0).float().unsqueeze(1)


if __name__ == "__main__":
    run_example("functional_net", FunctionalNet(), batch, loss=F.binary_cross_entropy, steps=60, lr=0.1)
