"""Architectures the autograd graph is tested and benchmarked on, written out in plain PyTorch
(torchvision does not import beside the CPU torch wheel this project pins). Each entry of
``ZOO`` builds a model and its example input and states the true skip counts.

    nnviz-report build examples/zoo.py:DenseNet121 --input-shape 1,3,224,224
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# --- DenseNet (torchvision's layout: a concatenation per dense layer) ------------------------


class DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(channels, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, channels: int, growth: int):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(channels + i * growth, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    """torchvision's DenseNet: each dense layer concatenates every earlier map of its block
    (a concatenation skip per layer but the block's first), and each block ends with one."""

    def __init__(
        self, blocks: tuple[int, ...] = (6, 12, 24, 16), growth: int = 32, init: int = 64, num_classes: int = 1000
    ):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, init, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(init))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        channels = init
        for i, n in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(n, channels, growth))
            channels += n * growth
            if i != len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def DenseNet121(num_classes: int = 1000) -> DenseNet:
    return DenseNet((6, 12, 24, 16), num_classes=num_classes)


# --- Inception (GoogLeNet's block: four branches, each with layers, concatenated) ---------------


class BasicConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, **kw):
        super().__init__(nn.Conv2d(cin, cout, k, bias=False, **kw), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int):
        super().__init__()
        self.branch1 = BasicConv(cin, c1, 1)
        self.branch2 = nn.Sequential(BasicConv(cin, c3r, 1), BasicConv(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv(cin, c5r, 1), BasicConv(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), BasicConv(cin, pool, 1))
        self.out_channels = c1 + c3 + c5 + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionNet(nn.Module):
    """A GoogLeNet-style stack of three Inception blocks: branch merges, no skip."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = BasicConv(3, 32, 3, padding=1)
        self.a = InceptionBlock(32, 16, 16, 24, 8, 8, 8)
        self.b = InceptionBlock(56, 24, 24, 32, 8, 16, 16)
        self.c = InceptionBlock(88, 32, 32, 48, 8, 16, 16)
        self.fc = nn.Linear(112, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(F.max_pool2d(self.b(self.a(self.stem(x))), 2))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- recurrent models -------------------------------------------------------------------------


class RecurrentStack(nn.Module):
    """Embedding -> 2-layer bidirectional LSTM -> GRU -> Linear: gate arithmetic, no skip."""

    def __init__(self, vocab: int = 100, dim: int = 16, hidden: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(2 * hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(self.embed(ids))
        x, _ = self.gru(x)
        return self.out(x)


class UnrolledGRU(nn.Module):
    """One GRUCell applied ``steps`` times in forward: a deep chain of calls of one module."""

    def __init__(self, steps: int = 100, dim: int = 8, hidden: int = 16):
        super().__init__()
        self.steps = steps
        self.hidden = hidden
        self.cell = nn.GRUCell(dim, hidden)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        for t in range(self.steps):
            h = self.cell(x[:, t % x.shape[1]], h)
        return self.head(h)


def DeepSequential(layers: int = 1000, width: int = 16) -> nn.Sequential:
    """``layers`` x (Linear + ReLU) in one nn.Sequential."""
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*mods)


class ChainedAdds(nn.Module):
    """``x = x + 1`` ``steps`` times in one forward: a long chain of operations, no module."""

    def __init__(self, steps: int = 2000):
        super().__init__()
        self.steps = steps
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale
        for _ in range(self.steps):
            x = x + 1
        return x


# --- a decoder transformer with tanh-GELU and rotary embeddings (GPT-2 / Llama arithmetic) --


class NewGELU(nn.Module):
    """GPT-2's tanh approximation of GELU, written out (transformers' NewGELUActivation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class RotaryAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = RotaryAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.act = NewGELU()
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cos, sin)
        return x + self.out(self.act(self.fc(self.ln2(x))))


class TinyDecoder(nn.Module):
    """A GPT-style decoder: 2 residual connections per block, none from the GELU polynomial or
    the rotary embedding."""

    def __init__(self, vocab: int = 256, dim: int = 32, heads: int = 4, layers: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(DecoderBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.dim_head = dim // heads

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        freq = 1.0 / (10000 ** (torch.arange(0, self.dim_head, 2, device=ids.device) / self.dim_head))
        angles = torch.outer(torch.arange(t, device=ids.device).float(), freq)
        cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))


# --- a detector head with box decoding --------------------------------------------------------


class ConvBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class TinyDetector(nn.Module):
    """A one-stage detector: a residual backbone (2 skips), class and box heads, and the
    decoding of box deltas against anchors (arithmetic, not skips)."""

    def __init__(self, classes: int = 3, anchors: int = 3, c: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, 2, 1)
        self.block1 = ConvBlock(c)
        self.block2 = ConvBlock(c)
        self.cls = nn.Conv2d(c, anchors * classes, 1)
        self.box = nn.Conv2d(c, anchors * 4, 1)
        self.anchors = anchors

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.block2(self.block1(F.relu(self.stem(x))))
        n, _, h, w = f.shape
        deltas = self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=f.dtype), torch.arange(w, dtype=f.dtype), indexing="ij")
        ctr = torch.stack([xs, ys], -1).reshape(-1, 1, 2).expand(-1, self.anchors, 2).reshape(1, -1, 2) * 2 + 1
        size = torch.full_like(ctr, 4.0)
        pred_ctr = deltas[..., :2] * size + ctr
        pred_size = torch.exp(deltas[..., 2:].clamp(max=4.0)) * size
        boxes = torch.cat([pred_ctr - 0.5 * pred_size, pred_ctr + 0.5 * pred_size], -1)
        return {"boxes": boxes, "logits": self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, 3)}


# --- a 3-D CNN ----------------------------------------------------------------------------


class Block3d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + identity)


class R3D(nn.Module):
    """A small video ResNet (r3d-style): 4 residual blocks of 3-D convolutions."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 16, 3, (1, 2, 2), 1, bias=False), nn.BatchNorm3d(16), nn.ReLU())
        self.layers = nn.Sequential(Block3d(16, 16), Block3d(16, 16), Block3d(16, 32, 2), Block3d(32, 32))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool3d(self.layers(self.stem(x)), 1), 1))


# --- outputs in a dataclass ---------------------------------------------------------------


@dataclass
class Prediction:
    logits: torch.Tensor
    embedding: torch.Tensor


class DataclassOutput(nn.Module):
    """Returns a dataclass: both tensors are outputs of the graph."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> Prediction:
        e = self.body(x)
        return Prediction(logits=self.head(e), embedding=e + x.repeat(1, 2))


# --- an encoder-decoder transformer ----------------------------------------------------------


class Seq2Seq(nn.Module):
    """torch's nn.Transformer between two embeddings: 2 residuals per encoder layer, 3 per
    decoder layer (self-attention, cross-attention, feed-forward)."""

    def __init__(self, vocab: int = 200, dim: int = 32, layers: int = 2):
        super().__init__()
        self.src = nn.Embedding(vocab, dim)
        self.tgt = nn.Embedding(vocab, dim)
        self.transformer = nn.Transformer(dim, 4, layers, layers, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        return self.head(self.transformer(self.src(src), self.tgt(tgt), tgt_mask=mask))


# --- the zoo ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZooModel:
    name: str
    build: Callable[[], nn.Module]
    example: Callable[[], torch.Tensor]
    residual: int  # true residual skip connections
    concat: int  # true concatenation skips
    branches: int = 0  # merges of branches that each have layers (Inception)


def _image(*shape: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(*shape)


def _tokens(vocab: int, *shape: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.randint(0, vocab, shape)


def _unet() -> nn.Module:
    from models import UNet

    return UNet()


def _encoder() -> nn.Module:
    from models import TransformerClassifier

    return TransformerClassifier(layers=6)


def _resnet50() -> nn.Module:
    from models import ResNet50

    return ResNet50()


ZOO: tuple[ZooModel, ...] = (
    ZooModel("ResNet-50", _resnet50, _image(1, 3, 224, 224), 16, 0),
    ZooModel("DenseNet-121", DenseNet121, _image(1, 3, 224, 224), 0, 58),
    ZooModel("Inception", InceptionNet, _image(1, 3, 32, 32), 0, 0, branches=3),
    ZooModel("U-Net", _unet, _image(1, 3, 64, 64), 0, 3),
    ZooModel("R3D (3-D CNN)", R3D, _image(1, 3, 8, 32, 32), 4, 0),
    ZooModel("LSTM/GRU stack", RecurrentStack, _tokens(100, 4, 32), 0, 0),
    ZooModel("GRUCell x100", lambda: UnrolledGRU(100), _image(2, 10, 8), 0, 0),
    ZooModel("GRUCell x400", lambda: UnrolledGRU(400), _image(2, 10, 8), 0, 0),
    ZooModel("Sequential 1000x(Linear+ReLU)", DeepSequential, _image(4, 16), 0, 0),
    ZooModel("2000 chained additions", ChainedAdds, _image(4, 16), 0, 0),
    ZooModel("Encoder (6 layers)", _encoder, _tokens(1000, 2, 16), 12, 0),
    ZooModel("Decoder (tanh-GELU, rotary)", TinyDecoder, _tokens(256, 2, 16), 8, 0),
    ZooModel(
        "Encoder-decoder (nn.Transformer)",
        Seq2Seq,
        lambda: (torch.randint(0, 200, (2, 12)), torch.randint(0, 200, (2, 9))),
        10,
        0,
    ),
    ZooModel("Detector (box decoding)", TinyDetector, _image(1, 3, 32, 32), 2, 0),
    ZooModel("Dataclass output", DataclassOutput, _image(2, 8), 1, 0),
)
