"""Tutorial 4: a ResNet-18 built from ResidualBlock, on 32x32 colour images."""

import torch

from common import run_example
from models import ResNet18


def batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # Ten classes: which colour channel is brighter, and where.
    y = torch.randint(0, 10, (16,), generator=gen)
    x = torch.randn(16, 3, 32, 32, generator=gen) * 0.5
    for i, label in enumerate(y.tolist()):
        x[i, label % 3, 8 * (label // 3) : 8 * (label // 3) + 8] += 1.5
    return x, y


if __name__ == "__main__":
    run_example("resnet", ResNet18(), batch, steps=8, lr=0.02)
