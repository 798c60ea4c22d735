// Kernel layer of ops/isotropic_reblur.h.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/error.h"

namespace rf {

struct ReblurGeometry {
  int64_t b = 0, c = 0, h = 0, w = 0;
};

// Seed interpolation for tap (dy, dx) of the kernel of radius r: logit = w_lo |seed[lo]| + w_hi |seed[hi]| inside
// the radius, 0 outside (released code: a[floor d] (ceil d - d) + a[ceil d] (d - floor d); a[d] when d is whole).
struct TapWeights {
  int lo = 0, hi = 0;
  float w_lo = 0.f, w_hi = 0.f;
  bool inside = false;
};

RF_HD TapWeights tap_weights(int dy, int dx, int r) {
  TapWeights t;
  const float d = sqrtf((float)(dy * dy + dx * dx));
  if (d > (float)r) return t;
  t.inside = true;
  const float fl = floorf(d), ce = ceilf(d);
  t.lo = (int)fl;
  t.hi = (int)ce;
  if (fl == ce) {
    t.w_lo = 1.f;
  } else {
    t.w_lo = ce - d;
    t.w_hi = d - fl;
  }
  return t;
}

// First seed channel of the kernel of radius r (1..7): 2 + 3 + ... + r.
RF_HD int seed_offset(int r) { return (r - 1) * (r + 2) / 2; }

#define RF_REBLUR_KERNELS                                                                                        \
  /* out [B, C, H, W]; lse [B, 7, H, W]: each kernel's log-sum-exp, kept for the backward */                     \
  void reblur_forward(const ReblurGeometry& g, const float* sharp, const float* seeds, const float* maps, float* out, \
                      float* lse);                                                                               \
  void reblur_backward(const ReblurGeometry& g, const float* sharp, const float* seeds, const float* maps,          \
                       const float* lse, const float* gout, float* dsharp, float* dseeds, float* dmaps);

namespace cpu {
RF_REBLUR_KERNELS
}
namespace gpu {
RF_REBLUR_KERNELS
}
#undef RF_REBLUR_KERNELS

}  // namespace rf
