#!/usr/bin/python3
"""An upper bound on what gs's blob deblurrer can give (issue 13): fit blobs to a blurry synthetic image as
gs does (one isotropic blob per 2x2 cell, free scale and colour, MSE), then let an oracle optimise every
blob's change directly against the SHARP target, with gs's residual output (input + render(changed) -
render(fitted)). No learned deblurrer can beat its oracle. Changes tried:
  shrink       Eq. 5-8's scale change only (s_a = max(s - relu(ds), 0.1))
  shrink_mass  the same, with each blob's colour scaled by s^2 / s_a^2 (shrinking moves no light)
  color        shrink + a free colour change per blob (GsConfig::color_change)
It also reports the Spearman rank correlation of the fitted blob scale with the true CoC radius (defocus/),
with an optional prior -lambda * mean(log s) that lets blobs grow wherever the image allows it.
--nonneg keeps the colours >= 0 (light only adds up: a wide blob cannot draw detail with negative neighbours);
--no-oracle stops after the fit and its rank correlation.

--coc-scales K asks the converse (the paper's premise made true by construction): blobs whose scale carries the
TRUE blur, s = sqrt(s0^2 + (K r / 2)^2) with r the CoC radius at the cell (r / 2: a disk's standard deviation),
only their colours fitted (with an optional total-variation prior --tv on the sharp render), then deblurred by
shrinking every blob to s0 with its light kept (colour * s^2 / s0^2), the residual output as above.

usage: scripts/experiment_gs_oracle.py DATA/test_c [--images 4] [--grow 0] [--nonneg] [--no-oracle] [--crop 128]
       [--coc-scales K [--tv W]]
Needs Debian's python3-torch, python3-pil, python3-scipy; CPU only, about 15 s per image and change.
"""
import argparse, glob, os
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr

HALF = 7  # each blob is drawn in a 14x14 window around its cell (3 sigma of the largest fitted scales)


def load(path, scale=255.0):
    return torch.from_numpy(np.array(Image.open(path)).astype(np.float32) / scale)


def psnr(a, b):
    return float(-10 * torch.log10(((a.clamp(0, 1) - b) ** 2).mean()))


def render(color, scale, h, w):
    """Sum of isotropic Gaussians at the 2x2 cell centres: color [3, gh, gw], scale [gh, gw] (std, px)."""
    gh, gw = scale.shape
    off = torch.arange(2 * HALF, dtype=torch.float32) - (HALF - 1) - 0.5  # pixel centre - blob centre
    d2 = off[:, None] ** 2 + off[None, :] ** 2
    g = torch.exp(-0.5 * d2[None, None] / scale[..., None, None] ** 2)  # [gh, gw, 2H, 2H]
    patches = (color[:, :, :, None, None] * g[None]).reshape(3, gh * gw, -1).permute(0, 2, 1)
    return F.fold(patches.reshape(1, -1, gh * gw), (h, w), 2 * HALF, stride=2, padding=HALF - 1)[0]


def keep_nonnegative(color):
    """Projects the colours back to >= 0 after a step: light only adds up, so a wide blob cannot draw fine detail
    with negative neighbours."""
    with torch.no_grad():
        color.clamp_(min=0)


def fit(x, grow, nonneg=False, iters=150):
    cell_mean = F.avg_pool2d(x[None], 2)[0]
    log_s = torch.full(cell_mean.shape[1:], float(np.log(0.9))).requires_grad_()
    color = (cell_mean / (2 * np.pi / 4)).clone().requires_grad_()  # the 2x2 grid of s = 1 blobs sums to 2 pi / 4
    opt = torch.optim.Adam([log_s, color], lr=0.02)
    for _ in range(iters):
        s = torch.exp(log_s) + 0.1
        loss = ((render(color, s, *x.shape[1:]) - x) ** 2).mean() - grow * torch.log(s).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if nonneg:
            keep_nonnegative(color)
    return (torch.exp(log_s) + 0.1).detach(), color.detach()


