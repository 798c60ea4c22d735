#pragma once
#include <cstdint>

namespace rf {

// One pass of 1-D correlation along the rows (axis 1 of [planes, h, w]: "v") or the columns ("h").
// valid: out[p, i] = sum_k in[p, i + k] * taps[k]; its adjoint (full): in_grad[p, j] = sum_k out_grad[p, j - k] * taps[k].
#define RF_SEPARABLE_KERNELS                                                                                   \
  void filter_valid(const float* in, float* out, int64_t planes, int64_t h, int64_t w, const float* taps,      \
                    int64_t k, bool vertical);                                                                \
  void filter_full(const float* in, float* out, int64_t planes, int64_t h_out, int64_t w_out, const float* taps, \
                   int64_t k, bool vertical);

namespace cpu {
RF_SEPARABLE_KERNELS
}
namespace gpu {
RF_SEPARABLE_KERNELS
}
#undef RF_SEPARABLE_KERNELS

}  // namespace rf
