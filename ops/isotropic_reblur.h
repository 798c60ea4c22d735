// The reblurring operator of JDRL (paper 004, Eq. 4-6), fused: per-pixel isotropic kernels of sizes 3, 5, ..., 15
// built from seeds, applied to a sharp image and mixed by per-pixel weight maps — without materialising the
// kernels or the seven blurred copies (the naive form needs ~15 GB at DPDD resolution).
//
//   kernel n (radius n, size 2n+1) at pixel p: logit of tap t at distance d = |t| is 0 beyond the radius, else the
//   linear interpolation of |seed| at floor(d) and ceil(d) (seeds of group n: n + 1 values); a softmax over all
//   (2n+1)^2 taps (the zeros outside the radius included, as the released code does).
//   out[c, p] = maps[0, p] sharp[c, p] + sum_{n=1..7} maps[n, p] sum_t k_n(p)[t] sharp[c, p + t]   (zero padding)
// One kernel per pixel, shared by the colours.
#pragma once
#include "engine/tensor.h"

namespace rf {

constexpr int64_t kReblurSizes = 7;   // kernel sizes 3, 5, ..., 15
constexpr int64_t kReblurSeeds = 35;  // 2 + 3 + ... + 8

// sharp [B, C, H, W], seeds [B, 35, H, W] (raw), maps [B, 8, H, W] (already normalised, e.g. by a softmax)
// -> [B, C, H, W]. Differentiable in all three.
Tensor isotropic_reblur(const Tensor& sharp, const Tensor& seeds, const Tensor& maps);

// The same built the naive way (every pixel's kernels as a tensor, every tap as a shifted image): the oracle.
Tensor isotropic_reblur_unfused(const Tensor& sharp, const Tensor& seeds, const Tensor& maps);

}  // namespace rf