def oracle(x, y, s, color, change, iters=200):
    h, w = x.shape[1:]
    fitted = render(color, s, h, w)
    ds = torch.full(s.shape, -3.0).requires_grad_()  # softplus(-3) = 0.05 px: a start near the identity
    dc = torch.zeros_like(color).requires_grad_()
    opt = torch.optim.Adam([ds, dc] if change == "color" else [ds], lr=0.05)
    for _ in range(iters):
        s_a = torch.clamp(s - F.softplus(ds), min=0.1)
        c_a = color * (s**2 / s_a**2) if change == "shrink_mass" else color
        if change == "color":
            c_a = c_a + dc
        out = x + render(c_a, s_a, h, w) - fitted
        loss = ((out - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return psnr(fitted, x), psnr(out.detach(), y), float(((s_a - s) / s).mean())


def coc_scaled(x, y, coc, k, tv, nonneg=False, s0=0.9, iters=200):
    """PSNR of the residual output after fitting colours to blobs sized by the true CoC and shrinking them."""
    h, w = x.shape[1:]
    s = torch.sqrt(s0**2 + (k * F.avg_pool2d(coc[None, None], 2)[0, 0] / 2) ** 2)
    sharp_s = torch.full_like(s, s0)
    color = (F.avg_pool2d(x[None], 2)[0] / (2 * np.pi * s**2 / 4)).requires_grad_()
    opt = torch.optim.Adam([color], lr=0.01)
    for _ in range(iters):
        fitted = render(color, s, h, w)
        sharp = render(color * s**2 / s0**2, sharp_s, h, w)
        loss = ((fitted - x) ** 2).mean() + tv * ((sharp[:, 1:] - sharp[:, :-1]).abs().mean() + (sharp[:, :, 1:] - sharp[:, :, :-1]).abs().mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if nonneg:
            keep_nonnegative(color)
    return psnr(fitted.detach(), x), psnr((x + sharp - fitted).detach(), y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("split", help="a synthetic split folder (make_synth), e.g. data/judge/test_c")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--grow", type=float, default=0.0, help="lambda of the blob-growth prior in the fit")
    ap.add_argument("--nonneg", action="store_true", help="colours kept >= 0 in the fit (projected after each step)")
    ap.add_argument("--no-oracle", action="store_true", help="only the fit and its rank correlation")
    ap.add_argument("--crop", type=int, default=128, help="centre crop (px) to keep the run short")
    ap.add_argument("--coc-scales", type=float, default=0.0, help="K: blobs sized by the true CoC (see above)")
    ap.add_argument("--tv", type=float, default=0.0, help="total-variation weight on the sharp render (--coc-scales)")
    a = ap.parse_args()
    if a.coc_scales > 0:
        global HALF
        HALF = 10  # blobs up to s = 2.5 px

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(a.split, "source", "*.png")))[: a.images]
    rows = []
    for n in names:
        x = load(os.path.join(a.split, "source", n + ".png")).permute(2, 0, 1)
        y = load(os.path.join(a.split, "target", n + ".png")).permute(2, 0, 1)
        coc = load(os.path.join(a.split, "defocus", n + ".png"), 256.0)  # CoC radius, px (meta: 1/256 px)
        t, l = (x.shape[1] - a.crop) // 2, (x.shape[2] - a.crop) // 2
        x, y, coc = x[:, t : t + a.crop, l : l + a.crop], y[:, t : t + a.crop, l : l + a.crop], coc[t : t + a.crop, l : l + a.crop]
        if a.coc_scales > 0:
            fit_db, out_db = coc_scaled(x, y, coc, a.coc_scales, a.tv, a.nonneg)
            rows.append([psnr(x, y), out_db])
            print(f"{n}: input {rows[-1][0]:.2f} dB, fit {fit_db:.2f} dB, shrunk to 0.9 px {out_db:.2f} dB", flush=True)
            continue
        s, color = fit(x, a.grow, a.nonneg)
        rank = spearmanr(s.flatten(), F.avg_pool2d(coc[None, None], 2).flatten())[0]
        row = [psnr(x, y), rank]
        if a.no_oracle:
            fit_db = psnr(render(color, s, *x.shape[1:]), x)
            rows.append(row + [fit_db, float(s.mean())])
            print(f"{n}: input {row[0]:.2f} dB, fit {fit_db:.2f} dB, mean scale {float(s.mean()):.2f} px, rank corr(scale, CoC) {rank:+.2f}", flush=True)
            continue
        for change in ("shrink", "shrink_mass", "color"):
            fit_db, out_db, ds = oracle(x, y, s, color, change)
            row += [out_db, ds]
        rows.append(row)
        print(f"{n}: input {row[0]:.2f} dB, fit {fit_db:.2f} dB, rank corr(scale, CoC) {rank:+.2f}; oracle "
              f"shrink {row[2]:.2f} ({row[3]:+.1%}), shrink_mass {row[4]:.2f} ({row[5]:+.1%}), color {row[6]:.2f}", flush=True)
    r = np.array(rows)
    if a.coc_scales > 0:
        print(f"mean over {len(rows)} crops (K {a.coc_scales}, tv {a.tv}): input {r[:, 0].mean():.2f} dB, "
              f"blobs shrunk {r[:, 1].mean():.2f} dB ({np.mean(r[:, 1] - r[:, 0]):+.2f})")
        return
    if a.no_oracle:
        print(f"mean over {len(rows)} crops (grow {a.grow}, nonneg {a.nonneg}): fit {r[:, 2].mean():.2f} dB, "
              f"mean scale {r[:, 3].mean():.2f} px, rank corr {r[:, 1].mean():+.2f}")
        return
    print(f"mean over {len(rows)} crops (grow {a.grow}): input {r[:, 0].mean():.2f} dB; rank corr {r[:, 1].mean():+.2f}; "
          f"oracle gain: shrink {np.mean(r[:, 2] - r[:, 0]):+.2f} dB, shrink_mass {np.mean(r[:, 4] - r[:, 0]):+.2f} dB, "
          f"color {np.mean(r[:, 6] - r[:, 0]):+.2f} dB")


if __name__ == "__main__":
    main()
