"""Tutorial 1: a small CNN on 28x28 images with one ReLU module used twice."""

import torch

from common import run_example
from models import SmallCNN


def batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    # Ten classes: a bright square at one of ten positions on noise.
    y = torch.randint(0, 10, (32,), generator=gen)
    x = torch.randn(32, 1, 28, 28, generator=gen) * 0.3
    for i, label in enumerate(y.tolist()):
        r, c = 2 + 12 * (label // 5), 2 + 5 * (label % 5)
        x[i, 0, r : r + 4, c : c + 4] += 2.0
    return x, y


if __name__ == "__main__":
    run_example("small_cnn", SmallCNN(), batch, steps=40, lr=0.02)
