#!/usr/bin/env python3
"""PyTorch twin of bench_conv.cpp: the same 3x3 stride-1 convolutions, pass by pass (forward, data gradient, weight
gradient through aten.convolution_backward), the same timing (median after one warm-up). CPU only.

usage: bench_conv_torch.py [--repeats N] [--threads N] [--shapes NxCxH[xW],...]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_util import median_ms  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--shapes", default="4x32x128,4x64x256,4x256x32,4x512x16,1x64x368x640")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dev = torch.device("cpu")
torch.manual_seed(1)
for item in a.shapes.split(","):
    dims = [int(v) for v in item.split("x")]
    n, c, h = dims[:3]
    w = dims[3] if len(dims) > 3 else h
    x = torch.randn(n, c, h, w)
    k = torch.randn(c, c, 3, 3) * 0.05
    gy = torch.randn(n, c, h, w)
    name = f"conv 3x3 {c}->{c} {h}x{w} batch {n}"

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(gy, x, k, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                           mask)

    with torch.no_grad():
        for pass_name, f in (("forward", lambda: F.conv2d(x, k, padding=1)),
                             ("data gradient", backward((True, False, False))),
                             ("weight gradient", backward((False, True, False)))):
            ms = median_ms(f, a.repeats, dev)
            print(json.dumps({"name": f"{name} {pass_name}", "path": "torch", "device": "cpu", "ms": round(ms, 2)}),
                  flush=True)
