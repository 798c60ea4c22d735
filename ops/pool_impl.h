// Kernel layer of pooling. Backward passes are gathers: each input pixel visits the few windows that
// contain it, so they need no atomics and are deterministic.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/error.h"

namespace rf {

struct PoolGeometry {
  int64_t planes, h, w, kernel, stride, pad, h_out, w_out;
};

// Output windows along one axis that contain input coordinate i: [lo, hi].
RF_HD void pool_windows(int64_t i, int64_t pad, int64_t kernel, int64_t stride, int64_t n_out, int64_t& lo, int64_t& hi) {
  int64_t a = i + pad - kernel + 1;
  lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  hi = (i + pad) / stride;
  if (hi > n_out - 1) hi = n_out - 1;
}

#define RF_POOL_KERNELS                                                                                \
  /* arg: argmax within the plane (iy * w + ix) */                                                      \
  void max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* arg);                 \
  void max_pool_backward(const PoolGeometry& g, const float* gy, const int32_t* arg, float* gx);        \
  void avg_pool_forward(const PoolGeometry& g, const float* x, float* y);                               \
  void avg_pool_backward(const PoolGeometry& g, const float* gy, float* gx);

namespace cpu {
RF_POOL_KERNELS
}
namespace gpu {
RF_POOL_KERNELS
}
#undef RF_POOL_KERNELS

// The per-element bodies, shared by both devices.
RF_HD void max_pool_one(const PoolGeometry& g, const float* x, float* y, int32_t* arg, int64_t i) {
  int64_t ox = i % g.w_out, oy = (i / g.w_out) % g.h_out, p = i / (g.w_out * g.h_out);
  const float* plane = x + p * g.h * g.w;
  float best = -INFINITY;
  int32_t best_at = -1;
  for (int64_t ky = 0; ky < g.kernel; ++ky) {
    int64_t iy = oy * g.stride - g.pad + ky;
    if (iy < 0 || iy >= g.h) continue;
    for (int64_t kx = 0; kx < g.kernel; ++kx) {
      int64_t ix = ox * g.stride - g.pad + kx;
      if (ix < 0 || ix >= g.w) continue;
      float v = plane[iy * g.w + ix];
      if (v > best || best_at < 0 || v != v) {  // NaN propagates, as in PyTorch
        best = v;
        best_at = (int32_t)(iy * g.w + ix);
      }
    }
  }
  y[i] = best;
  arg[i] = best_at;
}

RF_HD void max_pool_grad_one(const PoolGeometry& g, const float* gy, const int32_t* arg, float* gx, int64_t i) {
  int64_t ix = i % g.w, iy = (i / g.w) % g.h, p = i / (g.w * g.h);
  int64_t y0, y1, x0, x1;
  pool_windows(iy, g.pad, g.kernel, g.stride, g.h_out, y0, y1);
  pool_windows(ix, g.pad, g.kernel, g.stride, g.w_out, x0, x1);
  float acc = 0.f;
  for (int64_t oy = y0; oy <= y1; ++oy)
    for (int64_t ox = x0; ox <= x1; ++ox) {
      int64_t o = (p * g.h_out + oy) * g.w_out + ox;
      if (arg[o] == (int32_t)(iy * g.w + ix)) acc += gy[o];
    }
  gx[i] = acc;
}

RF_HD void avg_pool_one(const PoolGeometry& g, const float* x, float* y, int64_t i) {
  int64_t ox = i % g.w_out, oy = (i / g.w_out) % g.h_out, p = i / (g.w_out * g.h_out);
  const float* plane = x + p * g.h * g.w;
  float acc = 0.f;
  for (int64_t ky = 0; ky < g.kernel; ++ky) {
    int64_t iy = oy * g.stride - g.pad + ky;
    if (iy < 0 || iy >= g.h) continue;
    for (int64_t kx = 0; kx < g.kernel; ++kx) {
      int64_t ix = ox * g.stride - g.pad + kx;
      if (ix >= 0 && ix < g.w) acc += plane[iy * g.w + ix];
    }
  }
  y[i] = acc / (float)(g.kernel * g.kernel);
}

RF_HD void avg_pool_grad_one(const PoolGeometry& g, const float* gy, float* gx, int64_t i) {
  int64_t ix = i % g.w, iy = (i / g.w) % g.h, p = i / (g.w * g.h);
  int64_t y0, y1, x0, x1;
  pool_windows(iy, g.pad, g.kernel, g.stride, g.h_out, y0, y1);
  pool_windows(ix, g.pad, g.kernel, g.stride, g.w_out, x0, x1);
  float acc = 0.f;
  for (int64_t oy = y0; oy <= y1; ++oy)
    for (int64_t ox = x0; ox <= x1; ++ox) acc += gy[(p * g.h_out + oy) * g.w_out + ox];
  gx[i] = acc / (float)(g.kernel * g.kernel);
}

}  // namespace rf
