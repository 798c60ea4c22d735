#!/usr/bin/env python3
"""How much a network sharpens the blurred and the in-focus parts of real photographs with blur masks (CUHK's
DefocusBlurRemoving set: mask white = out of focus). For each photograph, the high-frequency energy (mean square of the
grey image's 4-neighbour Laplacian) of the output over the input's, inside the out-of-focus region and inside the
in-focus one, each eroded by 8 px so the boundary counts for neither; and the ratio of the two (how much more it
sharpens the blur than what is sharp). Amplified JPEG noise counts as energy too, so this is a measure of where a
network acts, not of what it recovers.

usage: scripts/cuhk_sharpening.py BLUR_DIR MASK_DIR OUTPUT_DIR [NAME ...]
       (the outputs of `deblur BLUR_DIR/NAME OUTPUT_DIR/...`, same stems, .png)
"""
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage


def grey(path):
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    return a @ np.array([0.299, 0.587, 0.114])


def laplacian_squared(g):
    return ndimage.laplace(g, mode="nearest") ** 2


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    blur_dir, mask_dir, out_dir = sys.argv[1:4]
    stems = sys.argv[4:] or sorted(os.path.splitext(n)[0] for n in os.listdir(out_dir) if n.endswith(".png"))
    if not stems:
        sys.exit(f"{out_dir}: no .png outputs to measure")
    print("| photograph | out of focus: output / input HF energy | in focus | ratio |\n|---|---|---|---|")
    for stem in stems:
        src = next((p for p in (os.path.join(blur_dir, stem + e) for e in (".jpg", ".png")) if os.path.exists(p)), None)
        if src is None:
            sys.exit(f"{blur_dir}: no input image named {stem}.jpg or {stem}.png")
        mask_path = os.path.join(mask_dir, stem + ".png")
        out_path = os.path.join(out_dir, stem + ".png")
        for p in (mask_path, out_path):
            if not os.path.exists(p):
                sys.exit(f"{p}: missing")
        x, y = laplacian_squared(grey(src)), laplacian_squared(grey(out_path))
        if x.shape != y.shape:
            sys.exit(f"{out_path}: size {y.shape[::-1]} differs from its input's {x.shape[::-1]}")
        m = np.asarray(Image.open(mask_path).convert("L"), dtype=np.float64) > 127
        if m.shape != x.shape:
            sys.exit(f"{mask_path}: size {m.shape[::-1]} differs from its photograph's {x.shape[::-1]}")
        blurred = ndimage.binary_erosion(m, iterations=8)
        sharp = ndimage.binary_erosion(~m, iterations=8)
        if not blurred.any() or not sharp.any():
            sys.exit(f"{mask_path}: after an 8-px erosion one of the two regions is empty")
        rb = y[blurred].mean() / x[blurred].mean()
        rs = y[sharp].mean() / x[sharp].mean()
        print(f"| {stem} | {rb:.2f}× | {rs:.2f}× | {rb / rs:.2f} |")


if __name__ == "__main__":
    main()
