#!/usr/bin/env python3
"""Straightforward PyTorch twin of bench_gs.cpp: the same work written the way a PyTorch user would.

Rasterizer: every blob evaluated on a fixed window around its centre (radius 3 x the largest scale the
benchmark draws), index_add_ into the image; autograd for the backward. Fit: that rasterizer inside Adam
with MSE + 0.3 (1 - SSIM). Attention: softmax(QK^T / sqrt(d)) V with the N x N scores stored (and
PyTorch's fused scaled_dot_product_attention where it exists).
usage: bench_gs_torch.py [--device cpu|cuda] [--repeats N] [--fit-iters 600] [--threads N] [--image PNG]
"""
import argparse
import json
import math
import time

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_util import median_ms, sync  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--device", default="cpu")
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--fit-iters", type=int, default=600)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--image", default="", help="PNG to fit (bench_gs uses a make_synth image of the same size)")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
dev = torch.device(a.device)
gpu = dev.type == "cuda"
if gpu:
    torch.backends.cuda.matmul.allow_tf32 = False




def rasterize(means, theta, scales, colors, opacity, h, w, radius):
    """Plain sum of Gaussians, each on a (2 radius + 1)^2 window around its centre pixel, 3-sigma cutoff."""
    r = torch.arange(-radius, radius + 1, device=means.device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    cx = means[:, 0].detach().floor().long()
    cy = means[:, 1].detach().floor().long()
    px = cx[:, None, None] + dx  # [N, K, K]
    py = cy[:, None, None] + dy
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    ddx = px + 0.5 - means[:, 0, None, None]
    ddy = py + 0.5 - means[:, 1, None, None]
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    t1 = (c * ddx + s * ddy) / scales[:, 0, None, None]
    t2 = (-s * ddx + c * ddy) / scales[:, 1, None, None]
    q = t1 * t1 + t2 * t2
    g = torch.exp(-0.5 * q) * ((q <= 9) & inside)
    contrib = (colors * opacity[:, None])[:, :, None, None] * g[:, None]  # [N, 3, K, K]
    idx = (py.clamp(0, h - 1) * w + px.clamp(0, w - 1)).reshape(-1)
    img = torch.zeros(3, h * w, device=means.device)
    img = img.index_add(1, idx, contrib.permute(1, 0, 2, 3).reshape(3, -1))
    return img.reshape(3, h, w)


def random_blobs(n, h, w):
    g = torch.Generator().manual_seed(7)
    u = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    t = [u, torch.rand(n, generator=g) * 3.14159, 0.5 + 2.5 * torch.rand(n, 2, generator=g),
         0.5 * torch.rand(n, 3, generator=g), 0.2 + 0.8 * torch.rand(n, generator=g)]
    return [x.to(dev).requires_grad_() for x in t]


def ssim(x, y):
    k = torch.exp(-0.5 * (torch.arange(11, dtype=x.dtype, device=x.device) - 5) ** 2 / 1.5 ** 2)
    k = (k / k.sum())
    win = (k[:, None] * k[None, :])[None, None].repeat(3, 1, 1, 1)
    f = lambda t: F.conv2d(t[None], win, groups=3)[0]
    mx, my = f(x), f(y)
    vx, vy, vxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return (((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean()


for n, h, w in ([(70000, 512, 768), (470400, 1120, 1680)] if gpu else [(16384, 256, 256)]):
    b = random_blobs(n, h, w)
    gimg = torch.randn(3, h, w, device=dev)

    def step():
        for x in b:
            x.grad = None
        rasterize(*b, h, w, radius=9).backward(gimg)
    print(json.dumps({"name": f"rasterize fwd+bwd {n} blobs {w}x{h}", "device": a.device,
                      "ms": round(median_ms(step, a.repeats, dev), 2)}), flush=True)

# the fit: one blob per 2x2 cell at the cell centre, isotropic s = 1 px, Adam, MSE + 0.3 (1 - SSIM)
h, w = (1120, 1680) if gpu else (256, 256)
if a.image:
    import numpy as np
    from skimage import io
    img = torch.tensor(io.imread(a.image)[:h, :w, :3].astype(np.float32) / 255).permute(2, 0, 1).to(dev)
else:
    img = torch.rand(3, h, w, device=dev)
gh, gw = h // 2, w // 2
ys, xs = torch.meshgrid(torch.arange(gh) * 2 + 1.0, torch.arange(gw) * 2 + 1.0, indexing="ij")
means = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).to(dev).requires_grad_()
theta = torch.zeros(gh * gw, device=dev, requires_grad=True)
log_s = torch.full((gh * gw, 2), math.log(0.9), device=dev, requires_grad=True)
colors = (F.avg_pool2d(img[None], 2)[0].permute(1, 2, 0).reshape(-1, 3) / (0.8 * 1.571)).clone().requires_grad_()
op_logit = torch.full((gh * gw,), math.log(4.0), device=dev, requires_grad=True)
opt = torch.optim.Adam([means, theta, log_s, colors, op_logit], lr=0.01)
sync(dev)
t0 = time.perf_counter()
for it in range(a.fit_iters):
    opt.zero_grad()
    r = rasterize(means, theta, 0.1 + log_s.exp(), colors, torch.sigmoid(op_logit), h, w, radius=9)
    loss = F.mse_loss(r, img) + 0.3 * (1 - ssim(r, img))
    loss.backward()
    opt.step()
sync(dev)
ms = (time.perf_counter() - t0) * 1000
with torch.no_grad():
    mse = F.mse_loss(rasterize(means, theta, 0.1 + log_s.exp(), colors, torch.sigmoid(op_logit), h, w, 9).clamp(0, 1), img)
print(json.dumps({"name": f"gs fit {a.fit_iters} iterations {w}x{h}, 1 blob per 2x2", "device": a.device,
                  "ms": round(ms, 1), "psnr": round(-10 * math.log10(mse.item()), 2)}), flush=True)

n = 65536 if gpu else 4096
g = torch.Generator().manual_seed(3)
q, k, v, go = [torch.randn(1, 4, n, 16, generator=g).to(dev) for _ in range(4)]
for x in (q, k, v):
    x.requires_grad_()


def attn():
    for x in (q, k, v):
        x.grad = None
    if gpu and hasattr(F, "scaled_dot_product_attention"):
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        out = torch.softmax(q @ k.transpose(-1, -2) / 4.0, -1) @ v
    out.backward(go)
print(json.dumps({"name": f"attention fwd+bwd N={n}, 4 heads x 16", "device": a.device,
                  "ms": round(median_ms(attn, a.repeats, dev), 2)}), flush=True)
