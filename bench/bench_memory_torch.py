#!/usr/bin/python3
"""PyTorch twin of bench/bench_memory.cpp: the same workloads, one per process, measured the same way.
usage: bench_memory_torch.py --case adds|unet|inverse_filter_unfused [--device cpu|cuda] [--threads N] [--size HxW]

Prints JSON lines {name, phase, device, peak_mib, alive_mib, rss_growth_mib, ms}, each phase measured from the
same start (after the warm-up step and zero_grad):
  rss_growth_mib  growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over the
                  resident set at the start, after malloc_trim(0) -- exactly as bench_memory does;
  peak_mib        tensor bytes at the peak over those allocated at the start: on the GPU
                  torch.cuda.max_memory_allocated; on the CPU the profiler's allocation records
                  (profile_memory=True) summed in order, from a second run of the same work, so that the profiler
                  disturbs neither the resident set nor the time of the first;
  alive_mib       tensor bytes alive at the end of the phase over the start (after the forward: what autograd
                  keeps for backward, plus the loss), from the same sources;
  ms              wall time from the start to the end of the phase (first run).
The gs case has no twin: see bench/NOTES.md. inverse_filter_unfused is INIKNet's released inverse filtering (each
group's 30 depthwise-filtered planes stacked to (1, 8, 30, H, W), times mu and omega, the 240 -> 3 mix), the same
inputs as bench_memory's inverse_filter cases."""
import argparse
import ctypes
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return -1


_libc = ctypes.CDLL("libc.so.6")


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


class Peak:
    """Resident-set growth and time from start(); on the GPU also the CUDA allocator's tensor bytes."""

    def __init__(self, dev):
        self.dev = dev

    def start(self):
        sync(self.dev)
        _libc.malloc_trim(0)  # freed heap pages back to the kernel
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        self.base = status_kb("VmRSS:")
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.base_bytes = torch.cuda.memory_allocated()
        self.t0 = time.perf_counter()
        self.rows = []

    def mark(self, phase):
        """End of a phase: remember its time, resident-set growth and (GPU) tensor bytes."""
        sync(self.dev)
        ms = (time.perf_counter() - self.t0) * 1e3
        rss = (status_kb("VmHWM:") - self.base) / 1024.0
        peak = alive = None
        if self.dev.type == "cuda":
            peak = (torch.cuda.max_memory_allocated() - self.base_bytes) / 2**20
            alive = (torch.cuda.memory_allocated() - self.base_bytes) / 2**20
        self.rows.append([phase, peak, alive, rss, ms])


def cpu_tensor_bytes(run, phases):
    """Tensor bytes at the peak and alive at the end of each phase, over the start, from the profiler's
    allocation records (profile_memory=True) summed in order. run(mark) does the work and calls mark(phase) at
    the end of each phase; returns {phase: (peak MiB, alive MiB)}. Only blocks allocated inside the profiled
    region may be freed in it (the profiler cannot see the size of others), which both cases respect."""
    from torch.profiler import ProfilerActivity, profile, record_function

    def mark(phase):
        with record_function("phase_end:" + phase):
            pass

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run(mark)
    evs = list(prof.profiler.kineto_results.events())
    ends = {e.name()[len("phase_end:"):]: e.start_us() for e in evs if e.name().startswith("phase_end:")}
    mem = sorted((e for e in evs if e.name() == "[memory]"), key=lambda e: e.start_us())  # stable: keeps record order
    res = {}
    for ph in phases:
        cur = peak = 0
        for e in mem:
            if e.start_us() > ends[ph]:
                break
            cur += e.nbytes()
            peak = max(peak, cur)
        res[ph] = (peak / 2**20, cur / 2**20)
    return res


def measure(name, p, run, reset):
    """run(mark) once measured by p (resident set, time), then, on the CPU, once more under the profiler
    (tensor bytes); reset() restores the starting state in between. Prints one JSON line per phase."""
    p.start()
    run(p.mark)
    if p.dev.type == "cpu":
        reset()
        tensors = cpu_tensor_bytes(run, [r[0] for r in p.rows])
        for r in p.rows:
            r[1], r[2] = tensors[r[0]]
    for phase, peak, alive, rss, ms in p.rows:
        print(json.dumps({"name": name, "phase": phase, "device": p.dev.type, "peak_mib": round(peak, 1),
                          "alive_mib": round(alive, 1), "rss_growth_mib": round(rss, 1), "ms": round(ms, 1)}),
              flush=True)


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
    ap.add_argument("--size", default="1120x1680")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(1)
    p = Peak(dev)
    if a.case == "adds":
        x = torch.randn(16 << 20, device=dev, requires_grad=True)

        def run(mark):
            y = x
            for _ in range(10):
                y = y + x
            mark("forward")
            y.sum().backward()
            mark("forward+backward")

        def reset():
            x.grad = None

        measure("10 chained adds of 64 MiB", p, run, reset)
    elif a.case == "unet":
        net = UNet().to(dev)
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        x, t = torch.rand(4, 3, 128, 128, device=dev), torch.rand(4, 3, 128, 128, device=dev)

        def run(mark):
            loss = F.mse_loss(net(x), t)
            mark("forward")
            loss.backward()
            del loss
            opt.step()
            mark("step")

        def reset():
            opt.zero_grad(set_to_none=True)

        run(lambda phase: None)  # Adam's state exists from here on
        reset()
        measure("U-Net training step, batch 4, 128x128", p, run, reset)
    elif a.case == "inverse_filter_unfused":
        h, w = (int(v) for v in a.size.split("x"))
        sizes, bases = list(range(3, 16, 2)), 10
        x = torch.rand(1, 3, h, w, device=dev, requires_grad=True)
        kernels = [(0.1 * torch.randn(bases, s, s, device=dev)).requires_grad_() for s in sizes]
        logits = torch.randn(1, len(sizes) + 1, h, w, device=dev, requires_grad=True)
        omega = torch.randn(1, bases, h, w, device=dev, requires_grad=True)
        mix = nn.Conv2d((len(sizes) + 1) * 3 * bases, 3, 1).to(dev)

        def run(mark):
            maps = [torch.zeros(1, 3 * bases, h, w, device=dev)]  # group 0: the released code's zero group
            for s, k in zip(sizes, kernels):
                maps.append(F.conv2d(x, k.repeat(3, 1, 1).unsqueeze(1), padding=s // 2, groups=3))
            mu = torch.softmax(logits, 1)
            prod = torch.stack(maps, 1) * mu.unsqueeze(2) * omega.repeat(1, 3, 1, 1).unsqueeze(1)
            out = mix(prod.flatten(1, 2))
            loss = (out * out).sum()
            mark("forward")
            loss.backward()
            mark("forward+backward")

        def reset():
            for t in [x, logits, omega, *kernels, *mix.parameters()]:
                t.grad = None

        measure(f"inik inverse filter unfused (released), 3x{h}x{w}", p, run, reset)
    else:
        raise SystemExit(f"unknown --case {a.case} (adds, unet, inverse_filter_unfused; gs has no PyTorch twin)")


if __name__ == "__main__":
    main()
