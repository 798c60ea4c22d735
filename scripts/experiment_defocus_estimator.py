#!/usr/bin/python3
"""How well can a small CNN rank the blur of make_synth images at all? (issues 11 and 13: sft's map net and gs's
defocus estimator both rank the true CoC at about 0 to 0.25 per image.) Trains a plain U-Net (three stride-2 levels,
a dilated bottleneck, skips back to full resolution, softplus output; 0.33 M parameters at width 16) on the
training split's defocus maps with gs's estimator loss (L1 on log(1 + CoC px)), Adam 1e-3 cosine to 1e-4, batch 8,
random crops with flips, and scores the test split every quarter of the run: mean absolute error (px of CoC radius)
and the Spearman rank correlation of the predicted with the true map, per image (mean [min, max]).
  --quarter  predict at a quarter of the resolution and resize, as GsDefocusEstimator does

usage: scripts/experiment_defocus_estimator.py DATA [--steps 3000] [--crop 128] [--width 16] [--quarter]
DATA holds train_c/ and test_c/ (make_synth; e.g. data/judge). Debian's python3-torch, python3-pil, python3-scipy;
CPU, about 0.19 s a step at 128 px on 2 cores.
"""
import argparse, glob, os, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr


def load_split(d):
    names = sorted(glob.glob(os.path.join(d, "source", "*.png")))
    x = np.stack([np.array(Image.open(n)) for n in names]).astype(np.float32) / 255
    c = np.stack([np.array(Image.open(n.replace("/source/", "/defocus/"))) for n in names]).astype(np.float32) / 256
    return torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(c)[:, None]  # CoC: 1/256 px (make_synth)


def conv_relu(i, o, stride=1, dilation=1):
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, dilation, dilation=dilation), nn.ReLU())


class UNet(nn.Module):
    def __init__(self, w, full_resolution):
        super().__init__()
        self.full = full_resolution
        self.e0 = nn.Sequential(conv_relu(3, w), conv_relu(w, w))
        self.e1 = nn.Sequential(conv_relu(w, 2 * w, 2), conv_relu(2 * w, 2 * w))
        self.e2 = nn.Sequential(conv_relu(2 * w, 4 * w, 2), conv_relu(4 * w, 4 * w))
        self.e3 = nn.Sequential(conv_relu(4 * w, 4 * w, 2), conv_relu(4 * w, 4 * w), conv_relu(4 * w, 4 * w, dilation=2),
                                conv_relu(4 * w, 4 * w, dilation=4))
        self.d2, self.d1, self.d0 = conv_relu(8 * w, 4 * w), conv_relu(6 * w, 2 * w), conv_relu(3 * w, w)
        self.head = nn.Conv2d(w if full_resolution else 4 * w, 1, 3, 1, 1)

    def forward(self, x):
        def up(a, b):
            return F.interpolate(a, size=b.shape[2:], mode="bilinear", align_corners=False)
        f0 = self.e0(x)
        f1 = self.e1(f0)
        f2 = self.e2(f1)
        g2 = self.d2(torch.cat([up(self.e3(f2), f2), f2], 1))
        if not self.full:
            return up(F.softplus(self.head(g2)), x)
        g1 = self.d1(torch.cat([up(g2, f1), f1], 1))
        return F.softplus(self.head(self.d0(torch.cat([up(g1, f0), f0], 1))))


def score(net, x, c):
    net.eval()
    mae, rank = [], []
    with torch.no_grad():
        for i in range(len(x)):
            p = net(x[i : i + 1])
            mae.append(float((p - c[i : i + 1]).abs().mean()))
            rank.append(spearmanr(p.flatten().numpy(), c[i].flatten().numpy())[0])
    net.train()
    return np.mean(mae), np.nanmean(rank), np.nanmin(rank), np.nanmax(rank)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--quarter", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 2))
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xtr, ctr = load_split(os.path.join(a.data, "train_c"))
    xte, cte = load_split(os.path.join(a.data, "test_c"))
    net = UNet(a.width, not a.quarter)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps, 1e-4)
    print(f"{sum(p.numel() for p in net.parameters())} parameters; test GT mean CoC radius {float(cte.mean()):.2f} px", flush=True)
    t0, h, w = time.time(), xtr.shape[2], xtr.shape[3]
    for it in range(a.steps):
        idx = torch.from_numpy(rng.integers(0, len(xtr), 8))
        t, l = rng.integers(0, h - a.crop + 1), rng.integers(0, w - a.crop + 1)
        x, c = xtr[idx, :, t : t + a.crop, l : l + a.crop], ctr[idx, :, t : t + a.crop, l : l + a.crop]
        if rng.random() < 0.5:
            x, c = x.flip(3), c.flip(3)
        loss = (torch.log1p(net(x)) - torch.log1p(c)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (it + 1) % max(1, a.steps // 4) == 0:
            print(f"step {it + 1} ({time.time() - t0:.0f} s): test MAE %.2f px, rank correlation %.2f [%.2f, %.2f]"
                  % score(net, xte, cte), flush=True)


if __name__ == "__main__":
    main()
