#!/usr/bin/python3
"""PyTorch twin of bench/bench_networks.cpp: the networks' PyTorch twins (tests/golden/twin_*.py) at their paper
configurations doing the same work — inference at the given size and one training step (batch 4, forward + L1 +
backward + Adam). Eager mode (Debian's PyTorch 1.13 has no working torch.compile on this CPU set-up)."""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))
sys.path.insert(0, HERE)
from torch_util import median_ms  # noqa: E402
import twin_ggkm  # noqa: E402
import twin_inik  # noqa: E402
import twin_jdrl  # noqa: E402
import twin_sft  # noqa: E402


def pyramid3(x):
    h = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    return x, h, F.interpolate(h, scale_factor=0.5, mode="bilinear", align_corners=False)


def make(name):
    """(module, deblur(module, x) -> final output)"""
    if name == "gkm":
        return twin_ggkm.GKMNet("intended"), lambda m, x: m(*pyramid3(x))[0]
    if name == "ggkm":
        return twin_ggkm.GGKMNet(), lambda m, x: m(*pyramid3(x))[0]
    if name == "ggkm+":  # 7 residual blocks in every backbone block, as GgkmConfig::variant_defaults("ggkm+")
        return twin_ggkm.GGKMNet(res_blocks=7), lambda m, x: m(*pyramid3(x))[0]
    if name == "sft":
        cfg = {"map_width": 64, "map_blocks": 4, "cond_width": 32, "width": 128, "blocks": 16, "modulation": "sft_dec"}
        return twin_sft.Sft(cfg), lambda m, x: m(x)[0]
    if name == "inik":
        return twin_inik.INIKNet(), lambda m, x: m(x)[-1]
    if name == "jdrl":
        return twin_jdrl.Jdrl("unet", 64), lambda m, x: m(x)
    if name == "jdrl_restormer":  # the stock Restormer (dim 48, blocks 4/6/6/8, 4 refinement blocks)
        return twin_jdrl.Jdrl("restormer", 48, (4, 6, 6, 8), refinement=4), lambda m, x: m(x)
    raise SystemExit(f"unknown model {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="gkm,ggkm,sft,inik,jdrl")
    ap.add_argument("--size", default="720x1280")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--training-only", action="store_true", help="time the training step alone")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    ih, iw = (int(v) for v in a.size.split("x"))
    for name in a.models.split(","):
        torch.manual_seed(1)
        net, run = make(name)
        net = net.float().to(dev).eval()
        x = torch.rand(1, 3, ih, iw, device=dev)

        def infer():
            with torch.no_grad():
                run(net, x)

        if not a.training_only:
            print(json.dumps({"name": f"{name} inference {iw}x{ih}", "device": a.device,
                              "ms": round(median_ms(infer, a.repeats, dev), 1),
                              "parameters": sum(p.numel() for n, p in net.named_parameters() if not n.startswith("reblur."))}),
                  flush=True)
        net.train()
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        xb, tb = torch.rand(4, 3, a.crop, a.crop, device=dev), torch.rand(4, 3, a.crop, a.crop, device=dev)

        def step():
            opt.zero_grad(set_to_none=True)
            (run(net, xb) - tb).abs().mean().backward()
            opt.step()

        print(json.dumps({"name": f"{name} training step batch 4 {a.crop}x{a.crop}", "device": a.device,
                          "ms": round(median_ms(step, a.repeats, dev), 1)}), flush=True)


if __name__ == "__main__":
    main()
