#!/usr/bin/env python3
"""How well a network's own defocus maps (deblur --save-map) agree with the ground truth.

usage: map_agreement.py TITLE PRED_SYNTH GT_SYNTH PRED_PIXEL4 GT_PIXEL4 OUT.md
Synthetic split: both maps are CoC radius in make_synth's units (16-bit, 1 unit = 1/256 px), so the mean
absolute error is in pixels. Pixel 4: its maps are normalised per image (0..255, Xin et al.'s code), in other
units than ours, so only the rank (Spearman) correlation means anything there.
"""
import glob, os, sys

import numpy as np
from scipy.stats import spearmanr
from skimage import io


def pairs(pred_dir, gt_dir):
    for p in sorted(glob.glob(os.path.join(pred_dir, "*.png"))):
        g = os.path.join(gt_dir, os.path.basename(p))
        if not os.path.exists(g):
            sys.exit(f"map_agreement: {p} has no ground-truth map {g}")
        a, b = io.imread(p).astype(np.float64), io.imread(g).astype(np.float64)
        if a.shape != b.shape:
            sys.exit(f"map_agreement: {p} is {a.shape} but {g} is {b.shape}")
        yield os.path.basename(p), a, b


def rank_corr(a, b):
    step = max(1, a.size // 200000)  # a strided sample keeps the ranking cheap on 1344x1008 maps
    return spearmanr(a.ravel()[::step], b.ravel()[::step]).correlation


title, pred_s, gt_s, pred_p, gt_p, out = sys.argv[1:]
synth = [(n, np.abs(a - b).mean() / 256.0, rank_corr(a, b), b.mean() / 256.0) for n, a, b in pairs(pred_s, gt_s)]
pixel4 = [(n, rank_corr(a, b)) for n, a, b in pairs(pred_p, gt_p)] if os.path.isdir(pred_p) else []
if not synth:
    sys.exit(f"map_agreement: no maps in {pred_s}")
md = (f"{title}\n\n| set | images | mean abs. error (px of CoC radius) | rank correlation (Spearman), mean [min, max] |\n|---|---|---|---|\n"
      f"| synthetic test split (GT mean radius {np.mean([s[3] for s in synth]):.2f} px) | {len(synth)} | "
      f"{np.mean([s[1] for s in synth]):.2f} | {np.nanmean([s[2] for s in synth]):.2f} "
      f"[{np.nanmin([s[2] for s in synth]):.2f}, {np.nanmax([s[2] for s in synth]):.2f}] |\n")
if pixel4:
    rs = [r for _, r in pixel4]
    md += (f"| Pixel 4 (GT maps normalised per image) | {len(pixel4)} | – | {np.nanmean(rs):.2f} "
           f"[{np.nanmin(rs):.2f}, {np.nanmax(rs):.2f}]: " + ", ".join(f"{n[:-4]} {r:.2f}" for n, r in pixel4) + " |\n")
with open(out + ".tmp", "w") as f:
    f.write(md)
os.replace(out + ".tmp", out)
print(md)
