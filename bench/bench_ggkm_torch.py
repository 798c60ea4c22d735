#!/usr/bin/python3
"""PyTorch twin of bench/bench_ggkm.cpp: GKMNet (dense 21x21 bank, as released) and GGKMNet (group mixtures
computed densely per image) from tests/golden/twin_ggkm.py — inference at 1280x720 and a training step (batch 4,
256x256) with the same loss (MSE + 0.1 FFT-L1 + 0.1 (1 - SSIM) [+ 0.1 SR-L1], scale weights 1, 0.5, 0.25).
Eager, and torch.compile where it works (PyTorch 2.x; Debian's 1.13 has none)."""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
from twin_ggkm import GGKMNet, GKMNet  # noqa: E402
from torch_util import median_ms  # noqa: E402


def ssim(x, y):
    """Mean SSIM, 11x11 Gaussian window (sigma 1.5), valid positions, as layers/losses.h."""
    g = torch.exp(-((torch.arange(11, dtype=x.dtype) - 5) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(x.shape[1], 1, 11, 11)
    f = lambda t: F.conv2d(t, w, groups=x.shape[1])
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))).mean()


def pyramid(x):
    p = [x]
    for _ in range(2):
        p.insert(0, F.interpolate(p[0], scale_factor=0.5, mode="bilinear", align_corners=False))
    return p


def loss(net, x, t, grouped):
    xs, ts = pyramid(x), pyramid(t)
    if grouped:
        outs, resynth = net(xs[2], xs[1], xs[0], with_srm=True)
    else:
        d256, d128, d64 = net(xs[2], xs[1], xs[0])
        outs, resynth = [d64, d128, d256], None
    total = 0
    for i, o in enumerate(outs):
        fo, ft = torch.fft.fft2(o), torch.fft.fft2(ts[i])
        l = F.mse_loss(o, ts[i]) + 0.1 * ((fo.real - ft.real).abs().mean() + (fo.imag - ft.imag).abs().mean()) / 2
        l = l + 0.1 * (1 - ssim(o, ts[i]))
        if resynth:
            l = l + 0.1 * (resynth[i] - xs[i]).abs().mean()
        total = total + 0.5 ** i * l
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--size", default="full")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    small = a.size == "small"
    ih, iw, crop = (368, 640, 128) if small else (720, 1280, 256)
    for name, make in (("gkm", lambda: GKMNet("intended")), ("ggkm", lambda: GGKMNet())):
        torch.manual_seed(1)
        net = make().float().to(dev).eval()
        x = torch.rand(1, 3, ih, iw, device=dev)

        def infer():
            with torch.no_grad():
                p = pyramid(x)
                net(p[2], p[1], p[0])

        print(json.dumps({"name": f"{name} inference {iw}x{ih}", "device": a.device,
                          "ms": round(median_ms(infer, a.repeats, dev), 1)}), flush=True)
        net.train()
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        xb, tb = torch.rand(4, 3, crop, crop, device=dev), torch.rand(4, 3, crop, crop, device=dev)

        def step():
            opt.zero_grad(set_to_none=True)
            loss(net, xb, tb, name == "ggkm").backward()
            opt.step()

        print(json.dumps({"name": f"{name} training step batch 4 {crop}x{crop}", "device": a.device,
                          "ms": round(median_ms(step, a.repeats, dev), 1)}), flush=True)


if __name__ == "__main__":
    main()
