#!/usr/bin/python3
"""PyTorch twin of INIKNet (`inik`, models/inik.h), written from the released code's module structure (notes, not
its code): the same module tree and parameter names (unet.*, lstms_{basis,scale}_select.*, scale_select,
basis_select, inr_conv.kernelINR_list.N.layers.*, sum), 1,976,847 parameters, the shared sine frequency appearing
under two names; inverse filtering computed the released (unfused) way with the (B, 8, 30, H, W) tensor.

usage: twin_inik.py OUT_DIR -> OUT_DIR/inik_twin.safetensors (default config, RGB) and inik_official_twin.safetensors
(the same weights as a released checkpoint: the input given in RGB, the network run on BGR as released, the outputs
flipped back; `convert --official` must reproduce it).
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_min import save  # noqa: E402


class Conv(nn.Module):
    def __init__(self, cin, cout, k, stride=1, relu=True, transposed=False):
        super().__init__()
        layers = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False) if transposed else
                  nn.Conv2d(cin, cout, k, stride, k // 2, bias=False, padding_mode="reflect")]
        if relu:
            layers.append(nn.ReLU())
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


class Res(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.main = nn.Sequential(Conv(ch, ch, 3), Conv(ch, ch, 3, relu=False))

    def forward(self, x):
        return x + self.main(x)


class Stack(nn.Module):
    def __init__(self, ch, n):
        super().__init__()
        self.layers = nn.Sequential(*[Res(ch) for _ in range(n)])

    def forward(self, x):
        return self.layers(x)


class UNet(nn.Module):
    def __init__(self, b=32, n=2):
        super().__init__()
        self.Encoder = nn.ModuleList([Stack(b, n), Stack(2 * b, n), Stack(4 * b, n)])
        self.Decoder = nn.ModuleList([Stack(2 * b, n), Stack(b, n)])
        self.feat_extract = nn.ModuleList([Conv(3, b, 3), Conv(b, 2 * b, 3, 2), Conv(2 * b, 4 * b, 3, 2),
                                           Conv(4 * b, 2 * b, 3), Conv(2 * b, b, 3)])
        self.up1 = Conv(4 * b, 2 * b, 4, transposed=True)
        self.up2 = Conv(2 * b, b, 4, transposed=True)

    def forward(self, x):
        fe, en, de = self.feat_extract, self.Encoder, self.Decoder
        res1 = en[0](fe[0](x))
        res2 = en[1](fe[1](res1))
        res3 = en[2](fe[2](res2))
        z = de[0](fe[3](torch.cat([self.up1(res3), res2], 1)))
        return de[1](fe[4](torch.cat([self.up2(z), res1], 1)))


class Cell(nn.Module):
    def __init__(self, hidden=32, n=2):
        super().__init__()
        self.hidden = hidden
        self.layers = Stack(2 * hidden, n)
        self.conv = nn.Conv2d(2 * hidden, 4 * hidden, 1)

    def forward(self, x, h, c):
        i, f, o, g = torch.split(self.conv(self.layers(torch.cat([x, h], 1))), self.hidden, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class Direction(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = Cell()

    def forward(self, xs, fine_to_coarse):
        order = list(range(len(xs)))[::-1] if fine_to_coarse else list(range(len(xs)))
        hs, h, c = [None] * len(xs), None, None
        for i in order:
            x = xs[i]
            if h is None:
                h = torch.zeros(x.shape[0], 32, *x.shape[2:], dtype=x.dtype)
                c = torch.zeros_like(h)
            else:
                h = F.interpolate(h, size=x.shape[2:], mode="bilinear", align_corners=False)
                c = F.interpolate(c, size=x.shape[2:], mode="bilinear", align_corners=False)
            h, c = self.cell(x, h, c)
            hs[i] = h
        return hs


class Norm(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(32)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BiLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.left2right = Direction()
        self.right2left = Direction()
        self.norm = Norm()

    def forward(self, u):
        h1 = self.right2left([self.norm(f) for f in u], True)
        h2 = self.left2right(h1, False)
        return [f + h for f, h in zip(u, h2)]


class Sine(nn.Module):
    def __init__(self, w0):
        super().__init__()
        self.w0 = w0

    def forward(self, x):
        return torch.sin(self.w0 * x)


class Atom(nn.Module):
    def __init__(self, w):
        super().__init__()
        w0 = nn.Parameter(torch.tensor(w, dtype=torch.float32))
        self.layers = nn.Sequential(nn.Linear(3, 64), Sine(w0), nn.Linear(64, 64), Sine(w0), nn.Linear(64, 1, bias=False))


def polar(s, dtype):
    g = torch.linspace(-1, 1, s, dtype=dtype)
    u, v = torch.meshgrid(g, g, indexing="ij")  # u: row, v: column
    r, th = torch.sqrt(u * u + v * v) / math.sqrt(2), torch.atan2(v, u)
    return torch.stack([r, (torch.cos(th) + 1) / 2, (torch.sin(th) + 1) / 2], -1).reshape(-1, 3)


class Inr(nn.Module):
    def __init__(self):
        super().__init__()
        self.kernelINR_list = nn.ModuleList([Atom(2 + 10 / 9 * i) for i in range(10)])

    def forward(self, x):  # -> (B, 8, 30, H, W), group 0 zeros
        maps = [torch.zeros(x.shape[0], 30, *x.shape[2:], dtype=x.dtype)]
        for s in range(3, 16, 2):
            grid = polar(s, x.dtype)
            k = torch.stack([a.layers(grid).reshape(s, s) * 9 / (s * s) for a in self.kernelINR_list])  # [10, s, s]
            maps.append(F.conv2d(x, k.repeat(3, 1, 1).unsqueeze(1), padding=s // 2, groups=3))
        return torch.stack(maps, 1)


class INIKNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.unet = UNet()
        self.lstms_basis_select = BiLstm()
        self.lstms_scale_select = BiLstm()
        self.scale_select = nn.Conv2d(32, 8, 1)
        self.basis_select = nn.Conv2d(32, 10, 1)
        self.inr_conv = Inr()
        self.sum = nn.Conv2d(240, 3, 1)

    def forward(self, x):
        xs = [F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False),
              F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False), x]
        u = [self.unet(xi) for xi in xs]
        fb, fs = self.lstms_basis_select(u), self.lstms_scale_select(u)
        outs = []
        for i, xi in enumerate(xs):
            mu = torch.softmax(self.scale_select(fs[i]), 1)
            om = self.basis_select(fb[i])
            p = self.inr_conv(xi) * mu.unsqueeze(2) * om.repeat(1, 3, 1, 1).unsqueeze(1)
            outs.append(self.sum(p.flatten(1, 2)) + xi)
        return outs


def main():
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    net = INIKNet()
    print(f"inik twin: {sum(p.numel() for p in net.parameters())} parameters")
    x = torch.rand(1, 3, 32, 48)
    weights = {"w." + k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        outs32 = net(x)
        outs = net.double()(x.double())
    # How far PyTorch's own float32 run is from float64: the sine atoms (frequencies up to 12) amplify rounding, so
    # the test's tolerance is max(1e-4, 1.5 x this).
    gap = max(((a.double() - b).norm() / b.norm()).item() for a, b in zip(outs32, outs))
    print(f"inik twin: PyTorch float32 vs float64 relative error {gap:.2e}")
    t = dict(weights, x=x)
    t.update({f"out{i}": o.float() for i, o in enumerate(outs)})
    save(os.path.join(out_dir, "inik_twin.safetensors"), t, {"config": json.dumps({}), "float32_error": gap})
    # The released route: the network sees BGR; refocus (bgr = true) takes RGB and returns RGB.
    flip = lambda a: a.flip(1)
    t = dict(weights, x=flip(x))
    t.update({f"out{i}": flip(o).float() for i, o in enumerate(outs)})
    save(os.path.join(out_dir, "inik_official_twin.safetensors"), t,
         {"config": json.dumps({"bgr": True}), "float32_error": gap})


if __name__ == "__main__":
    main()
