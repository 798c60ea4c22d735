#!/usr/bin/python3
"""Write the PyTorch golden files the C++ tests compare against.

Run with Debian's python3-torch:  /usr/bin/python3 tests/golden/make_golden.py   (or `make golden`).
Each case stores its float32 inputs (in0, in1, ...), PyTorch's output computed in float64 (out), a random
output gradient (gout) and the input gradients (grad_in0, ...) as a small safetensors file. The C++ test
of the same name runs the same op with the same parameters and compares.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_min import save as save_safetensors  # noqa: E402
import twin_jdrl  # noqa: E402


def U(shape, lo=-1.0, hi=1.0, away=0.0):
    """Uniform input; `away` pushes values out of (-away, away) (kinked ops)."""
    return ("u", shape, lo, hi, away)


CASES = {}


def case(name, inputs, grads=None):
    """Register fn(*tensors) under `name`; `grads` lists the inputs that get gradients (default: all)."""
    def deco(fn):
        CASES[name] = (inputs, fn, grads)
        return fn
    return deco


# --- elementwise ------------------------------------------------------------------------------------
case("add_broadcast", [U([2, 3, 4, 5]), U([3, 1, 5])])(lambda a, b: a + b)
case("sub_broadcast", [U([2, 3, 4, 5]), U([4, 1])])(lambda a, b: a - b)
case("mul_broadcast", [U([2, 3, 4, 5]), U([1, 3, 1, 5])])(lambda a, b: a * b)
case("div_broadcast", [U([2, 3, 4, 5]), U([5], 0.5, 2.0)])(lambda a, b: a / b)
case("maximum", [U([3, 4, 5]), U([3, 4, 5])])(torch.maximum)
case("minimum", [U([3, 4, 5]), U([1, 5])])(torch.minimum)
case("exp", [U([4, 5, 6])])(torch.exp)
case("log", [U([4, 5, 6], 0.2, 3.0)])(torch.log)
case("sqrt", [U([4, 5, 6], 0.2, 3.0)])(torch.sqrt)
case("pow", [U([4, 5, 6], 0.2, 3.0)])(lambda x: torch.pow(x, 2.5))
case("abs", [U([4, 5, 6], away=0.05)])(torch.abs)
case("clamp", [U([4, 5, 6], -1, 1)])(lambda x: torch.clamp(x, -0.5, 0.5))
case("relu", [U([4, 5, 6], away=0.05)])(torch.relu)
case("leaky_relu", [U([4, 5, 6], away=0.05)])(lambda x: F.leaky_relu(x, 0.1))
case("sigmoid", [U([4, 5, 6], -4, 4)])(torch.sigmoid)
case("tanh", [U([4, 5, 6], -3, 3)])(torch.tanh)
case("sin", [U([4, 5, 6], -4, 4)])(torch.sin)
case("cos", [U([4, 5, 6], -4, 4)])(torch.cos)
case("gelu", [U([4, 5, 6], -3, 3)])(F.gelu)
case("softplus", [U([4, 5, 6], -3, 3)])(F.softplus)

# --- reductions and softmax -----------------------------------------------------------------------------
case("sum_dims", [U([3, 4, 5, 6])])(lambda x: x.sum(dim=(0, 2)))
case("mean_keepdim", [U([3, 4, 5, 6])])(lambda x: x.mean(dim=(1, 3), keepdim=True))
case("max_dim", [U([3, 7, 5])])(lambda x: x.max(dim=1).values)
case("softmax", [U([3, 7, 5], -3, 3)])(lambda x: torch.softmax(x, dim=1))
case("log_softmax", [U([4, 9], -3, 3)])(lambda x: torch.log_softmax(x, dim=-1))

# --- matrix products --------------------------------------------------------------------------------
case("matmul", [U([13, 17]), U([17, 11])])(torch.matmul)
case("bmm", [U([3, 13, 17]), U([3, 17, 11])])(torch.bmm)
case("matmul_shared", [U([3, 13, 17]), U([17, 11])])(torch.matmul)
case("matmul_transposed", [U([17, 13]), U([11, 17])])(lambda a, b: a.t() @ b.t())
case("linear", [U([2, 5, 17]), U([11, 17]), U([11])])(F.linear)

# --- convolutions ---------------------------------------------------------------------------------------
case("conv2d_3x3", [U([2, 3, 9, 10]), U([4, 3, 3, 3]), U([4])])(lambda x, w, b: F.conv2d(x, w, b, padding=1))
case("conv2d_stride2", [U([2, 3, 11, 10]), U([5, 3, 3, 3]), U([5])])(
    lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1))
case("conv2d_dilated", [U([1, 2, 12, 11]), U([3, 2, 3, 3])])(lambda x, w: F.conv2d(x, w, None, padding=2, dilation=2))
case("conv2d_groups", [U([2, 4, 8, 9]), U([6, 2, 3, 3]), U([6])])(
    lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2))
case("conv2d_1x1", [U([2, 5, 6, 7]), U([3, 5, 1, 1]), U([3])])(lambda x, w, b: F.conv2d(x, w, b))
case("conv2d_5x5_rect", [U([1, 3, 10, 13]), U([2, 3, 5, 3]), U([2])])(
    lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(2, 1)))
case("conv_transpose2d", [U([2, 4, 5, 6]), U([4, 3, 4, 4]), U([3])])(
    lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1))
case("conv_transpose2d_groups", [U([1, 4, 5, 5]), U([4, 3, 3, 3]), U([6])])(
    lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2))

# --- pooling and resampling -----------------------------------------------------------------------------
case("max_pool2d", [U([2, 3, 9, 10])])(lambda x: F.max_pool2d(x, 3, 2, 1))
case("avg_pool2d", [U([2, 3, 8, 10])])(lambda x: F.avg_pool2d(x, 2, 2))
case("avg_pool2d_pad", [U([2, 3, 9, 10])])(lambda x: F.avg_pool2d(x, 3, 2, 1))
case("global_avg_pool", [U([2, 3, 5, 6])])(lambda x: F.adaptive_avg_pool2d(x, 1))
case("resize_bilinear_up", [U([2, 3, 5, 7])])(
    lambda x: F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=False))
case("resize_bilinear_down", [U([2, 3, 12, 9])])(
    lambda x: F.interpolate(x, size=(5, 4), mode="bilinear", align_corners=False))
case("resize_bilinear_align", [U([1, 2, 5, 6])])(
    lambda x: F.interpolate(x, size=(9, 8), mode="bilinear", align_corners=True))
case("upsample_nearest", [U([2, 3, 4, 5])])(lambda x: F.interpolate(x, size=(8, 12), mode="nearest"))
case("upsample_nearest_down", [U([1, 2, 9, 8])])(lambda x: F.interpolate(x, size=(4, 3), mode="nearest"))
case("pad_zeros", [U([2, 3, 5, 6])])(lambda x: F.pad(x, (1, 2, 3, 0)))
case("pad_reflect", [U([2, 3, 5, 6])])(lambda x: F.pad(x, (2, 3, 1, 4), mode="reflect"))
case("pad_replicate", [U([2, 3, 5, 6])])(lambda x: F.pad(x, (2, 3, 1, 4), mode="replicate"))
case("grid_sample", [U([2, 3, 6, 7]), U([2, 5, 4, 2], -1.1, 1.1)])(
    lambda x, g: F.grid_sample(x, g, mode="bilinear", padding_mode="zeros", align_corners=False))
case("grid_sample_border_align", [U([1, 2, 6, 7]), U([1, 5, 4, 2], -1.2, 1.2)])(
    lambda x, g: F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=True))
case("warp_bicubic", [U([2, 3, 7, 9]), U([2, 2, 7, 9], -2.5, 2.5)], grads=[0])(
    lambda x, flow: twin_jdrl.warp(x, flow, mode="bicubic"))

# --- shape ops ------------------------------------------------------------------------------------------
case("permute", [U([2, 3, 4, 5])])(lambda x: x.permute(2, 0, 3, 1).contiguous())
case("slice_step", [U([4, 9, 5])])(lambda x: x[:, 1:8:3, :].contiguous())
case("concat", [U([2, 3, 4]), U([2, 5, 4]), U([2, 1, 4])])(lambda a, b, c: torch.cat([a, b, c], dim=1))

# --- normalisation --------------------------------------------------------------------------------------
case("layer_norm_channels", [U([2, 6, 4, 5]), U([6]), U([6])])(
    lambda x, w, b: (lambda m, v: (x - m) / torch.sqrt(v + 1e-5) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1))(
        x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)))
case("layer_norm_last", [U([7, 10]), U([10]), U([10])])(lambda x, w, b: F.layer_norm(x, (10,), w, b, 1e-5))
case("batch_norm_train", [U([4, 3, 5, 6]), U([3]), U([3])])(
    lambda x, w, b: F.batch_norm(x, torch.zeros(3, dtype=x.dtype), torch.ones(3, dtype=x.dtype), w, b,
                                 training=True, momentum=0.1, eps=1e-5))
case("batch_norm_eval", [U([4, 3, 5, 6]), U([3], 0.5, 1.5), U([3]), U([3]), U([3], 0.5, 2.0)], grads=[0, 1, 2])(
    lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5))

# --- separable filtering (the taps are repeated in tests/test_ops.cpp) ------------------------------------
SEP_KH = [0.1, 0.2, 0.4, 0.2, 0.1]
SEP_KW = [0.2, 0.5, 0.3]
case("separable_filter", [U([2, 3, 12, 14])])(
    lambda x: F.conv2d(x.reshape(6, 1, 12, 14),
                       torch.outer(torch.tensor(SEP_KH, dtype=x.dtype), torch.tensor(SEP_KW, dtype=x.dtype))[None, None])
    .reshape(2, 3, 8, 12))

# --- frequency ------------------------------------------------------------------------------------------
case("fft2", [U([2, 3, 8, 16])])(lambda x: torch.view_as_real(torch.fft.fft2(x)).contiguous())
case("fft2_odd", [U([1, 2, 6, 5])])(lambda x: torch.view_as_real(torch.fft.fft2(x)).contiguous())


# --- beyond single ops: optimizers, schedules, clipping, a whole torch model -----------------------------
def optimizer_cases():
    """Five steps of each optimizer on loss = sum((p0 - t0)^2) + sum(sin(p1) * t1)."""
    rng = np.random.RandomState(7)
    init = {"p0": rng.uniform(-1, 1, [5]).astype(np.float32), "p1": rng.uniform(-1, 1, [3, 2]).astype(np.float32),
            "t0": rng.uniform(-1, 1, [5]).astype(np.float32), "t1": rng.uniform(-1, 1, [3, 2]).astype(np.float32)}
    configs = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
        "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        "sgd_dampening": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.8, dampening=0.3),
        "adam": lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.9, 0.99), weight_decay=0.01),
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.05, betas=(0.9, 0.999), weight_decay=0.1),
    }
    data = dict(init)
    for name, make in configs.items():
        p0 = torch.tensor(init["p0"], dtype=torch.float64, requires_grad=True)
        p1 = torch.tensor(init["p1"], dtype=torch.float64, requires_grad=True)
        t0, t1 = torch.tensor(init["t0"], dtype=torch.float64), torch.tensor(init["t1"], dtype=torch.float64)
        opt = make([p0, p1])
        for _ in range(5):
            opt.zero_grad()
            loss = ((p0 - t0) ** 2).sum() + (torch.sin(p1) * t1).sum()
            loss.backward()
            opt.step()
        data[name + ".p0"] = p0.detach().numpy()
        data[name + ".p1"] = p1.detach().numpy()
    save_safetensors(os.path.join(HERE, "optimizers.safetensors"), data)

    # Learning-rate schedules, 26 steps each.
    def lrs(make):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = make(opt)
        out = []
        for _ in range(26):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return np.array(out, dtype=np.float32)
    S = torch.optim.lr_scheduler
    save_safetensors(os.path.join(HERE, "schedules.safetensors"), {
        "step": lrs(lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
        "multistep": lrs(lambda o: S.MultiStepLR(o, milestones=[5, 12, 20], gamma=0.3)),
        "cosine": lrs(lambda o: S.CosineAnnealingLR(o, T_max=25, eta_min=0.001)),
        "exponential": lrs(lambda o: S.ExponentialLR(o, gamma=0.9)),
    })

    # Gradient clipping.
    g1, g2 = rng.uniform(-1, 1, [4]).astype(np.float32), rng.uniform(-1, 1, [3, 3]).astype(np.float32)
    a = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    a.grad, b.grad = torch.tensor(g1, dtype=torch.float64), torch.tensor(g2, dtype=torch.float64)
    norm = torch.nn.utils.clip_grad_norm_([a, b], max_norm=0.7)
    save_safetensors(os.path.join(HERE, "clip_grad_norm.safetensors"),
                     {"g1": g1, "g2": g2, "norm": np.array([norm.item()], np.float32),
                      "clipped1": a.grad.numpy(), "clipped2": b.grad.numpy()})


def torch_model():
    """The small model that tests/test_engine.cpp rebuilds from refocus layers."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 2, 3, padding=1, padding_mode="reflect"))


