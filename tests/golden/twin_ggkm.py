#!/usr/bin/python3
"""PyTorch twin of GKMNet (`gkm`, models/ggkm.h), written from the released code's module structure: the same
module tree and parameter names (in_block, conv_block1_1, ..., APU.conv_atten.conv, SumLayer.conv), the
Gaussian bank as the released code applies it (one dense 21x21 depthwise convolution, groups = 3), BatchNorm in
evaluation mode with non-trivial running statistics.

usage: twin_ggkm.py OUT_DIR
Writes OUT_DIR/gkm_<order>_twin.safetensors for order in (intended, official): the twin's weights ("w.<name>"),
the three inputs (input_blur_256/128/64, non-square) and the outputs out0..out2 (db256, db128, db64) computed in
float64 from the float32 weights, with the refocus config in the metadata. tests/test_ggkm.cpp runs `forward`
on them and compares. Run at test time (the weights are 5.6 MB: too large to commit).
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


def gaussian_1d(size, sigma):
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def bank_2d(order):
    """[66, 1, 21, 21]: output channel j of the depthwise conv (input colour j // 22) uses kernel k(j)."""
    kernels = [F.pad(torch.ones(1, 1, dtype=torch.float64), [10, 10, 10, 10])]
    size = 3
    for i in range(21):
        g = gaussian_1d(size, 0.25 * (i + 1))
        pad = (21 - size) // 2
        kernels.append(F.pad(torch.outer(g, g), [pad, pad, pad, pad]))
        if i >= 2 and i % 2 == 0 and size < 21:
            size += 2
    pick = [j % 22 for j in range(66)] if order == "intended" else [j // 3 for j in range(66)]
    return torch.stack([kernels[k] for k in pick]).unsqueeze(1)


class ConvBnRelu(nn.Sequential):
    def __init__(self, conv, ch):
        super().__init__(conv, nn.BatchNorm2d(ch), nn.ReLU())


class ResBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = ConvBnRelu(nn.Conv2d(ch, ch, 3, 1, 1), ch)
        self.conv1 = ConvBnRelu(nn.Conv2d(ch, ch, 3, 1, 1), ch)

    def forward(self, x):
        y = x + self.conv(x)
        return y + self.conv1(y)


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, 1, 3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x):  # pools over dim 1 of the (permuted) input
        z = torch.cat([x.max(1, keepdim=True)[0], x.mean(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.bn(self.conv(z)))


class Triplet(nn.Module):
    def __init__(self):
        super().__init__()
        self.cw, self.hc, self.hw = Gate(), Gate(), Gate()

    def forward(self, x):
        cw = self.cw(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        hc = self.hc(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
        return (self.hw(x) + cw + hc) / 3


class Block(nn.Module):
    def __init__(self, kind, cin, cout, res_blocks=1):
        super().__init__()
        if kind == "in":
            self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1))
        elif kind == "up":
            self.conv = ConvBnRelu(nn.ConvTranspose2d(cin, cout, 2, 2, 0), cout)
        else:
            self.conv = ConvBnRelu(nn.Conv2d(cin, cout, 3, 2 if kind == "down" else 1, 1), cout)
        self.ta = Triplet()
        self.res_block = ResBlock(cout)
        if res_blocks > 1:  # ggkm+: "more residual blocks in the BFE", after the released one
            self.extra = nn.Sequential(*[ResBlock(cout) for _ in range(res_blocks - 1)])

    def forward(self, x):
        y = self.res_block(self.conv(x))
        if hasattr(self, "extra"):
            y = self.extra(y)
        return self.ta(y)


class ConvLSTM(nn.Module):
    def __init__(self, cin, hidden, k):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(cin + hidden, 4 * hidden, k, 1, k // 2)

    def forward(self, x, h, c):
        i, f, o, g = torch.split(self.conv(torch.cat([x, h], 1)), self.hidden, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class Holder(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.conv = seq


class Apu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = Holder(ConvBnRelu(nn.Conv2d(32, 44, 3, 1, 1), 44))
        self.conv_atten = ConvLSTM(32, 44, 5)

    def forward(self, x, h, c):
        x_res = self.conv.conv(x)
        h, c = self.conv_atten(F.avg_pool2d(x, 2, 2), h, c)
        y = F.interpolate(h, scale_factor=2, mode="nearest")
        return torch.sigmoid(y * x_res + y) * 2 - 1, h, c


class Sum(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(132, 3, 1)


class GKMNet(nn.Module):  # noqa: D101
    def __init__(self, order):
        super().__init__()
        self.register_buffer("bank", bank_2d(order), persistent=False)
        self.in_block = Block("in", 3, 32)
        self.conv_block1_1 = Block("down", 32, 64)
        self.conv_block2_1 = Block("down", 64, 128)
        self.bottle_neck_1 = Block("same", 128, 128)
        self.conv_block3_1 = Block("up", 128, 64)
        self.conv_block4_1 = Block("up", 64, 32)
        self.APU = Apu()
        self.SumLayer = Sum()

    def step(self, y, prev, h, c):
        gy = F.conv2d(y, self.bank, padding=10, groups=3)
        gx = F.conv2d(prev, self.bank, padding=10, groups=3)
        fi = self.in_block(y)
        f1 = self.conv_block1_1(fi)
        f2 = self.conv_block2_1(f1)
        bn = self.bottle_neck_1(f2)
        f4 = self.conv_block4_1(self.conv_block3_1(bn + f2) + f1)
        w, h, c = self.APU(f4, h, c)
        wy, wx = w[:, :22].repeat(1, 3, 1, 1), w[:, 22:].repeat(1, 3, 1, 1)
        return self.SumLayer.conv(torch.cat([gy * wy, gx * wx], 1)), h, c

    def forward(self, y256, y128, y64):
        b, _, hh, ww = y64.shape
        h = torch.zeros(b, 44, hh // 2, ww // 2, dtype=y64.dtype)
        c = torch.zeros_like(h)
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)
        d64, h, c = self.step(y64, y64, h, c)
        d128, h, c = self.step(y128, up(d64), up(h), up(c))
        d256, _, _ = self.step(y256, up(d128), up(h), up(c))
        return d256, d128, d64


def bank_case(out_dir):
    """The bank alone, as the released code applies it (dense 21x21 depthwise conv), with gradients."""
    torch.manual_seed(2)
    x = torch.rand(2, 3, 11, 13)
    gout = torch.rand(2, 66, 11, 13) - 0.5
    xd = x.double().requires_grad_(True)
    out = F.conv2d(xd, bank_2d("intended"), padding=10, groups=3)
    (out * gout.double()).sum().backward()
    save(os.path.join(out_dir, "gkm_bank_twin.safetensors"),
         {"x": x, "gout": gout, "out": out.detach().float(), "grad_x": xd.grad.float()})


# --- GGKMNet (no released code): the same module tree as models/ggkm.cpp ---------------------------------------
def ggkm_bank(groups=21, per_group=4):
    """Kernel 0: the delta; kernel 1 + (p - 1) Q + q: sigma 0.25 (p + q / Q) on GKMNet's support of kernel p."""
    sizes, size = [], 3
    for i in range(21):
        sizes.append(size)
        if i >= 2 and i % 2 == 0 and size < 21:
            size += 2
    taps = [torch.ones(1, dtype=torch.float64)]
    for p in range(1, groups + 1):
        for q in range(per_group):
            taps.append(gaussian_1d(sizes[p - 1], 0.25 * (p + q / per_group)))
    return taps


class AlphaApu(nn.Module):
    def __init__(self, outputs):
        super().__init__()
        self.lstm1 = nn.LSTMCell(128, 32)
        self.lstm2 = nn.LSTMCell(32, outputs)


class GGKMNet(nn.Module):
    def __init__(self, groups=21, per_group=4, res_blocks=1):
        super().__init__()
        self.groups, self.per_group, self.maps = groups, per_group, groups + 1
        self.taps = ggkm_bank(groups, per_group)
        rb = res_blocks
        self.in_block = Block("in", 3, 32, rb)
        self.conv_block1_1 = Block("down", 32, 64, rb)
        self.conv_block2_1 = Block("down", 64, 128, rb)
        self.bottle_neck_1 = Block("same", 128, 128, rb)
        self.conv_block3_1 = Block("up", 128, 64, rb)
        self.conv_block4_1 = Block("up", 64, 32, rb)
        m2 = 2 * self.maps
        self.APU = nn.Module()
        self.APU.conv = Holder(nn.Sequential(nn.Conv2d(32, m2, 3, 1, 1), nn.ReLU(), nn.Conv2d(m2, m2, 3, 1, 1)))
        self.APU.conv_atten = ConvLSTM(32, m2, 5)
        self.SumLayer = nn.Module()
        self.SumLayer.conv = nn.Conv2d(2 * 3 * self.maps, 3, 1)
        self.alpha_APU = AlphaApu(groups * per_group)
        self.SRM = nn.Sequential(nn.Conv2d(32 + m2 + 3, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(),
                                 nn.Conv2d(32, 3, 3, 1, 1))

    def mix(self, x, alpha):
        """z[b, c * maps + m] = sum_q alpha[b, m-1, q] g_mq (x) x[b, c] (m = 0: the delta), densely, image by image."""
        out = []
        for b in range(x.shape[0]):
            kernels = [F.pad(torch.ones(1, 1, dtype=x.dtype), [10, 10, 10, 10])]
            for p in range(1, self.maps):
                k = 0
                for q in range(self.per_group):
                    t = self.taps[1 + (p - 1) * self.per_group + q].to(x.dtype)
                    pad = (21 - t.numel()) // 2
                    k = k + alpha[b, p - 1, q] * F.pad(torch.outer(t, t), [pad, pad, pad, pad])
                kernels.append(k)
            w = torch.stack(kernels).unsqueeze(1).repeat(3, 1, 1, 1)  # [3 maps, 1, 21, 21], colour-major
            out.append(F.conv2d(x[b:b + 1], w, padding=10, groups=3))
        return torch.cat(out, 0)

    def forward(self, y256, y128, y64, with_srm=False):
        b, _, hh, ww = y64.shape
        m2 = 2 * self.maps
        h = torch.zeros(b, m2, hh // 2, ww // 2, dtype=y64.dtype)
        c = torch.zeros_like(h)
        s1 = s2 = None
        outs, resynth, prev = [], [], None
        for t, y in enumerate((y64, y128, y256)):
            x_up = y if t == 0 else F.interpolate(prev, size=y.shape[2:], mode="bilinear", align_corners=False)
            if t > 0:
                h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
                c = F.interpolate(c, scale_factor=2, mode="bilinear", align_corners=False)
            fi = self.in_block(y)
            f1 = self.conv_block1_1(fi)
            f2 = self.conv_block2_1(f1)
            bn = self.bottle_neck_1(f2)
            f4 = self.conv_block4_1(self.conv_block3_1(bn + f2) + f1)
            path2 = self.APU.conv.conv(f4)
            h, c = self.APU.conv_atten(F.avg_pool2d(f4, 2, 2), h, c)
            path1 = F.interpolate(h, scale_factor=2, mode="nearest")
            beta = torch.tanh(path1 * path2 + path1)
            s1 = self.alpha_APU.lstm1(bn.mean((2, 3)), s1)
            s2 = self.alpha_APU.lstm2(torch.relu(s1[0]), s2)
            alpha = torch.softmax(s2[0].reshape(b, self.groups, self.per_group), 2)
            zy, zx = self.mix(y, alpha), self.mix(x_up, alpha)
            by, bx = beta[:, :self.maps].repeat(1, 3, 1, 1), beta[:, self.maps:].repeat(1, 3, 1, 1)
            out = y + self.SumLayer.conv(torch.cat([zy * by, zx * bx], 1))
            if with_srm:
                resynth.append(torch.sigmoid(self.SRM(torch.cat([f4, beta, out], 1))))
            outs.append(out)
            prev = out
        return (outs[2], outs[1], outs[0]) if not with_srm else (outs, resynth)


def ggkm_case(out_dir, groups, variant="ggkm", res_blocks=1):
    torch.manual_seed(3)
    net = GGKMNet(groups, res_blocks=res_blocks).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    y256 = torch.rand(1, 3, 32, 48)
    y128 = F.interpolate(y256, scale_factor=0.5, mode="bilinear", align_corners=False)
    y64 = F.interpolate(y128, scale_factor=0.5, mode="bilinear", align_corners=False)
    tensors = {"w." + k: v.clone() for k, v in net.state_dict().items()}
    tensors.update({"input_blur_256": y256, "input_blur_128": y128, "input_blur_64": y64})
    with torch.no_grad():
        outs = net.double()(y256.double(), y128.double(), y64.double())
    for i, o in enumerate(outs):
        tensors[f"out{i}"] = o.float()
    save(os.path.join(out_dir, f"{variant}_twin.safetensors"), tensors,
         {"config": json.dumps({"variant": variant, "groups": groups})})
    print(f"{variant} twin ({groups} groups): {sum(p.numel() for p in net.parameters())} parameters")


def main():
    out_dir = sys.argv[1]
    ggkm_case(out_dir, 5)
    ggkm_case(out_dir, 5, "ggkm+", 7)  # the variant's own 7 residual blocks a block
    bank_case(out_dir)
    for seed, order in ((0, "intended"), (1, "official")):
        torch.manual_seed(seed)
        net = GKMNet(order).eval()
        with torch.no_grad():  # BatchNorm statistics that matter in evaluation mode
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        y256 = torch.rand(2, 3, 48, 64)  # non-square, batch 2
        y128 = F.interpolate(y256, scale_factor=0.5, mode="bilinear", align_corners=False)
        y64 = F.interpolate(y128, scale_factor=0.5, mode="bilinear", align_corners=False)
        tensors = {"w." + k: v.clone() for k, v in net.state_dict().items()}
        tensors.update({"input_blur_256": y256, "input_blur_128": y128, "input_blur_64": y64})
        with torch.no_grad():
            outs = net.double()(y256.double(), y128.double(), y64.double())
        for i, o in enumerate(outs):
            tensors[f"out{i}"] = o.float()
        config = {"variant": "gkm", "official_channel_order": order == "official"}
        save(os.path.join(out_dir, f"gkm_{order}_twin.safetensors"), tensors, {"config": json.dumps(config)})
        print(f"gkm twin ({order} order): {sum(p.numel() for p in net.parameters())} parameters")


if __name__ == "__main__":
    main()
