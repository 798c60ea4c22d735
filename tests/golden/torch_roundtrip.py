#!/usr/bin/python3
"""Load a state dict written by refocus into the PyTorch twin of the test model and check its output.

usage: torch_roundtrip.py WEIGHTS.safetensors IO.safetensors
IO holds the input x and the output y refocus computed; exits 0 when PyTorch reproduces y.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import torch_model  # noqa: E402
from safetensors_min import load  # noqa: E402

weights, _ = load(sys.argv[1])
io, _ = load(sys.argv[2])
m = torch_model()
m.load_state_dict(weights)  # strict: every name and shape must match
m.eval()
with torch.no_grad():
    y = m(io["x"])
err = (y - io["y"]).abs().max().item()
print(f"max |torch - refocus| = {err:.3g}")
sys.exit(0 if err < 1e-4 else 1)
