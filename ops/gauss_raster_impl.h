// Kernel layer of the blob rasterizer: the per-blob frame and the per-pixel formulas, shared by the
// CPU reference and the CUDA kernels.
//
// In the blob's rotated frame, t1 = (cos th dx + sin th dy) / s1 and t2 = (-sin th dx + cos th dy) / s2,
// and q = t1^2 + t2^2 = d^T Sigma^-1 d. Writing the Gaussian through (t1, t2) instead of through the
// covariance entries gives every derivative in closed form (no symmetric off-diagonal to count twice):
//   dq/ddx = 2 t1 cos/s1 - 2 t2 sin/s2     dq/ddy = 2 t1 sin/s1 + 2 t2 cos/s2     (du = -dd)
//   dq/dth = 2 t1 t2 (s2/s1 - s1/s2)       dq/ds1 = -2 t1^2 / s1                 dq/ds2 = -2 t2^2 / s2
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/error.h"

namespace rf {

constexpr int kRasterTile = 16;  // tile side in pixels (also the CUDA block side)

struct RasterGeometry {
  int64_t n, h, w;
  float sigmas = 3.f;  // each blob reaches to its `sigmas`-sigma ellipse (q <= sigmas^2)
  RF_HD int64_t tiles_x() const { return (w + kRasterTile - 1) / kRasterTile; }
  RF_HD int64_t tiles_y() const { return (h + kRasterTile - 1) / kRasterTile; }
};

struct BlobFrame {
  float cx, cy;
  float a, b, c, d;    // t1 = a dx + b dy, t2 = c dx + d dy
  float q_max;         // sigmas^2
  int x0, x1, y0, y1;  // pixels whose centres may lie inside the 3-sigma ellipse (inclusive; empty if x0 > x1)
};

RF_HD BlobFrame blob_frame(const float* means, const float* theta, const float* scales, int64_t i, int64_t h,
                           int64_t w, float sigmas) {
  BlobFrame f;
  f.q_max = sigmas * sigmas;
  f.cx = means[2 * i];
  f.cy = means[2 * i + 1];
  float ct = cosf(theta[i]), st = sinf(theta[i]);
  float s1 = scales[2 * i], s2 = scales[2 * i + 1];
  f.a = ct / s1;
  f.b = st / s1;
  f.c = -st / s2;
  f.d = ct / s2;
  // Half extents of the ellipse's bounding box: sigmas * sqrt(Sigma_xx), sigmas * sqrt(Sigma_yy).
  float ex = sigmas * sqrtf(s1 * s1 * ct * ct + s2 * s2 * st * st);
  float ey = sigmas * sqrtf(s1 * s1 * st * st + s2 * s2 * ct * ct);
  float x0 = ceilf(f.cx - ex - 0.5f), x1 = floorf(f.cx + ex - 0.5f);
  float y0 = ceilf(f.cy - ey - 0.5f), y1 = floorf(f.cy + ey - 0.5f);
  // Clamp in float first: a runaway blob must not overflow the int conversion.
  f.x0 = (int)fmaxf(x0, 0.f);
  f.x1 = (int)fminf(x1, (float)(w - 1));
  f.y0 = (int)fmaxf(y0, 0.f);
  f.y1 = (int)fminf(y1, (float)(h - 1));
  if (!(s1 > 0.f && s2 > 0.f) || x0 > (float)(w - 1) || y0 > (float)(h - 1) || x1 < 0.f || y1 < 0.f) {
    f.x0 = f.y0 = 1;  // empty (also for invalid scales and NaN positions)
    f.x1 = f.y1 = 0;
  }
  return f;
}

// Gaussian weight of the blob at pixel (px, py), or 0 outside its ellipse.
RF_HD float blob_weight(const BlobFrame& f, int px, int py, float& t1, float& t2) {
  float dx = (float)px + 0.5f - f.cx, dy = (float)py + 0.5f - f.cy;
  t1 = f.a * dx + f.b * dy;
  t2 = f.c * dx + f.d * dy;
  float q = t1 * t1 + t2 * t2;
  return q <= f.q_max ? expf(-0.5f * q) : 0.f;
}

struct BlobGrad {
  float mx = 0, my = 0, theta = 0, s1 = 0, s2 = 0, c0 = 0, c1 = 0, c2 = 0, o = 0;
};

// Add pixel (px, py)'s contribution to the gradient of one blob, given the image gradient g there.
RF_HD void blob_pixel_grad(const BlobFrame& f, float s1, float s2, const float* col, float o, int px, int py,
                           const float* g, BlobGrad& acc) {
  float t1, t2;
  float G = blob_weight(f, px, py, t1, t2);
  if (G == 0.f) return;
  float gc = g[0] * col[0] + g[1] * col[1] + g[2] * col[2];
  float oG = o * G;
  acc.c0 += g[0] * oG;
  acc.c1 += g[1] * oG;
  acc.c2 += g[2] * oG;
  acc.o += gc * G;
  float dq = -0.5f * gc * oG;  // dL/dq
  acc.mx -= dq * 2.f * (t1 * f.a + t2 * f.c);
  acc.my -= dq * 2.f * (t1 * f.b + t2 * f.d);
  acc.theta += dq * 2.f * t1 * t2 * (s2 / s1 - s1 / s2);
  acc.s1 += dq * (-2.f * t1 * t1 / s1);
  acc.s2 += dq * (-2.f * t2 * t2 / s2);
}

// Write blob i's gradient into the five gradient tensors.
RF_HD void store_blob_grad(const BlobGrad& acc, int64_t i, float* g_means, float* g_theta, float* g_scales,
                           float* g_colors, float* g_opacity) {
  g_means[2 * i] = acc.mx;
  g_means[2 * i + 1] = acc.my;
  g_theta[i] = acc.theta;
  g_scales[2 * i] = acc.s1;
  g_scales[2 * i + 1] = acc.s2;
  g_colors[3 * i] = acc.c0;
  g_colors[3 * i + 1] = acc.c1;
  g_colors[3 * i + 2] = acc.c2;
  g_opacity[i] = acc.o;
}

#define RF_RASTER_KERNELS                                                                                      \
  /* returns the largest number of blobs binned to one tile, and the total of tile-blob pairs */              \
  void rasterize_forward(const RasterGeometry& g, const float* means, const float* theta, const float* scales, \
                         const float* colors, const float* opacity, float* image, int64_t* max_per_tile,      \
                         int64_t* pairs);                                                                     \
  /* grads overwritten; each blob's gradient is a fixed-order sum over its pixels (deterministic) */          \
  void rasterize_backward(const RasterGeometry& g, const float* means, const float* theta, const float* scales, \
                          const float* colors, const float* opacity, const float* grad_image, float* g_means,  \
                          float* g_theta, float* g_scales, float* g_colors, float* g_opacity);

namespace cpu {
RF_RASTER_KERNELS
}
namespace gpu {
RF_RASTER_KERNELS
}
#undef RF_RASTER_KERNELS

}  // namespace rf
