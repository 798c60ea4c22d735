#!/usr/bin/python3
"""PyTorch twins of jdrl's modules (models/jdrl.h), written from the released code's structure (notes, not its code):
JDRL's Reblur_Model (474,987 parameters) and VGG_Deblur (31,033,411) with the released names, and the whole jdrl
network (estimator, deformable fusion, SE, U-Net or Restormer backbone) with refocus's names.

usage: twin_jdrl.py OUT_DIR -> jdrl_reblur_twin, jdrl_unet_twin, jdrl_unet_net_twin, jdrl_unet_identity_net_twin,
    jdrl_restormer_net_twin
(.safetensors): weights "w.<name>", the forward's inputs, outputs out0, config in the metadata.
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


# --- Reblur_Model --------------------------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(w, w, 3, 1, 1), nn.Conv2d(w, w, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.conv1(x)))


class SeedNet(nn.Module):
    def __init__(self, cin, w, out):
        super().__init__()
        self.conv_first = nn.Conv2d(cin, w, 3, 1, 1)
        self.block1, self.block2, self.block3 = Block(w), Block(w), Block(w)
        self.out = nn.Conv2d(w, out, 3, 1, 1)

    def forward(self, x):
        return self.out(self.block3(self.block2(self.block1(self.conv_first(x)))))


def isotropic_kernels(seeds):
    """[B, 35, H, W] -> list of 7 kernels [B, K^2, H, W], the released construction (abs, radial interpolation over
    the distance, zero beyond the radius, softmax over every tap)."""
    out, at = [], 0
    for r in range(1, 8):
        k, a = 2 * r + 1, seeds[:, at:at + r + 1].abs()
        at += r + 1
        logits = []
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                d = torch.sqrt(torch.tensor(float(dy * dy + dx * dx), dtype=torch.float32)).item()
                if d > r:
                    logits.append(torch.zeros_like(a[:, 0]))
                elif math.floor(d) == math.ceil(d):
                    logits.append(a[:, int(d)])
                else:
                    fl, ce = math.floor(d), math.ceil(d)
                    logits.append((d - fl) * a[:, ce] + (ce - d) * a[:, fl])
        out.append(torch.softmax(torch.stack(logits, 1), 1))
    return out


class ReblurModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.kernel_map_gene = SeedNet(6, 64, 8)
        self.kpn = SeedNet(6, 64, 35)

    def forward(self, im_s, im_b):
        x = torch.cat([im_s, im_b], 1)
        seeds, maps = self.kpn(x), torch.softmax(self.kernel_map_gene(x), 1)
        h, w = im_s.shape[2:]
        out = maps[:, :1] * im_s
        for r, ker in enumerate(isotropic_kernels(seeds), start=1):
            k = 2 * r + 1
            patches = F.unfold(im_s, k, padding=r).reshape(im_s.shape[0], 3, k * k, h, w)
            out = out + maps[:, r:r + 1] * (patches * ker.unsqueeze(1)).sum(2)
        return out, seeds, maps


# --- VGG_Deblur -----------------------------------------------------------------------------------------------------
def double_conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1), nn.ReLU())


class SameConv2x2(nn.Conv2d):
    def __init__(self, cin, cout):
        super().__init__(cin, cout, 2)

    def forward(self, x):
        return super().forward(F.pad(x, [0, 1, 0, 1]))


class Encoder(nn.Module):
    def __init__(self, cin, w):
        super().__init__()
        ws = [w, 2 * w, 4 * w, 8 * w, 16 * w]
        for i in range(5):
            setattr(self, f"block{i + 1}", double_conv(cin if i == 0 else ws[i - 1], ws[i]))


class VggDeblur(nn.Module):
    def __init__(self, cin=3, w=64):
        super().__init__()
        ws = [w, 2 * w, 4 * w, 8 * w, 16 * w]
        self.encoder = Encoder(cin, w)
        for i in range(4):
            hi, lo = ws[4 - i], ws[3 - i]
            setattr(self, f"up{6 + i}", nn.Sequential(nn.Upsample(scale_factor=2), SameConv2x2(hi, lo)))
            setattr(self, f"block{6 + i}", double_conv(2 * lo, lo))
        self.out = nn.Sequential(nn.Conv2d(w, 3, 3, 1, 1))

    def forward(self, x, base=None):
        skips, h = [], x
        for i in range(5):
            if i > 0:
                h = F.max_pool2d(h, 2, 2)
            h = getattr(self.encoder, f"block{i + 1}")(h)
            skips.append(h)
        for i in range(4):
            h = getattr(self, f"block{6 + i}")(torch.cat([getattr(self, f"up{6 + i}")(h), skips[3 - i]], 1))
        if base is None:
            return torch.sigmoid(self.out(h))
        b = base.clamp(1e-3, 1 - 1e-3)  # refocus's identity start: a correction of base under the sigmoid
        return torch.sigmoid(torch.log(b) - torch.log(1 - b) + self.out(h))


# --- Restormer (stock structure) --------------------------------------------------------------------------------------
class Norm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.body = nn.LayerNorm(d)

    def forward(self, x):
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Mdta(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.rand(heads, 1, 1) + 0.5)
        self.qkv = nn.Conv2d(d, 3 * d, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(3 * d, 3 * d, 3, 1, 1, groups=3 * d, bias=False)
        self.project_out = nn.Conv2d(d, d, 1, bias=False)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, 1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.temperature, -1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class Gdfn(nn.Module):
    def __init__(self, d, e):
        super().__init__()
        hid = int(d * e)
        self.project_in = nn.Conv2d(d, 2 * hid, 1, bias=False)
        self.dwconv = nn.Conv2d(2 * hid, 2 * hid, 3, 1, 1, groups=2 * hid, bias=False)
        self.project_out = nn.Conv2d(hid, d, 1, bias=False)

    def forward(self, x):
        a, b = self.dwconv(self.project_in(x)).chunk(2, 1)
        return self.project_out(F.gelu(a) * b)


class TBlock(nn.Module):
    def __init__(self, d, heads, e):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.ffn = Norm(d), Mdta(d, heads), Norm(d), Gdfn(d, e)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Resample(nn.Module):
    def __init__(self, cin, cout, down):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.PixelUnshuffle(2) if down else nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


class Restormer(nn.Module):
    def __init__(self, cin=3, d=48, blocks=(4, 6, 6, 8), refinement=4, heads=(1, 2, 4, 8), e=2.66):
        super().__init__()
        lvl = lambda dim, n, h: nn.Sequential(*[TBlock(dim, h, e) for _ in range(n)])
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(cin, d, 3, 1, 1, bias=False)
        self.encoder_level1 = lvl(d, blocks[0], heads[0])
        self.down1_2 = Resample(d, d // 2, True)
        self.encoder_level2 = lvl(2 * d, blocks[1], heads[1])
        self.down2_3 = Resample(2 * d, d, True)
        self.encoder_level3 = lvl(4 * d, blocks[2], heads[2])
        self.down3_4 = Resample(4 * d, 2 * d, True)
        self.latent = lvl(8 * d, blocks[3], heads[3])
        self.up4_3 = Resample(8 * d, 16 * d, False)
        self.reduce_chan_level3 = nn.Conv2d(8 * d, 4 * d, 1, bias=False)
        self.decoder_level3 = lvl(4 * d, blocks[2], heads[2])
        self.up3_2 = Resample(4 * d, 8 * d, False)
        self.reduce_chan_level2 = nn.Conv2d(4 * d, 2 * d, 1, bias=False)
        self.decoder_level2 = lvl(2 * d, blocks[1], heads[1])
        self.up2_1 = Resample(2 * d, 4 * d, False)
        self.decoder_level1 = lvl(2 * d, blocks[0], heads[0])
        self.refinement = lvl(2 * d, refinement, heads[0])
        self.output = nn.Conv2d(2 * d, 3, 3, 1, 1, bias=False)

    def forward(self, x, base=None):
        e1 = self.encoder_level1(self.patch_embed.proj(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        l = self.latent(self.down3_4(e3))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(l), e3], 1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1))
        return self.output(self.refinement(d1)) + (x[:, :3] if base is None else base)


# --- the whole jdrl network ------------------------------------------------------------------------------------------
def warp(img, flow, mode="bilinear"):
    """img sampled at p + flow(p), border values outside (refocus's warp, or warp_bicubic with mode="bicubic")."""
    b, _, h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) * (2 / (w - 1)) - 1
    gy = (ys + flow[:, 1]) * (2 / (h - 1)) - 1
    return F.grid_sample(img, torch.stack([gx, gy], -1), mode=mode, padding_mode="border", align_corners=True)


