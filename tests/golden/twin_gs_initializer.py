#!/usr/bin/python3
"""PyTorch twin of gs's initializer (models/gs.h, GsInitializer), written from its description: the same
module tree and parameter names, so the same safetensors weights load in both.

Writes tests/golden/gs_initializer_twin.safetensors: the twin's random weights ("w.<name>"), a non-square
input "x" and its outputs out0..out4 (means, theta, log_scales, colors, opacity_logit), with the refocus
config in the metadata. tests/test_models.cpp runs `forward` on them and compares.
Run: /usr/bin/python3 tests/golden/twin_gs_initializer.py
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_min import save  # noqa: E402


def conv_relu(*layers):
    mods = []
    for cin, cout, stride in layers:
        mods += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU()]
    return nn.Sequential(*mods)


class GsInitializer(nn.Module):
    """U-Net: image -> 9 numbers per 2x2 cell (offset, log-scales, angle, colour, opacity logit)."""

    def __init__(self, width):
        super().__init__()
        w = width
        self.enc1 = conv_relu((3, w, 1), (w, w, 1))
        self.down1 = conv_relu((w, 2 * w, 2), (2 * w, 2 * w, 1))
        self.down2 = conv_relu((2 * w, 4 * w, 2), (4 * w, 4 * w, 1))
        self.up = conv_relu((4 * w, 2 * w, 1))
        self.merge = conv_relu((4 * w, 2 * w, 1), (2 * w, 2 * w, 1))
        self.head = nn.Conv2d(2 * w, 9, 1)

    def forward(self, x):
        h, w = x.shape[2:]
        gh, gw = (h + 1) // 2, (w + 1) // 2
        x = F.pad(x, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="replicate")
        e1 = self.enc1(x)
        d1 = self.down1(e1)
        d2 = self.down2(d1)
        u = self.up(F.interpolate(d2, size=d1.shape[2:], mode="nearest"))
        raw = self.head(self.merge(torch.cat([u, d1], 1)))[0, :, :gh, :gw]
        t = raw.permute(1, 2, 0).reshape(gh * gw, 9)
        jj, ii = torch.meshgrid(torch.arange(gh, dtype=t.dtype), torch.arange(gw, dtype=t.dtype), indexing="ij")
        centres = torch.stack([torch.clamp((ii + 0.5) * 2, max=w - 0.5), torch.clamp((jj + 0.5) * 2, max=h - 0.5)], -1)
        means = centres.reshape(-1, 2) + torch.tanh(t[:, 0:2])
        return means, t[:, 4], t[:, 2:4], torch.sigmoid(t[:, 5:8]), t[:, 8]


def main():
    torch.manual_seed(0)
    width = 8
    net = GsInitializer(width)  # float32 weights and input, evaluated in float64
    x = torch.rand(1, 3, 21, 30)  # odd, non-square: padding and the last cells matter
    tensors = {"w." + k: v.clone() for k, v in net.state_dict().items()}
    tensors["x"] = x
    with torch.no_grad():
        outs = net.double()(x.double())
    for i, o in enumerate(outs):
        tensors[f"out{i}"] = o.float()
    config = {"init_width": width, "use_depth": False}
    save(os.path.join(HERE, "gs_initializer_twin.safetensors"), tensors, {"config": json.dumps(config)})


if __name__ == "__main__":
    main()
