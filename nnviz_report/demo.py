"""The built-in demo: a small CNN with a residual block, trained briefly on synthetic data.

It uses what the report shows: module activations (ReLU) and functional ones (``F.gelu``,
``torch.sigmoid``), BatchNorm, a residual connection, before/after parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .capture.snapshot import Snapshot, snapshot


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class DemoNet(nn.Module):
    """28x28 grayscale in, one of four classes out."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block = ResidualBlock(16)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.gate = nn.Linear(128, 128)
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block(self.stem(x)))
        x = F.gelu(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 2).flatten(1)  # 2x2 keeps where the blob was
        x = x * torch.sigmoid(self.gate(x))
        return self.head(x)


def synthetic_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 28x28 images with a bright blob in one quadrant; the label is the quadrant."""
    labels = torch.randint(0, 4, (n,), generator=generator)
    images = torch.randn(n, 1, 28, 28, generator=generator) * 0.3
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    for i, label in enumerate(labels.tolist()):
        cy = 7 + 14 * (label // 2) + float(torch.randint(-3, 4, (1,), generator=generator))
        cx = 7 + 14 * (label % 2) + float(torch.randint(-3, 4, (1,), generator=generator))
        images[i, 0] += 2.0 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12.0)
    return images, labels


def train_demo(steps: int = 60, seed: int = 0) -> tuple[DemoNet, torch.Tensor, Snapshot, float]:
    """Train DemoNet for ``steps`` SGD steps; returns (model, example batch, snapshot taken
    before training, final training accuracy). Uses its own generator for data; the model's
    initialisation follows ``seed``."""
    torch.manual_seed(seed)
    model = DemoNet()
    before = snapshot(model, label="before training")
    assert before is not None  # a snapshot outside a distributed job
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    accuracy = 0.0
    for _ in range(steps):
        images, labels = synthetic_batch(32, gen)
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        accuracy = float((logits.argmax(1) == labels).float().mean())
    model.eval()
    example, _ = synthetic_batch(16, gen)
    return model, example, before, accuracy