class Fusion(nn.Module):
    def __init__(self, ch=35, heads=5, points=4, width=32):
        super().__init__()
        self.heads, self.points = heads, points
        self.query = nn.Conv2d(3, width, 3, 1, 1)
        self.offsets = nn.Conv2d(width, heads * points * 2, 1)
        self.weights = nn.Conv2d(width, heads * points, 1)
        self.value = nn.Conv2d(ch, ch, 1)
        self.output = nn.Conv2d(ch, ch, 1)

    def forward(self, image, m):
        b, ch, h, w = m.shape
        per = ch // self.heads
        q = torch.relu(self.query(image))
        off = self.offsets(q)
        att = torch.softmax(self.weights(q).reshape(b, self.heads, self.points, h, w), 2)
        v = self.value(m)
        outs = []
        for hd in range(self.heads):
            vh, acc = v[:, hd * per:(hd + 1) * per], 0
            for k in range(self.points):
                o = (hd * self.points + k) * 2
                acc = acc + warp(vh, off[:, o:o + 2]) * att[:, hd, k:k + 1]
            outs.append(acc)
        return m + self.output(torch.cat(outs, 1))


class Se(nn.Module):
    def __init__(self, c, reduction=16):
        super().__init__()
        s = max(1, c // reduction)
        self.fc1, self.fc2 = nn.Conv2d(c, s, 1, bias=False), nn.Conv2d(s, c, 1, bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class Jdrl(nn.Module):
    def __init__(self, backbone, width, blocks=None, identity_start=False, refinement=1):
        super().__init__()
        self.identity_start = identity_start
        self.estimator = SeedNet(3, 32, 35)
        self.fusion = Fusion()
        self.channel_attention = Se(38)
        self.backbone = VggDeblur(38, width) if backbone == "unet" else Restormer(38, width, blocks, refinement)
        self.reblur = ReblurModel()

    def forward(self, y):
        est = self.estimator(y)
        x = self.channel_attention(torch.cat([y, self.fusion(y, est)], 1))
        # The residual is y itself (Restormer always; the U-Net with the identity start).
        if isinstance(self.backbone, Restormer) or self.identity_start:
            return self.backbone(x, y)
        return self.backbone(x)


def randomise(net):
    """Every parameter random (the fusion's zero starts too), so that each path matters."""
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() <= 1 and p.numel() < 8:
                p.uniform_(0.5, 1.5)
        for n, p in net.named_parameters():
            if "fusion" in n and ("offsets" in n or "weights" in n or "output" in n):
                p.uniform_(-0.2, 0.2)


def write(out_dir, name, net, inputs, config, run):
    t = {"w." + k: v.clone() for k, v in net.state_dict().items()}
    t.update(inputs)
    with torch.no_grad():
        out = run(net.double(), {k: v.double() for k, v in inputs.items()})
    t["out0"] = out.float()
    save(os.path.join(out_dir, f"{name}_twin.safetensors"), t, {"config": json.dumps(config)})


def main():
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    r = ReblurModel()
    print(f"Reblur_Model twin: {sum(p.numel() for p in r.parameters())} parameters")
    write(out_dir, "jdrl_reblur", r, {"im_s": torch.rand(2, 3, 20, 24), "im_b": torch.rand(2, 3, 20, 24)}, {},
          lambda n, i: n(i["im_s"], i["im_b"])[0])
    torch.manual_seed(1)
    u = VggDeblur().eval()
    print(f"VGG_Deblur twin: {sum(p.numel() for p in u.parameters())} parameters")
    write(out_dir, "jdrl_unet", u, {"im_b": torch.rand(1, 3, 32, 48)}, {"width": 64}, lambda n, i: n(i["im_b"]))
    torch.manual_seed(2)
    j = Jdrl("unet", 8).eval()
    randomise(j)
    write(out_dir, "jdrl_unet_net", j, {"im_b": torch.rand(1, 3, 32, 48)}, {"backbone": "unet", "width": 8},
          lambda n, i: n(i["im_b"]))
    torch.manual_seed(4)
    j = Jdrl("unet", 8, identity_start=True).eval()
    randomise(j)
    write(out_dir, "jdrl_unet_identity_net", j, {"im_b": torch.rand(1, 3, 32, 48)},
          {"backbone": "unet", "width": 8, "identity_start": True}, lambda n, i: n(i["im_b"]))
    torch.manual_seed(3)
    j = Jdrl("restormer", 8, (1, 1, 1, 1)).eval()
    randomise(j)
    write(out_dir, "jdrl_restormer_net", j, {"im_b": torch.rand(1, 3, 32, 48)},
          {"backbone": "restormer", "width": 8, "restormer_blocks": [1, 1, 1, 1], "restormer_refinement": 1},
          lambda n, i: n(i["im_b"]))


if __name__ == "__main__":
    main()
