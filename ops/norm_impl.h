// Kernel layer of the normalisations. Tensors are seen as [outer, D, inner]; a "row" is one
// (outer, inner) pair (layer norm normalises along D within a row), a "channel" is one index of D
// (batch norm normalises over all rows of a channel).
#pragma once
#include <cstdint>

namespace rf {

struct NormGeometry {
  int64_t outer, d, inner;
};

#define RF_NORM_KERNELS                                                                                        \
  /* per row: mean, rstd = 1/sqrt(var + eps); y = (x - mean) * rstd * w + b (w, b may be null) */             \
  void layer_norm_forward(const NormGeometry& g, const float* x, const float* w, const float* b, float* y,     \
                          float* mean, float* rstd, float eps);                                                \
  void layer_norm_backward_input(const NormGeometry& g, const float* x, const float* w, const float* mean,     \
                                 const float* rstd, const float* gy, float* gx);                               \
  /* per channel: mean and biased variance over all rows */                                                   \
  void channel_stats(const NormGeometry& g, const float* x, float* mean, float* var);                          \
  /* y = (x - mean[c]) * rstd[c] * w[c] + b[c] */                                                              \
  void channel_affine(const NormGeometry& g, const float* x, const float* mean, const float* rstd, const float* w, \
                      const float* b, float* y);                                                               \
  /* per channel: sum_g = sum(gy), sum_gx = sum(gy * xhat); xhat uses per-channel or per-row statistics */     \
  void channel_grad_sums(const NormGeometry& g, const float* x, const float* mean, const float* rstd,          \
                         bool stats_per_channel, const float* gy, float* sum_g, float* sum_gx);                \
  /* gx = w[c] * rstd[c] * (gy - (sum_g[c] + xhat * sum_gx[c]) / count); sums may be null (evaluation mode) */ \
  void batch_norm_backward_input(const NormGeometry& g, const float* x, const float* mean, const float* rstd,   \
                                 const float* w, const float* gy, const float* sum_g, const float* sum_gx, float* gx);

namespace cpu {
RF_NORM_KERNELS
}
namespace gpu {
RF_NORM_KERNELS
}
#undef RF_NORM_KERNELS

}  // namespace rf
