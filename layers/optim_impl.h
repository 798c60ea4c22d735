// Fused optimizer updates (one pass over each parameter); the per-element rules are shared by both devices.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/error.h"

namespace rf {

#define RF_OPTIM_KERNELS                                                                                       \
  void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, \
                   float eps, float weight_decay, bool decoupled, float bias_correction1, float bias_correction2); \
  void sgd_update(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, float dampening,   \
                  float weight_decay, bool nesterov, bool first_step);

namespace cpu {
RF_OPTIM_KERNELS
}
namespace gpu {
RF_OPTIM_KERNELS
}
#undef RF_OPTIM_KERNELS

// torch.optim.Adam / AdamW, one element.
RF_HD void adam_one(float& p, float g, float& m, float& v, float lr, float b1, float b2, float eps, float wd,
                    bool decoupled, float bc1, float bc2) {
  if (wd != 0.f) {
    if (decoupled)
      p *= 1.f - lr * wd;
    else
      g += wd * p;
  }
  m = b1 * m + (1.f - b1) * g;
  v = b2 * v + (1.f - b2) * g * g;
  float denom = sqrtf(v) / sqrtf(bc2) + eps;
  p -= (lr / bc1) * m / denom;
}

// torch.optim.SGD, one element.
RF_HD void sgd_one(float& p, float g, float& buf, float lr, float momentum, float dampening, float wd, bool nesterov,
                   bool first) {
  if (wd != 0.f) g += wd * p;
  if (momentum != 0.f) {
    buf = first ? g : momentum * buf + (1.f - dampening) * g;
    g = nesterov ? g + momentum * buf : buf;
  }
  p -= lr * g;
}

}  // namespace rf
