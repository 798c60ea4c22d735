#include "ops/sample.h"

#include <algorithm>
#include <vector>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/sample_impl.h"

namespace rf {

namespace cpu {
constexpr int64_t kPar = 1 << 14;

void resize_bilinear_forward(const ResizeGeometry& g, const float* x, float* y) {
  int64_t n = g.planes * g.h_out * g.w_out;
#pragma omp parallel for if (n > kPar)
  for (int64_t i = 0; i < n; ++i) resize_bilinear_one(g, x, y, i);
}

// Scatter; parallel over planes, so no two threads write the same pixel.
void resize_bilinear_backward(const ResizeGeometry& g, const float* gy, float* gx) {
  std::fill(gx, gx + g.planes * g.h * g.w, 0.f);
#pragma omp parallel for if (g.planes * g.h_out * g.w_out > kPar)
  for (int64_t p = 0; p < g.planes; ++p) {
    float* pl = gx + p * g.h * g.w;
    for (int64_t oy = 0; oy < g.h_out; ++oy) {
      Lerp ly = resize_source(oy, g.h, g.h_out, g.align_corners);
      for (int64_t ox = 0; ox < g.w_out; ++ox) {
        Lerp lx = resize_source(ox, g.w, g.w_out, g.align_corners);
        float v = gy[(p * g.h_out + oy) * g.w_out + ox];
        pl[ly.i0 * g.w + lx.i0] += (1.f - ly.w1) * (1.f - lx.w1) * v;
        pl[ly.i0 * g.w + lx.i1] += (1.f - ly.w1) * lx.w1 * v;
        pl[ly.i1 * g.w + lx.i0] += ly.w1 * (1.f - lx.w1) * v;
        pl[ly.i1 * g.w + lx.i1] += ly.w1 * lx.w1 * v;
      }
    }
  }
}

void upsample_nearest_forward(const ResizeGeometry& g, const float* x, float* y) {
  // Source columns once, source row once per output row: no index arithmetic per pixel.
  std::vector<int64_t> src_x(g.w_out);
  for (int64_t ox = 0; ox < g.w_out; ++ox) src_x[ox] = nearest_source(ox, g.w, g.w_out);
#pragma omp parallel for if (g.planes * g.h_out * g.w_out > kPar)
  for (int64_t row = 0; row < g.planes * g.h_out; ++row) {
    const int64_t p = row / g.h_out, oy = row % g.h_out;
    const float* xr = x + (p * g.h + nearest_source(oy, g.h, g.h_out)) * g.w;
    float* yr = y + row * g.w_out;
    for (int64_t ox = 0; ox < g.w_out; ++ox) yr[ox] = xr[src_x[ox]];
  }
}

void upsample_nearest_backward(const ResizeGeometry& g, const float* gy, float* gx) {
  std::fill(gx, gx + g.planes * g.h * g.w, 0.f);
#pragma omp parallel for if (g.planes * g.h_out * g.w_out > kPar)
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t oy = 0; oy < g.h_out; ++oy) {
      int64_t iy = nearest_source(oy, g.h, g.h_out);
      for (int64_t ox = 0; ox < g.w_out; ++ox)
        gx[(p * g.h + iy) * g.w + nearest_source(ox, g.w, g.w_out)] += gy[(p * g.h_out + oy) * g.w_out + ox];
    }
}

void grid_sample_forward(const GridGeometry& g, const float* x, const float* grid, float* y) {
  int64_t n_loc = g.n * g.h_out * g.w_out;
#pragma omp parallel for if (n_loc * g.c > kPar)
  for (int64_t l = 0; l < n_loc; ++l) {
    int64_t ox = l % g.w_out, oy = (l / g.w_out) % g.h_out, n = l / (g.w_out * g.h_out);
    GridTaps t = grid_taps(g, grid, n, oy, ox);
    for (int64_t c = 0; c < g.c; ++c) {
      const float* pl = x + (n * g.c + c) * g.h * g.w;
      float v = (1.f - t.wy1) * ((1.f - t.wx1) * tap(pl, g.h, g.w, t.y0, t.x0) + t.wx1 * tap(pl, g.h, g.w, t.y0, t.x0 + 1)) +
                t.wy1 * ((1.f - t.wx1) * tap(pl, g.h, g.w, t.y0 + 1, t.x0) + t.wx1 * tap(pl, g.h, g.w, t.y0 + 1, t.x0 + 1));
      y[((n * g.c + c) * g.h_out + oy) * g.w_out + ox] = v;
    }
  }
}

void grid_sample_backward(const GridGeometry& g, const float* x, const float* grid, const float* gy, float* gx,
                          float* ggrid) {
  const int64_t hw_out = g.h_out * g.w_out;
  if (ggrid) {
#pragma omp parallel for if (g.n * hw_out * g.c > kPar)
    for (int64_t l = 0; l < g.n * hw_out; ++l) {
      int64_t ox = l % g.w_out, oy = (l / g.w_out) % g.h_out, n = l / hw_out;
      GridTaps t = grid_taps(g, grid, n, oy, ox);
      float gix = 0.f, giy = 0.f;
      for (int64_t c = 0; c < g.c; ++c) {
        const float* pl = x + (n * g.c + c) * g.h * g.w;
        float v00 = tap(pl, g.h, g.w, t.y0, t.x0), v01 = tap(pl, g.h, g.w, t.y0, t.x0 + 1);
        float v10 = tap(pl, g.h, g.w, t.y0 + 1, t.x0), v11 = tap(pl, g.h, g.w, t.y0 + 1, t.x0 + 1);
        float go = gy[(n * g.c + c) * hw_out + oy * g.w_out + ox];
        gix += go * ((1.f - t.wy1) * (v01 - v00) + t.wy1 * (v11 - v10));
        giy += go * ((1.f - t.wx1) * (v10 - v00) + t.wx1 * (v11 - v01));
      }
      ggrid[l * 2] = gix * t.dx;
      ggrid[l * 2 + 1] = giy * t.dy;
    }
  }
  if (gx) {
    std::fill(gx, gx + g.n * g.c * g.h * g.w, 0.f);
#pragma omp parallel for if (g.n * g.c * hw_out > kPar)
    for (int64_t pc = 0; pc < g.n * g.c; ++pc) {  // one (n, c) plane per thread: no write conflicts
      int64_t n = pc / g.c;
      float* pl = gx + pc * g.h * g.w;
      for (int64_t oy = 0; oy < g.h_out; ++oy)
        for (int64_t ox = 0; ox < g.w_out; ++ox) {
          GridTaps t = grid_taps(g, grid, n, oy, ox);
          float go = gy[pc * hw_out + oy * g.w_out + ox];
          auto add = [&](int64_t yy, int64_t xx, float w) {
            if (yy >= 0 && yy < g.h && xx >= 0 && xx < g.w) pl[yy * g.w + xx] += w * go;
          };
          add(t.y0, t.x0, (1.f - t.wy1) * (1.f - t.wx1));
          add(t.y0, t.x0 + 1, (1.f - t.wy1) * t.wx1);
          add(t.y0 + 1, t.x0, t.wy1 * (1.f - t.wx1));
          add(t.y0 + 1, t.x0 + 1, t.wy1 * t.wx1);
        }
    }
  }
}

}  // namespace cpu

