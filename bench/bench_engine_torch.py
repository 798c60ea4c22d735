#!/usr/bin/env python3
"""PyTorch twin of bench_engine.cpp: the same work, the same timing method (median after warm-up).

usage: bench_engine_torch.py [--device cpu|cuda] [--repeats N] [--threads N]
"""
import argparse
import json
import time

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_util import median_ms  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--device", default="cpu")
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--threads", type=int, default=0)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dev = torch.device(a.device)
if dev.type == "cuda":  # match refocus: full FP32, no TF32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True




x = torch.randn(4, 64, 256, 256, device=dev, requires_grad=True)
w = (torch.randn(64, 64, 3, 3, device=dev) * 0.05).requires_grad_()
b = torch.zeros(64, device=dev, requires_grad=True)
gy = torch.randn(4, 64, 256, 256, device=dev)


def conv():
    x.grad = w.grad = b.grad = None
    torch.nn.functional.conv2d(x, w, b, padding=1).backward(gy)


print(json.dumps({"name": "conv2d 3x3 64->64 256x256 batch 4, fwd+bwd", "device": a.device,
                  "ms": round(median_ms(conv, a.repeats, dev), 2)}))
A = torch.randn(1024, 1024, device=dev, requires_grad=True)
B = torch.randn(1024, 1024, device=dev, requires_grad=True)
gc = torch.randn(1024, 1024, device=dev)


def gemm():
    A.grad = B.grad = None
    (A @ B).backward(gc)


print(json.dumps({"name": "GEMM 1024^3, fwd+bwd", "device": a.device, "ms": round(median_ms(gemm, a.repeats * 4, dev), 2)}))
X = torch.randn(4096, 1024, device=dev, requires_grad=True)
gx = torch.randn(4096, 1024, device=dev)


def gelu():
    X.grad = None
    torch.nn.functional.gelu(X).backward(gx)


print(json.dumps({"name": "GELU (erf) 4096x1024, fwd+bwd", "device": a.device,
                  "ms": round(median_ms(gelu, a.repeats * 4, dev), 2)}))
T = torch.randn(32768, 96, device=dev, requires_grad=True)
lw = (torch.randn(96, device=dev) * 0.1 + 1).requires_grad_()
lb = (torch.randn(96, device=dev) * 0.1).requires_grad_()
gt = torch.randn(32768, 96, device=dev)


def layer_norm():
    T.grad = lw.grad = lb.grad = None
    torch.nn.functional.layer_norm(T, (96,), lw, lb, 1e-5).backward(gt)


print(json.dumps({"name": "LayerNorm last dim, 32768 tokens x 96, fwd+bwd", "device": a.device,
                  "ms": round(median_ms(layer_norm, a.repeats * 4, dev), 2)}))
