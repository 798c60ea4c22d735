// Kernel layer of the resampling ops, with the coordinate rules shared by both devices.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/error.h"

namespace rf {

// Linear interpolation along one axis: value = (1 - w1) * v[i0] + w1 * v[i1].
struct Lerp {
  int64_t i0, i1;
  float w1;
};

RF_HD Lerp resize_source(int64_t o, int64_t n_in, int64_t n_out, bool align_corners) {
  float src;
  if (align_corners) {
    src = n_out > 1 ? (float)o * ((float)(n_in - 1) / (float)(n_out - 1)) : 0.f;
  } else {
    src = ((float)o + 0.5f) * ((float)n_in / (float)n_out) - 0.5f;
    if (src < 0.f) src = 0.f;
  }
  int64_t i0 = (int64_t)src;
  if (i0 > n_in - 1) i0 = n_in - 1;
  Lerp l;
  l.i0 = i0;
  l.i1 = i0 < n_in - 1 ? i0 + 1 : i0;
  l.w1 = src - (float)i0;
  return l;
}

RF_HD int64_t nearest_source(int64_t o, int64_t n_in, int64_t n_out) {
  int64_t i = (int64_t)floorf((float)o * ((float)n_in / (float)n_out));
  return i < n_in - 1 ? i : n_in - 1;
}

struct ResizeGeometry {
  int64_t planes, h, w, h_out, w_out;
  bool align_corners;
};

struct GridGeometry {
  int64_t n, c, h, w, h_out, w_out;
  bool align_corners;
  int padding;  // 0 zeros, 1 border
};

// Grid coordinate in [-1, 1] -> pixel coordinate, with d(pixel)/d(grid) (0 where border clamps). As in PyTorch, a
// coordinate exactly on the first or last pixel counts as clamped: its bilinear neighbour beyond the edge has weight 0,
// and a gradient through it would be minus the pixel's value rather than the clamped 0.
RF_HD float grid_unnormalize(float g, int64_t size, bool align, int padding, float* dcoord) {
  float scale = align ? 0.5f * (float)(size - 1) : 0.5f * (float)size;
  float c = align ? (g + 1.f) * scale : (g + 1.f) * scale - 0.5f;
  *dcoord = scale;
  if (padding == 1) {
    if (c <= 0.f) {
      c = 0.f;
      *dcoord = 0.f;
    } else if (c >= (float)(size - 1)) {
      c = (float)(size - 1);
      *dcoord = 0.f;
    }
  }
  return c;
}

#define RF_SAMPLE_KERNELS                                                                                     \
  void resize_bilinear_forward(const ResizeGeometry& g, const float* x, float* y);                           \
  void resize_bilinear_backward(const ResizeGeometry& g, const float* gy, float* gx); /* gx zeroed here */   \
  void upsample_nearest_forward(const ResizeGeometry& g, const float* x, float* y);                          \
  void upsample_nearest_backward(const ResizeGeometry& g, const float* gy, float* gx);                       \
  void grid_sample_forward(const GridGeometry& g, const float* x, const float* grid, float* y);               \
  /* gx (may be null) and ggrid (may be null) are overwritten */                                             \
  void grid_sample_backward(const GridGeometry& g, const float* x, const float* grid, const float* gy, float* gx, \
                            float* ggrid);

namespace cpu {
RF_SAMPLE_KERNELS
}
namespace gpu {
RF_SAMPLE_KERNELS
}
#undef RF_SAMPLE_KERNELS

// Shared per-element bodies.
RF_HD void resize_bilinear_one(const ResizeGeometry& g, const float* x, float* y, int64_t i) {
  int64_t ox = i % g.w_out, oy = (i / g.w_out) % g.h_out, p = i / (g.w_out * g.h_out);
  Lerp ly = resize_source(oy, g.h, g.h_out, g.align_corners), lx = resize_source(ox, g.w, g.w_out, g.align_corners);
  const float* pl = x + p * g.h * g.w;
  float top = (1.f - lx.w1) * pl[ly.i0 * g.w + lx.i0] + lx.w1 * pl[ly.i0 * g.w + lx.i1];
  float bot = (1.f - lx.w1) * pl[ly.i1 * g.w + lx.i0] + lx.w1 * pl[ly.i1 * g.w + lx.i1];
  y[i] = (1.f - ly.w1) * top + ly.w1 * bot;
}

// The four bilinear taps of grid location (n, oy, ox); weights are zero for taps outside the image.
struct GridTaps {
  int64_t x0, y0;
  float wx1, wy1, dx, dy;  // fractional parts; d(pixel)/d(grid)
};

RF_HD GridTaps grid_taps(const GridGeometry& g, const float* grid, int64_t n, int64_t oy, int64_t ox) {
  const float* gp = grid + ((n * g.h_out + oy) * g.w_out + ox) * 2;
  GridTaps t;
  float cx = grid_unnormalize(gp[0], g.w, g.align_corners, g.padding, &t.dx);
  float cy = grid_unnormalize(gp[1], g.h, g.align_corners, g.padding, &t.dy);
  float fx = floorf(cx), fy = floorf(cy);
  t.x0 = (int64_t)fx;
  t.y0 = (int64_t)fy;
  t.wx1 = cx - fx;
  t.wy1 = cy - fy;
  return t;
}

RF_HD float tap(const float* plane, int64_t h, int64_t w, int64_t y, int64_t x) {
  return (y >= 0 && y < h && x >= 0 && x < w) ? plane[y * w + x] : 0.f;
}

}  // namespace rf
