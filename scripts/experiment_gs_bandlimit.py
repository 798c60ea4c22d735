#!/usr/bin/python3
"""How much a deblurrer whose change is band-limited could gain at most (issue 13): the ideal correction
(target - input) low-passed by a Gaussian of sigma px, added to the input and clipped to [0, 1] (as gs clamps its
output), scored against the target. gs's change
is a render of blobs on a 2x2-px lattice (fitted sigma about 0.7 px), so its ceiling lies near these figures; an
image-to-image network's correction has no such limit.

usage: scripts/experiment_gs_bandlimit.py DATA/test_c [--sigmas 0.7 1 1.4]
Needs Debian's python3-numpy, python3-pil, python3-scipy; a few seconds.
"""
import argparse, glob, os
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def psnr(a, b):
    return 10 * np.log10(1 / np.mean((a - b) ** 2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("split", help="a make_synth split: source/ and target/ PNGs")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.7, 1.0, 1.4])
    a = ap.parse_args()
    sources = sorted(glob.glob(os.path.join(a.split, "source", "*.png")))
    if not sources:
        raise SystemExit(f"{a.split}/source holds no PNG images")
    rows = []
    for p in sources:
        x = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255
        y = np.asarray(Image.open(p.replace(os.sep + "source" + os.sep, os.sep + "target" + os.sep)).convert("RGB"),
                       dtype=np.float64) / 255
        e = y - x
        rows.append([psnr(x, y)] + [psnr(np.clip(x + gaussian_filter(e, (s, s, 0)), 0, 1), y) for s in a.sigmas])
    r = np.array(rows)
    print(f"{len(rows)} images, input {r[:, 0].mean():.2f} dB")
    for k, s in enumerate(a.sigmas):
        print(f"correction low-passed at sigma {s:g} px: {r[:, k + 1].mean():.2f} dB ({r[:, k + 1].mean() - r[:, 0].mean():+.2f})")


if __name__ == "__main__":
    main()
