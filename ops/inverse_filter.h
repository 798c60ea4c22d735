// INIKNet's inverse filtering (paper 003), fused: every colour is filtered by every kernel of every size group,
// weighted per pixel by the group's scale weight mu and the kernel's basis weight omega, and mixed by a 1x1
// convolution — without materialising the (B, groups x colours x bases, H, W) tensor the unfused form needs
// (1.8 GB at 1680x1120 for INIKNet's 240 channels).
//
//   out[b, o, p] = bias[o] + sum_{g >= 1, n, c} weight[o, (g C + c) N + n] mu[b, g, p] omega[b, n, p] (k_{g,n} * x[b, c])(p)
//
// k_{g,n} * x is a cross-correlation with zero padding (s_g / 2), s_g odd. Group 0 is INIKNet's "null" group: it
// filters nothing (its mu soaks up softmax mass, its weight columns multiply zeros).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace rf {

struct InverseFilterShape {
  std::vector<int64_t> sizes;  // kernel side of groups 1..G (odd)
  int64_t bases = 10;          // N kernels per group
  int64_t kernel_floats() const;  // sum_g N s_g^2: the length of the flat kernel tensor
};

// x [B, C, H, W]; kernels [sum_g N s_g^2] (group by group, kernel by kernel, row-major); mu [B, G + 1, H, W];
// omega [B, N, H, W]; weight [O, (G + 1) C N]; bias [O] (or undefined) -> [B, O, H, W].
// Differentiable in all of them; the backward recomputes the filtered planes instead of storing them.
Tensor inverse_filter(const Tensor& x, const Tensor& kernels, const InverseFilterShape& shape, const Tensor& mu,
                      const Tensor& omega, const Tensor& weight, const Tensor& bias);

// The same computed the unfused way, with the (B, (G + 1) C N, H, W) tensor (the oracle of the tests).
Tensor inverse_filter_unfused(const Tensor& x, const Tensor& kernels, const InverseFilterShape& shape, const Tensor& mu,
                              const Tensor& omega, const Tensor& weight, const Tensor& bias);

}  // namespace rf
