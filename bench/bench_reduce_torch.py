#!/usr/bin/python3
"""PyTorch twin of bench/bench_reduce.cpp: the same reductions, median of repeats."""
import argparse
import json

import torch

from torch_util import median_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    g = torch.Generator(device="cpu").manual_seed(1)

    calls = 10  # as bench_reduce: each sample times 10 back-to-back calls, reported per call

    def report(name, f):
        def many():
            for _ in range(calls):
                f()
        ms = median_ms(many, a.repeats, dev) / calls
        print(json.dumps({"name": name, "device": a.device, "ms": round(ms, 4)}), flush=True)

    flat = torch.rand(3 * 1120 * 1680, generator=g).to(dev)
    report("sum 5.6M -> 1", lambda: flat.sum())
    report("mean 5.6M -> 1", lambda: flat.mean())
    nchw = torch.rand(4, 64, 128, 128, generator=g).to(dev)
    report("sum [4,64,128,128] -> [64]", lambda: nchw.sum((0, 2, 3)))
    report("mean [4,64,128,128] -> [64]", lambda: nchw.mean((0, 2, 3)))
    deep = torch.rand(256, 64, 8, 8, generator=g).to(dev)
    report("sum [256,64,8,8] -> [64]", lambda: deep.sum((0, 2, 3)))
    rows = torch.rand(4096, 1368, generator=g).to(dev)
    report("sum rows [4096,1368] -> [4096]", lambda: rows.sum(1))
    report("mean rows [4096,1368] -> [4096]", lambda: rows.mean(1))
    report("sum columns [4096,1368] -> [1368]", lambda: rows.sum(0))
    short_rows = torch.rand(1 << 20, 16, generator=g).to(dev)
    report("sum rows [1048576,16] -> [1048576]", lambda: short_rows.sum(1))


if __name__ == "__main__":
    main()
