#include "ops/gauss_raster.h"

#include <algorithm>
#include <vector>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/gauss_raster_impl.h"

namespace rf {

static thread_local RasterStats g_stats;
RasterStats last_raster_stats() { return g_stats; }

namespace cpu {

// Forward: bin blobs into 16x16 tiles (in blob order), then render tiles in parallel; every blob of a
// tile is drawn, however many there are.
void rasterize_forward(const RasterGeometry& g, const float* means, const float* theta, const float* scales,
                       const float* colors, const float* opacity, float* image, int64_t* max_per_tile, int64_t* pairs) {
  const int64_t tx = g.tiles_x(), ty = g.tiles_y(), hw = g.h * g.w;
  std::vector<BlobFrame> frames(g.n);
#pragma omp parallel for if (g.n > 4096)
  for (int64_t i = 0; i < g.n; ++i) frames[i] = blob_frame(means, theta, scales, i, g.h, g.w, g.sigmas);
  std::vector<std::vector<int32_t>> bins(tx * ty);
  for (int64_t i = 0; i < g.n; ++i) {
    const BlobFrame& f = frames[i];
    if (f.x0 > f.x1 || f.y0 > f.y1) continue;
    for (int64_t ty_ = f.y0 / kRasterTile; ty_ <= f.y1 / kRasterTile; ++ty_)
      for (int64_t tx_ = f.x0 / kRasterTile; tx_ <= f.x1 / kRasterTile; ++tx_) bins[ty_ * tx + tx_].push_back((int32_t)i);
  }
  int64_t mx = 0, total = 0;
  for (auto& b : bins) {
    mx = std::max<int64_t>(mx, (int64_t)b.size());
    total += (int64_t)b.size();
  }
  *max_per_tile = mx;
  *pairs = total;
#pragma omp parallel for schedule(dynamic)
  for (int64_t t = 0; t < tx * ty; ++t) {
    const int px0 = (int)((t % tx) * kRasterTile), py0 = (int)((t / tx) * kRasterTile);
    const int px1 = (int)std::min<int64_t>(px0 + kRasterTile, g.w) - 1, py1 = (int)std::min<int64_t>(py0 + kRasterTile, g.h) - 1;
    float acc[3][kRasterTile][kRasterTile] = {};
    for (int32_t i : bins[t]) {
      const BlobFrame& f = frames[i];
      const float o = opacity[i], c0 = colors[3 * i] * o, c1 = colors[3 * i + 1] * o, c2 = colors[3 * i + 2] * o;
      for (int py = std::max(py0, f.y0); py <= std::min(py1, f.y1); ++py)
        for (int px = std::max(px0, f.x0); px <= std::min(px1, f.x1); ++px) {
          float t1, t2, G = blob_weight(f, px, py, t1, t2);
          acc[0][py - py0][px - px0] += c0 * G;
          acc[1][py - py0][px - px0] += c1 * G;
          acc[2][py - py0][px - px0] += c2 * G;
        }
    }
    for (int py = py0; py <= py1; ++py)
      for (int px = px0; px <= px1; ++px)
        for (int c = 0; c < 3; ++c) image[c * hw + py * g.w + px] = acc[c][py - py0][px - px0];
  }
}

// Backward: one blob at a time over its own pixels — no write conflicts, a fixed summation order.
void rasterize_backward(const RasterGeometry& g, const float* means, const float* theta, const float* scales,
                        const float* colors, const float* opacity, const float* grad_image, float* g_means,
                        float* g_theta, float* g_scales, float* g_colors, float* g_opacity) {
  const int64_t hw = g.h * g.w;
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < g.n; ++i) {
    BlobFrame f = blob_frame(means, theta, scales, i, g.h, g.w, g.sigmas);
    BlobGrad acc;
    for (int py = f.y0; py <= f.y1; ++py)
      for (int px = f.x0; px <= f.x1; ++px) {
        const int64_t p = py * g.w + px;
        float gp[3] = {grad_image[p], grad_image[hw + p], grad_image[2 * hw + p]};
        blob_pixel_grad(f, scales[2 * i], scales[2 * i + 1], colors + 3 * i, opacity[i], px, py, gp, acc);
      }
    store_blob_grad(acc, i, g_means, g_theta, g_scales, g_colors, g_opacity);
  }
}

}  // namespace cpu

Tensor rasterize(const Blobs& b, int64_t height, int64_t width, float sigmas) {
  Device dev = same_device("rasterize", {b.means, b.theta, b.scales, b.colors, b.opacity});
  const int64_t n = b.size();
  RF_CHECK(b.means.shape() == Shape({n, 2}) && b.theta.shape() == Shape({n}) && b.scales.shape() == Shape({n, 2}) &&
               b.colors.shape() == Shape({n, 3}) && b.opacity.shape() == Shape({n}),
           "rasterize: blob tensors must be means [N, 2], theta [N], scales [N, 2], colors [N, 3], opacity [N]; got ",
           b.means.shape(), ", ", b.theta.shape(), ", ", b.scales.shape(), ", ", b.colors.shape(), ", ", b.opacity.shape());
  RF_CHECK(height > 0 && width > 0, "rasterize: image size ", height, "x", width, " is empty");
  RF_CHECK(sigmas > 0.f, "rasterize: the cutoff must be positive, got ", sigmas, " sigmas");
  RasterGeometry g{n, height, width, sigmas};
  Tensor img = empty({3, height, width}, dev);
  int64_t max_per_tile = 0, pairs = 0;
  if (dev == Device::CUDA)
    RF_GPU_OP("rasterize", (b.means, b.colors),
              gpu::rasterize_forward(g, b.means.data(), b.theta.data(), b.scales.data(), b.colors.data(),
                                     b.opacity.data(), img.data(), &max_per_tile, &pairs));
  else
    cpu::rasterize_forward(g, b.means.data(), b.theta.data(), b.scales.data(), b.colors.data(), b.opacity.data(),
                           img.data(), &max_per_tile, &pairs);
  g_stats = RasterStats{g.tiles_x() * g.tiles_y(), max_per_tile, pairs};
  if (needs_grad({b.means, b.theta, b.scales, b.colors, b.opacity})) {
    record(img, "rasterize", {b.means, b.theta, b.scales, b.colors, b.opacity}, [g, b](const Tensor& gi) {
      Tensor gm = empty_like(b.means), gt = empty_like(b.theta), gs = empty_like(b.scales), gc = empty_like(b.colors),
             go = empty_like(b.opacity);
      if (gi.is_cuda())
        RF_GPU(gpu::rasterize_backward(g, b.means.data(), b.theta.data(), b.scales.data(), b.colors.data(),
                                       b.opacity.data(), gi.data(), gm.data(), gt.data(), gs.data(), gc.data(),
                                       go.data()));
      else
        cpu::rasterize_backward(g, b.means.data(), b.theta.data(), b.scales.data(), b.colors.data(), b.opacity.data(),
                                gi.data(), gm.data(), gt.data(), gs.data(), gc.data(), go.data());
      return std::vector<Tensor>{gm, gt, gs, gc, go};
    });
  }
  return img;
}

}  // namespace rf
