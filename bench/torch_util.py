"""Timing shared by the PyTorch twins: the median of `repeats` runs after one warm-up, GPU synchronised."""
import time

import torch


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def median_ms(f, repeats, dev):
    f()
    t = []
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        f()
        sync(dev)
        t.append((time.perf_counter() - t0) * 1000)
    return sorted(t)[len(t) // 2]
