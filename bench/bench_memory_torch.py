#!/usr/bin/python3
"""PyTorch twin of bench/bench_memory.cpp: the same workloads, one per process, measured the same way
(growth of the process's peak resident set, VmHWM reset through /proc/self/clear_refs, over the baseline
taken after setup).  usage: bench_memory_torch.py --case adds|unet [--device cpu|cuda]"""
import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F


def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return -1


class Peak:
    def start(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.base = status_kb("VmRSS:")

    def rss_mib(self):
        return (status_kb("VmHWM:") - self.base) / 1024.0


def out(name, phase, p, dev):
    gpu = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0
    print(json.dumps({"name": name, "phase": phase, "device": dev.type, "rss_growth_mib": round(p.rss_mib(), 1),
                      "gpu_peak_mib": round(gpu, 1)}), flush=True)


def convs(layers):
    mods = []
    for cin, cout, stride in layers:
        mods += [nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU()]
    return nn.Sequential(*mods)


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = convs([(3, 32, 1), (32, 32, 1)])
        self.down1 = convs([(32, 64, 2), (64, 64, 1)])
        self.down2 = convs([(64, 128, 2), (128, 128, 1)])
        self.up2 = nn.ConvTranspose2d(128, 64, 4, 2, 1)
        self.up1 = nn.ConvTranspose2d(128, 32, 4, 2, 1)
        self.dec1 = convs([(64, 32, 1)])
        self.head = nn.Conv2d(32, 3, 3, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        d1 = self.down1(e1)
        d2 = self.down2(d1)
        u2 = F.relu(self.up2(d2))
        u1 = F.relu(self.up1(torch.cat([u2, d1], 1)))
        return x + self.head(self.dec1(torch.cat([u1, e1], 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="adds")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(1)
    p = Peak()
    if a.case == "adds":
        x = torch.randn(16 << 20, device=dev, requires_grad=True)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        p.start()
        y = x
        for _ in range(10):
            y = y + x
        out("10 chained adds of 64 MiB", "forward", p, dev)
        y.sum().backward()
        out("10 chained adds of 64 MiB", "forward+backward", p, dev)
    elif a.case == "unet":
        net = UNet().to(dev)
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        x, t = torch.rand(4, 3, 128, 128, device=dev), torch.rand(4, 3, 128, 128, device=dev)

        def step():
            opt.zero_grad(set_to_none=True)
            F.mse_loss(net(x), t).backward()
            opt.step()

        step()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        p.start()
        step()
        out("U-Net training step, batch 4, 128x128", "step", p, dev)
    else:
        raise SystemExit(f"unknown --case {a.case}")


if __name__ == "__main__":
    main()
