"""Tutorial 2: a two-layer net; the report compares its biases before and after training."""

import torch

from common import run_example
from models import TwoLayerNet

TEACHER = torch.Generator().manual_seed(1)
W = torch.randn(20, 3, generator=TEACHER)


def batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(64, 20, generator=gen)
    return x, (x @ W).argmax(dim=1)


if __name__ == "__main__":
    run_example("two_layer_net", TwoLayerNet(), batch, steps=60, lr=0.05)
