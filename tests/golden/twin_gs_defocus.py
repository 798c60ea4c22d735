#!/usr/bin/python3
"""PyTorch twin of gs's defocus estimator (models/gs.h, GsDefocusEstimator), written from its description: the same
module tree and parameter names, so the same safetensors weights load in both.

Writes tests/golden/gs_defocus_twin.safetensors: the twin's random weights ("w.<name>"), a non-square batch "x" and
its output out0 (CoC radius in px per pixel), with the refocus config in the metadata. tests/test_models.cpp runs
`forward --model gs_defocus` on them and compares.
Run: /usr/bin/python3 tests/golden/twin_gs_defocus.py
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
from twin_gs_initializer import conv_relu  # noqa: E402


class GsDefocusEstimator(nn.Module):
    """Three stride-2 levels, one skip at H/4, softplus map at H/4 resized bilinearly to the image."""

    def __init__(self, width):
        super().__init__()
        w = width
        self.enc = conv_relu((3, w, 1), (w, w, 1))
        self.down1 = conv_relu((w, 2 * w, 2), (2 * w, 2 * w, 1))
        self.down2 = conv_relu((2 * w, 4 * w, 2), (4 * w, 4 * w, 1))
        self.down3 = conv_relu((4 * w, 4 * w, 2), (4 * w, 4 * w, 1))
        self.up = conv_relu((4 * w, 4 * w, 1))
        self.merge = conv_relu((8 * w, 4 * w, 1))
        self.head = nn.Conv2d(4 * w, 1, 1)

    def forward(self, x):
        h, w = x.shape[2:]
        x = F.pad(x, (0, (8 - w % 8) % 8, 0, (8 - h % 8) % 8), mode="replicate")
        d2 = self.down2(self.down1(self.enc(x)))
        d3 = self.down3(d2)
        u = self.up(F.interpolate(d3, size=d2.shape[2:], mode="nearest"))
        coarse = F.softplus(self.head(self.merge(torch.cat([u, d2], 1))))
        full = F.interpolate(coarse, size=x.shape[2:], mode="bilinear", align_corners=False)
        return full[:, :, :h, :w]


def main():
    torch.manual_seed(0)
    width = 4
    net = GsDefocusEstimator(width)  # float32 weights and input, evaluated in float64
    x = torch.rand(2, 3, 21, 30)  # odd, non-square: padding and the last rows matter
    tensors = {"w." + k: v.clone() for k, v in net.state_dict().items()}
    tensors["x"] = x
    with torch.no_grad():
        tensors["out0"] = net.double()(x.double()).float()
    config = {"defocus": True, "defocus_width": width}
    save(os.path.join(HERE, "gs_defocus_twin.safetensors"), tensors, {"config": json.dumps(config)})


if __name__ == "__main__":
    main()