def torch_model_case():
    """A state dict written by PyTorch (with BatchNorm's int64 counter), plus an input and its output."""
    torch.manual_seed(3)
    m = torch_model()
    m.train()
    with torch.no_grad():
        for _ in range(3):  # give the running statistics non-trivial values
            m(torch.randn(4, 3, 6, 7) * 2 + 0.5)
    m.eval()
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        y = m(x)
    save_safetensors(os.path.join(HERE, "torch_model.safetensors"), m.state_dict(), {"written_by": "torch"})
    save_safetensors(os.path.join(HERE, "torch_model_io.safetensors"), {"x": x, "y": y})


def metric_cases():
    """PSNR / SSIM / MAE from scikit-image and NumPy on a few image pairs (float and 8-bit)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    from scipy.ndimage import gaussian_filter
    rng = np.random.RandomState(11)
    data = {}
    for k, (c, h, w, noise) in enumerate([(3, 48, 40, 0.05), (3, 33, 57, 0.2), (1, 40, 40, 0.01)]):
        ref = np.clip(gaussian_filter(rng.uniform(0, 1, (c, h, w)), sigma=(0, 2, 2)) * 2 - 0.5, 0, 1)
        pred = np.clip(ref + rng.normal(0, noise, ref.shape) + 0.02, 0, 1)
        if k == 1:  # an 8-bit pair
            ref, pred = np.round(ref * 255) / 255, np.round(pred * 255) / 255
        kw = dict(channel_axis=0) if c > 1 else {}
        r, p_ = (ref, pred) if c > 1 else (ref[0], pred[0])
        data[f"pair{k}.ref"] = ref.astype(np.float32)
        data[f"pair{k}.pred"] = pred.astype(np.float32)
        # the metrics are computed on the float32 values stored above
        r, p_ = r.astype(np.float32).astype(np.float64), p_.astype(np.float32).astype(np.float64)
        mse = np.mean((r - p_) ** 2)
        data[f"pair{k}.psnr_numpy"] = np.array([10 * np.log10(1.0 / mse)], np.float64)
        data[f"pair{k}.psnr"] = np.array([peak_signal_noise_ratio(r, p_, data_range=1.0)], np.float64)
        data[f"pair{k}.ssim"] = np.array([structural_similarity(r, p_, data_range=1.0, **kw)], np.float64)
        data[f"pair{k}.ssim_gaussian"] = np.array([structural_similarity(
            r, p_, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, **kw)], np.float64)
        data[f"pair{k}.mae"] = np.array([np.mean(np.abs(r - p_))], np.float64)
    save_safetensors(os.path.join(HERE, "metrics.safetensors"), data)


LPIPS_SHAPES = [("net.slice1.0", 64, 3, 11), ("net.slice2.3", 192, 64, 5), ("net.slice3.6", 384, 192, 3),
                ("net.slice4.8", 256, 384, 3), ("net.slice5.10", 256, 256, 3)]


def lpips_formula_weights():
    """LPIPS-AlexNet weights from a formula that tests/test_eval.cpp evaluates too (the real weights are 10 MB
    and cannot be downloaded here): tensor t, element i -> value."""
    w = {}
    t = 0
    for name, co, ci, k in LPIPS_SHAPES:
        i = np.arange(co * ci * k * k, dtype=np.float64)
        w[name + ".weight"] = (0.05 * np.sin(0.37 * i + 1.3 * t)).reshape(co, ci, k, k)
        w[name + ".bias"] = 0.01 * np.cos(0.5 * np.arange(co) + t)
        t += 1
    for j, (_, co, _, _) in enumerate(LPIPS_SHAPES):
        w[f"lin{j}.model.1.weight"] = (0.1 * (1.2 + np.sin(0.11 * np.arange(co) + j))).reshape(1, co, 1, 1)
    return w


def lpips_case():
    """LPIPS (AlexNet) as the lpips package computes it, with formula weights."""
    from scipy.ndimage import gaussian_filter
    w = {k: torch.tensor(v) for k, v in lpips_formula_weights().items()}
    rng = np.random.RandomState(21)
    a = np.clip(gaussian_filter(rng.uniform(0, 1, (2, 3, 64, 64)), sigma=(0, 0, 1.5, 1.5)) * 2 - 0.5, 0, 1)
    b = np.clip(a + rng.normal(0, 0.08, a.shape), 0, 1)
    a, b = a.astype(np.float32), b.astype(np.float32)
    shift = torch.tensor([-.030, -.088, -.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450], dtype=torch.float64).view(1, 3, 1, 1)

    def feats(x):
        x = (2 * x - 1 - shift) / scale
        out = []
        for j, (name, _, _, k) in enumerate(LPIPS_SHAPES):
            if j in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            stride, pad = (4, 2) if j == 0 else (1, k // 2)
            x = torch.relu(F.conv2d(x, w[name + ".weight"], w[name + ".bias"], stride=stride, padding=pad))
            out.append(x)
        return out

    fa, fb = feats(torch.tensor(a, dtype=torch.float64)), feats(torch.tensor(b, dtype=torch.float64))
    total = 0
    for j in range(5):
        na = fa[j] / (torch.sqrt((fa[j] ** 2).sum(1, keepdim=True)) + 1e-10)
        nb = fb[j] / (torch.sqrt((fb[j] ** 2).sum(1, keepdim=True)) + 1e-10)
        total = total + F.conv2d((na - nb) ** 2, w[f"lin{j}.model.1.weight"]).mean(dim=(1, 2, 3))
    save_safetensors(os.path.join(HERE, "lpips.safetensors"), {"a": a, "b": b, "distance": total.numpy()})


def make_input(spec, rng):
    _, shape, lo, hi, away = spec
    a = rng.uniform(lo, hi, size=shape).astype(np.float32)
    if away > 0:
        a = np.where(np.abs(a) < away, np.where(a < 0, a - away, a + away), a).astype(np.float32)
    return a


def layer_twins():
    """The shared layers' twins (tests/golden/twin_layers.py: layer_lstm_cell, layer_conv_lstm_cell, ...)."""
    import twin_layers
    twin_layers.main()


def main():
    only = set(sys.argv[1:])
    for i, (name, (specs, fn, grads)) in enumerate(sorted(CASES.items())):
        if only and name not in only:
            continue
        rng = np.random.RandomState(1000 + i)
        arrays = [make_input(s, rng) for s in specs]
        grads = list(range(len(arrays))) if grads is None else grads
        ts = [torch.tensor(a, dtype=torch.float64, requires_grad=(k in grads)) for k, a in enumerate(arrays)]
        out = fn(*ts)
        gout = rng.uniform(-1, 1, size=out.shape).astype(np.float32)
        out.backward(torch.tensor(gout, dtype=torch.float64))
        data = {f"in{k}": a for k, a in enumerate(arrays)}
        data["out"] = out.detach().numpy()
        data["gout"] = gout
        for k in grads:
            data[f"grad_in{k}"] = ts[k].grad.numpy()
        save_safetensors(os.path.join(HERE, name + ".safetensors"), data,
                         {"torch": torch.__version__, "case": name})
    if not only:
        optimizer_cases()
        torch_model_case()
        metric_cases()
        lpips_case()
        layer_twins()
    print(f"wrote {len(CASES) if not only else len(only)} op golden files and the extras to {HERE}")


if __name__ == "__main__":
    main()
