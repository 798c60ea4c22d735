#!/usr/bin/python3
"""PyTorch twin of gs's photo encoder (models/gs.h, GsPhotoEncoder), written from its description: the same module
tree and parameter names, so the same safetensors weights load in both.

Writes tests/golden/gs_photo_encoder_twin.safetensors: the twin's random weights ("w.<name>"), a non-square batch "x"
and its output out0 (the features per pixel), with the refocus config in the metadata. tests/test_models.cpp runs
`forward --model gs_photo_encoder` on them and compares.
Run: /usr/bin/python3 tests/golden/twin_gs_photo_encoder.py
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


class GsPhotoEncoder(nn.Module):
    """Three 3x3 convolutions with dilations 1, 2, 4 (zero padding, same size), ReLU between, none after."""

    def __init__(self, width):
        super().__init__()
        self.conv0 = nn.Conv2d(3, width, 3, padding=1, dilation=1)
        self.conv1 = nn.Conv2d(width, width, 3, padding=2, dilation=2)
        self.conv2 = nn.Conv2d(width, width, 3, padding=4, dilation=4)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(F.relu(self.conv0(x)))))


def main():
    torch.manual_seed(0)
    width = 5
    net = GsPhotoEncoder(width)  # float32 weights and input, evaluated in float64
    x = torch.rand(2, 3, 19, 26)  # non-square, smaller than the dilated reach on one side of most pixels
    tensors = {"w." + k: v.clone() for k, v in net.state_dict().items()}
    tensors["x"] = x
    with torch.no_grad():
        tensors["out0"] = net.double()(x.double()).float()
    config = {"photo_encoder": width}
    save(os.path.join(HERE, "gs_photo_encoder_twin.safetensors"), tensors, {"config": json.dumps(config)})


if __name__ == "__main__":
    main()