static ResizeGeometry resize_geometry(const char* op, const Tensor& x, int64_t h_out, int64_t w_out, bool align) {
  RF_CHECK(x.dim() == 4, op, ": expected [N, C, H, W], got ", describe(x));
  RF_CHECK(h_out > 0 && w_out > 0 && x.size(2) > 0 && x.size(3) > 0, op, ": cannot resize ", describe(x), " to ", h_out,
           "x", w_out);
  return ResizeGeometry{x.size(0) * x.size(1), x.size(2), x.size(3), h_out, w_out, align};
}

Tensor resize_bilinear(const Tensor& x, int64_t h_out, int64_t w_out, bool align_corners) {
  ResizeGeometry g = resize_geometry("resize_bilinear", x, h_out, w_out, align_corners);
  Tensor y = empty({x.size(0), x.size(1), h_out, w_out}, x.device());
  if (x.is_cuda())
    RF_GPU_OP("resize_bilinear", (x), gpu::resize_bilinear_forward(g, x.data(), y.data()));
  else
    cpu::resize_bilinear_forward(g, x.data(), y.data());
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "resize_bilinear", {x}, [g, in_shape](const Tensor& gy) {
      Tensor gx = empty(in_shape, gy.device());
      if (gy.is_cuda())
        RF_GPU(gpu::resize_bilinear_backward(g, gy.data(), gx.data()));
      else
        cpu::resize_bilinear_backward(g, gy.data(), gx.data());
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor upsample_nearest(const Tensor& x, int64_t h_out, int64_t w_out) {
  ResizeGeometry g = resize_geometry("upsample_nearest", x, h_out, w_out, false);
  Tensor y = empty({x.size(0), x.size(1), h_out, w_out}, x.device());
  if (x.is_cuda())
    RF_GPU_OP("upsample_nearest", (x), gpu::upsample_nearest_forward(g, x.data(), y.data()));
  else
    cpu::upsample_nearest_forward(g, x.data(), y.data());
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "upsample_nearest", {x}, [g, in_shape](const Tensor& gy) {
      Tensor gx = empty(in_shape, gy.device());
      if (gy.is_cuda())
        RF_GPU(gpu::upsample_nearest_backward(g, gy.data(), gx.data()));
      else
        cpu::upsample_nearest_backward(g, gy.data(), gx.data());
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor grid_sample(const Tensor& x, const Tensor& grid, bool align_corners, GridPadding padding) {
  Device dev = same_device("grid_sample", {x, grid});
  RF_CHECK(x.dim() == 4 && grid.dim() == 4 && grid.size(3) == 2 && grid.size(0) == x.size(0),
           "grid_sample: expected input [N, C, H, W] and grid [N, Ho, Wo, 2], got ", x.shape(), " and ", grid.shape());
  GridGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), grid.size(1), grid.size(2), align_corners, (int)padding};
  Tensor y = empty({g.n, g.c, g.h_out, g.w_out}, dev);
  if (dev == Device::CUDA)
    RF_GPU_OP("grid_sample", (x, grid), gpu::grid_sample_forward(g, x.data(), grid.data(), y.data()));
  else
    cpu::grid_sample_forward(g, x.data(), grid.data(), y.data());
  if (needs_grad({x, grid})) {
    record(y, "grid_sample", {x, grid}, [g, x, grid](const Tensor& gy) {
      Tensor gx = x.requires_grad() ? empty_like(x) : Tensor();
      Tensor gg = grid.requires_grad() ? empty_like(grid) : Tensor();
      float* gxp = gx.defined() ? gx.data() : nullptr;
      float* ggp = gg.defined() ? gg.data() : nullptr;
      if (gy.is_cuda())
        RF_GPU(gpu::grid_sample_backward(g, x.data(), grid.data(), gy.data(), gxp, ggp));
      else
        cpu::grid_sample_backward(g, x.data(), grid.data(), gy.data(), gxp, ggp);
      return std::vector<Tensor>{gx, gg};
    });
  }
  return y;
}

}  // namespace rf
