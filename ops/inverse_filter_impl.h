// Kernel layer of ops/inverse_filter.h.
#pragma once
#include <cstdint>

#include "engine/error.h"  // RF_HD

namespace rf {

struct InverseFilterGeometry {
  int64_t b = 0, c = 0, h = 0, w = 0;
  int64_t o = 0;       // output channels (at most kMaxOut)
  int64_t groups = 0;  // G (without the null group)
  int64_t bases = 0;   // N
  int64_t kernel_floats = 0;  // length of the flat kernel array
  const int32_t* size = nullptr;    // [G] kernel side of group g + 1
  const int32_t* offset = nullptr;  // [G] start of group g + 1's kernels in the flat array
  static constexpr int64_t kMaxOut = 8;
  RF_HD int64_t weight_cols() const { return (groups + 1) * c * bases; }
  // Column of the 1x1 mixing weight for group g (1..G), colour ch, basis n.
  RF_HD int64_t col(int64_t g, int64_t ch, int64_t n) const { return (g * c + ch) * bases + n; }
};

#define RF_INVERSE_FILTER_KERNELS                                                                             \
  void inverse_filter_forward(const InverseFilterGeometry& g, const float* x, const float* k, const float* mu, \
                              const float* omega, const float* weight, const float* bias, float* out);       \
  /* Every gradient output is written in full (dx, dk, dmu, domega, dweight); the bias gradient is the */     \
  /* caller's (a plain sum of gout). */                                                                      \
  void inverse_filter_backward(const InverseFilterGeometry& g, const float* x, const float* k, const float* mu,  \
                               const float* omega, const float* weight, const float* gout, float* dx, float* dk, \
                               float* dmu, float* domega, float* dweight);

namespace cpu {
RF_INVERSE_FILTER_KERNELS
}
namespace gpu {
RF_INVERSE_FILTER_KERNELS
}
#undef RF_INVERSE_FILTER_KERNELS

}  // namespace rf
