#!/usr/bin/python3
"""PyTorch twins of the shared layers (layers/recurrent.h, layers/blocks.h): LSTMCell, ConvLSTMCell,
TransformerBlock, SqueezeExcitation (torchvision-style, and the SENet SELayer without biases). For each, tests/golden/layer_<name>.safetensors holds the twin's weights
("w.<param>"), its inputs (in0, in1, ...), a random output gradient per output (gout0, ...), the outputs
(out0, ...) and the input gradients (grad_in0, ...), computed in float64 from float32 weights and inputs.
Run: /usr/bin/python3 tests/golden/twin_layers.py
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_min import save  # noqa: E402


class ConvLSTMCell(nn.Module):
    """One conv on cat(x, h) -> gates in GKMNet's order i, f, o, g."""

    def __init__(self, cin, hidden, k):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(cin + hidden, 4 * hidden, k, padding=k // 2)

    def forward(self, x, h, c):
        i, f, o, g = torch.split(self.conv(torch.cat([x, h], 1)), self.hidden, 1)
        c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c2), c2


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, ffn_mult):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn_mult * dim), nn.Linear(ffn_mult * dim, dim)

    def forward(self, x):  # [B, N, dim]
        b, n, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1) @ v
        x = x + self.proj(att.permute(0, 2, 1, 3).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class SqueezeExcitation(nn.Module):
    def __init__(self, c, reduction):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, max(1, c // reduction), 1), nn.Conv2d(max(1, c // reduction), c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class SELayer(nn.Module):
    """The SENet reference SELayer that JDRL's draft uses: Linear layers fc.0/fc.2 without bias."""

    def __init__(self, c, reduction):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c, c // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(c // reduction, c, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


def write(name, net, inputs, fn, rename=None):
    """fn(net, *inputs) -> tuple of outputs; everything evaluated in float64. rename(name, tensor) -> (refocus
    name, tensor) maps an official state dict onto refocus's module, as a converter would."""
    rename = rename or (lambda k, v: (k, v))
    tensors = dict(("w." + k2, v2.clone()) for k2, v2 in (rename(k, v) for k, v in net.state_dict().items()))
    for i, t in enumerate(inputs):
        tensors[f"in{i}"] = t
    net = net.double()
    xs = [t.double().requires_grad_(True) for t in inputs]
    outs = fn(net, *xs)
    gouts = [torch.rand(o.shape, dtype=torch.float64) - 0.5 for o in outs]
    loss = sum((o * g).sum() for o, g in zip(outs, gouts))
    grads = torch.autograd.grad(loss, xs)
    for i, (o, g) in enumerate(zip(outs, gouts)):
        tensors[f"out{i}"] = o.detach().float()
        tensors[f"gout{i}"] = g.float()
    for i, g in enumerate(grads):
        tensors[f"grad_in{i}"] = g.float()
    save(os.path.join(HERE, f"layer_{name}.safetensors"), tensors)


def main():
    torch.manual_seed(0)
    lstm = nn.LSTMCell(5, 7)
    write("lstm_cell", lstm, [torch.rand(3, 5) - 0.5, torch.rand(3, 7) - 0.5, torch.rand(3, 7) - 0.5],
          lambda m, x, h, c: m(x, (h, c)))
    conv_lstm = ConvLSTMCell(4, 6, 5)
    write("conv_lstm_cell", conv_lstm, [torch.rand(2, 4, 9, 11) - 0.5, torch.rand(2, 6, 9, 11) - 0.5,
                                        torch.rand(2, 6, 9, 11) - 0.5], lambda m, x, h, c: m(x, h, c))
    block = TransformerBlock(24, 3, 2)  # head dim 8
    write("transformer_block", block, [torch.rand(2, 13, 24) - 0.5], lambda m, x: (m(x),))
    se = SqueezeExcitation(32, 8)
    write("squeeze_excitation", se, [torch.rand(2, 32, 5, 7)], lambda m, x: (m(x),))
    # JDRL's SE(38): 38 // 16 = 2 squeezed channels; Linear [out, in] becomes refocus's 1x1 conv [out, in, 1, 1].
    se_ref = SELayer(38, 16)
    write("squeeze_excitation_nobias", se_ref, [torch.rand(2, 38, 6, 5)], lambda m, x: (m(x),),
          lambda k, v: ({"fc.0.weight": "fc1.weight", "fc.2.weight": "fc2.weight"}[k], v.reshape(*v.shape, 1, 1)))


if __name__ == "__main__":
    main()
