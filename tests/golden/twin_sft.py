#!/usr/bin/python3
"""PyTorch twin of sft (models/sft.h), written from paper 002 and DID-ANet's released map branch: the same module
tree and parameter names, every weight random (the SFT generators' too, so that gamma and beta matter).

usage: twin_sft.py OUT_DIR   -> OUT_DIR/sft_<modulation>_twin.safetensors for sft_dec, sft and concat: weights
("w.<name>"), a non-square input "x", outputs out0 (deblurred) and out1 (the predicted map), config in the metadata.
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


def conv3(cin, cout):
    return nn.Conv2d(cin, cout, 3, 1, 1)


def generator(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cin, 1), nn.LeakyReLU(0.1), nn.Conv2d(cin, cout, 1))


class SftLayer(nn.Module):
    def __init__(self, cond, ch, decomposed):
        super().__init__()
        self.decomposed = decomposed
        if decomposed:
            self.gamma_c = generator(cond, ch)  # on the pooled conditions: [C, 1, 1]
            self.gamma_s = generator(cond, 1)   # per pixel: [1, H, W]
        else:
            self.gamma = generator(cond, ch)
        self.beta = generator(cond, ch)

    def forward(self, f, cond):
        g = (self.gamma_c(cond.mean((2, 3), keepdim=True)) * self.gamma_s(cond)) if self.decomposed else self.gamma(cond)
        return g * f + self.beta(cond)


class Block(nn.Module):
    def __init__(self, cond, ch, modulation, scale):
        super().__init__()
        self.scale = scale
        self.modulated = modulation != "concat"
        if self.modulated:
            self.sft0 = SftLayer(cond, ch, modulation == "sft_dec")
        self.conv0 = conv3(ch, ch)
        if self.modulated:
            self.sft1 = SftLayer(cond, ch, modulation == "sft_dec")
        self.conv1 = conv3(ch, ch)

    def forward(self, x, cond):
        y = self.sft0(x, cond) if self.modulated else x
        y = torch.relu(self.conv0(y))
        if self.modulated:
            y = self.sft1(y, cond)
        return x + self.scale * self.conv1(y)


class Sft(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        mw, w, cw = cfg["map_width"], cfg["width"], cfg["cond_width"]
        concat = cfg["modulation"] == "concat"
        self.conv01a = conv3(3, mw)
        for i in range(cfg["map_blocks"]):
            setattr(self, f"convRes{i + 1:02d}a", nn.Sequential(conv3(mw, mw), nn.ReLU(), conv3(mw, mw)))
        self.conv02a = conv3(mw, mw)
        self.conv03a = conv3(mw, 1)
        if not concat:
            self.cond = nn.Sequential(conv3(1, cw), nn.LeakyReLU(0.1), conv3(cw, cw), nn.LeakyReLU(0.1), conv3(cw, cw))
        self.conv01b = conv3(4 if concat else 3, w)
        self.blocks = nn.ModuleList(Block(cw, w, cfg["modulation"], 1.0 if i < 4 else 0.1) for i in range(cfg["blocks"]))
        if not concat:
            self.sft_out = SftLayer(cw, w, cfg["modulation"] == "sft_dec")
        self.conv02b = conv3(w, w)
        self.conv03b = conv3(w, 3)

    def predict_map(self, x):
        f = self.conv01a(x)
        for i in range(self.cfg["map_blocks"]):
            f = f + getattr(self, f"convRes{i + 1:02d}a")(f)
        return self.conv03a(self.conv02a(f))

    def forward(self, x):
        m = self.predict_map(x)
        concat = self.cfg["modulation"] == "concat"
        cond = None if concat else self.cond(m)
        f0 = self.conv01b(torch.cat([x, m], 1) if concat else x)
        f = f0
        for b in self.blocks:
            f = b(f, cond)
        if not concat:
            f = self.sft_out(f, cond)
        return x + self.conv03b(self.conv02b(f) + f0), m


def main():
    out_dir = sys.argv[1]
    for seed, modulation in enumerate(("sft_dec", "sft", "concat")):
        torch.manual_seed(seed)
        cfg = {"map_width": 8, "map_blocks": 2, "cond_width": 8, "width": 12, "blocks": 5, "modulation": modulation,
               "map_unit_px": 2.56}
        net = Sft(cfg)
        x = torch.rand(2, 3, 13, 22)
        tensors = {"w." + k: v.clone() for k, v in net.state_dict().items()}
        tensors["x"] = x
        with torch.no_grad():
            out, m = net.double()(x.double())
        tensors["out0"], tensors["out1"] = out.float(), m.float()
        save(os.path.join(out_dir, f"sft_{modulation}_twin.safetensors"), tensors, {"config": json.dumps(cfg)})


if __name__ == "__main__":
    main()
