#!/usr/bin/python3
"""PyTorch twin of gs's blob deblurrer (models/gs.h, BlobDeblurrer), written from its description: the same
module tree and parameter names, so the same safetensors weights load in both.

Tokens (per blob): a Fourier encoding of the position in pixels (periods 4..64 px), sin/cos of 2 theta, log
scales, colour, opacity, depth at the centre, d1, log K, then the given per-blob features (local contrast);
blobs sorted in Morton (Z) order, attention within windows of consecutive tokens, the output head applied by
Eq. 5-8 plus a colour change, the shrink made non-negative by softplus or ReLU (the config's "shrink") and, with
"keep_light", each shrunk blob's colour scaled by s1 s2 / (s1' s2').

Writes tests/golden/gs_deblurrer_twin.safetensors (softplus, the light kept: train_gs's default) and
gs_deblurrer_relu_twin.safetensors (the paper's ReLU): random weights ("w.<name>", the head too, so that every
output moves; about half the opacities and a tenth of the rotations meet Eq. 5-8's clamps), random blobs with depth inputs and half-octave context features, and the adjusted blobs
out0..out4, with the refocus config in the metadata. tests/test_models.cpp runs `forward` on them and compares.
Run: /usr/bin/python3 tests/golden/twin_gs_deblurrer.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_min import save  # noqa: E402
from twin_layers import TransformerBlock  # noqa: E402

PI = float(np.float32(3.14159265))  # the C++ constant, as a float
MIN_SCALE = 0.1


class Block(TransformerBlock):
    """twin_layers' pre-norm Transformer block; attention only within consecutive windows of `window` tokens (0: all)."""

    def forward(self, x, window):  # [N, dim]
        n, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(n, 3, self.heads, hd).permute(1, 2, 0, 3)  # [heads, N, hd] each
        w = window if window > 0 else n
        parts = []
        for s in range(0, n, w):
            qs, ks, vs = q[:, s:s + w], k[:, s:s + w], v[:, s:s + w]
            parts.append(torch.softmax(qs @ ks.transpose(-1, -2) / math.sqrt(hd), -1) @ vs)
        att = torch.cat(parts, 1).permute(1, 0, 2).reshape(n, d)
        x = x + self.proj(att)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def morton_order(means, h, w):
    side = np.float32(max(h, w))
    m = means.detach().float().numpy().astype(np.float32)
    q = (np.clip(m / side, np.float32(0), np.float32(1)) * np.float32(65535)).astype(np.uint32)

    def spread(v):
        key = 0
        for bit in range(16):
            key |= ((int(v) >> bit) & 1) << (2 * bit)
        return key

    keys = [(spread(q[i, 0]) | (spread(q[i, 1]) << 1), i) for i in range(len(q))]
    return [i for _, i in sorted(keys)]


class BlobDeblurrer(nn.Module):
    def __init__(self, token_features, dim, heads, blocks, ffn_mult, window, shrink, keep_light):
        super().__init__()
        self.window = window
        self.shrink, self.keep_light = shrink, keep_light
        self.embed = nn.Linear(token_features, dim)
        self.blocks = nn.ModuleList([Block(dim, heads, ffn_mult) for _ in range(blocks)])
        self.ln_out = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 7)  # dtheta, ds1, ds2, do, dc (RGB)

    def forward(self, means, theta, scales, colors, opacity, h, w, d2, d1, log_k, extra):
        n = means.shape[0]
        f = []
        for k in range(5):
            a = means * (2 * PI / (4 << k))
            f += [torch.sin(a), torch.cos(a)]
        f += [torch.sin(2 * theta)[:, None], torch.cos(2 * theta)[:, None], torch.log(scales), colors, opacity[:, None],
              d2[:, None], d1.reshape(1, 1).expand(n, 1), log_k.reshape(1, 1).expand(n, 1), extra]
        tokens = torch.cat(f, 1)
        order = morton_order(means, h, w)
        inverse = [0] * n
        for rank, i in enumerate(order):
            inverse[i] = rank
        x = self.embed(tokens[order])
        for block in self.blocks:
            x = block(x, self.window)
        out = self.head(self.ln_out(x))[inverse]
        dphi = out[:, 0].clamp(0, PI)
        ds = F.softplus(out[:, 1:3]) if self.shrink == "softplus" else F.relu(out[:, 1:3])
        shrunk = (scales - ds).clamp(min=MIN_SCALE)
        colors = colors + out[:, 4:7]
        if self.keep_light:
            colors = colors * (scales[:, 0] * scales[:, 1] / (shrunk[:, 0] * shrunk[:, 1]))[:, None]
        return (means, theta + dphi, shrunk, colors, (opacity + out[:, 3]).clamp(0, 1))


def write(file, shrink, keep_light):
    torch.manual_seed(0)  # the same weights and blobs for both files
    n, h, w = 50, 20, 26  # 50 blobs in windows of 16: three full windows and a last one of 2
    scales_sigma = [2 ** (k / 2 - 0.5) for k in range(8)]  # GsConfig::half_octave_scales(8)
    config = {"dim": 32, "heads": 2, "blocks": 2, "ffn_mult": 2, "window": 16, "use_depth": True,
              "color_change": True, "context": True, "context_scales": scales_sigma, "init_width": 8,
              "shrink": shrink, "keep_light": keep_light}
    net = BlobDeblurrer(31 + 3 * len(scales_sigma), config["dim"], config["heads"], config["blocks"], config["ffn_mult"],
                        config["window"], shrink, keep_light)
    with torch.no_grad():  # a larger head than nn.Linear's default, so that Eq. 5-8's clamps are exercised
        net.head.weight.mul_(2)
    inputs = {
        "means": torch.rand(n, 2) * torch.tensor([w, h]),
        "theta": torch.rand(n) * 3,
        "scales": 0.8 + 2 * torch.rand(n, 2),
        "colors": torch.rand(n, 3),
        "opacity": 0.2 + 0.7 * torch.rand(n),
        "image_size": torch.tensor([float(h), float(w)]),
        "d2": torch.rand(n),
        "d1": torch.rand(1),
        "log_k": torch.randn(1),
        "extra": 0.3 * torch.randn(n, 3 * len(scales_sigma)),
    }
    tensors = {"w." + k: v.clone() for k, v in net.state_dict().items()}
    tensors.update(inputs)
    x = {k: v.double() for k, v in inputs.items()}
    with torch.no_grad():
        outs = net.double()(x["means"], x["theta"], x["scales"], x["colors"], x["opacity"], h, w, x["d2"], x["d1"],
                            x["log_k"], x["extra"])
    for i, o in enumerate(outs):
        tensors[f"out{i}"] = o.float()
    save(os.path.join(HERE, file), tensors, {"config": json.dumps(config)})


def main():
    write("gs_deblurrer_twin.safetensors", "softplus", True)
    write("gs_deblurrer_relu_twin.safetensors", "relu", False)


if __name__ == "__main__":
    main()
