// Resampling kernels. Backward passes scatter with atomicAdd (the order of the additions, and so the
// last bits of the result, can vary from run to run).
#include "ops/cuda_common.cuh"
#include "ops/sample_impl.h"

namespace rf::gpu {

__global__ void resize_fwd_kernel(ResizeGeometry g, const float* x, float* y) {
  RF_GRID_STRIDE(i, g.planes * g.h_out * g.w_out) resize_bilinear_one(g, x, y, i);
}

__global__ void resize_bwd_kernel(ResizeGeometry g, const float* gy, float* gx) {
  RF_GRID_STRIDE(i, g.planes * g.h_out * g.w_out) {
    int64_t ox = i % g.w_out, oy = (i / g.w_out) % g.h_out, p = i / (g.w_out * g.h_out);
    Lerp ly = resize_source(oy, g.h, g.h_out, g.align_corners), lx = resize_source(ox, g.w, g.w_out, g.align_corners);
    float* pl = gx + p * g.h * g.w;
    float v = gy[i];
    atomicAdd(pl + ly.i0 * g.w + lx.i0, (1.f - ly.w1) * (1.f - lx.w1) * v);
    atomicAdd(pl + ly.i0 * g.w + lx.i1, (1.f - ly.w1) * lx.w1 * v);
    atomicAdd(pl + ly.i1 * g.w + lx.i0, ly.w1 * (1.f - lx.w1) * v);
    atomicAdd(pl + ly.i1 * g.w + lx.i1, ly.w1 * lx.w1 * v);
  }
}

__global__ void nearest_fwd_kernel(ResizeGeometry g, const float* x, float* y) {
  RF_GRID_STRIDE(i, g.planes * g.h_out * g.w_out) {
    int64_t ox = i % g.w_out, oy = (i / g.w_out) % g.h_out, p = i / (g.w_out * g.h_out);
    y[i] = x[(p * g.h + nearest_source(oy, g.h, g.h_out)) * g.w + nearest_source(ox, g.w, g.w_out)];
  }
}

__global__ void nearest_bwd_kernel(ResizeGeometry g, const float* gy, float* gx) {
  RF_GRID_STRIDE(i, g.planes * g.h_out * g.w_out) {
    int64_t ox = i % g.w_out, oy = (i / g.w_out) % g.h_out, p = i / (g.w_out * g.h_out);
    atomicAdd(gx + (p * g.h + nearest_source(oy, g.h, g.h_out)) * g.w + nearest_source(ox, g.w, g.w_out), gy[i]);
  }
}

__global__ void grid_fwd_kernel(GridGeometry g, const float* x, const float* grid, float* y) {
  RF_GRID_STRIDE(l, g.n * g.h_out * g.w_out) {
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

__global__ void grid_bwd_kernel(GridGeometry g, const float* x, const float* grid, const float* gy, float* gx,
                                float* ggrid) {
  const int64_t hw_out = g.h_out * g.w_out;
  RF_GRID_STRIDE(l, g.n * hw_out) {
    int64_t ox = l % g.w_out, oy = (l / g.w_out) % g.h_out, n = l / hw_out;
    GridTaps t = grid_taps(g, grid, n, oy, ox);
    float gix = 0.f, giy = 0.f;
    for (int64_t c = 0; c < g.c; ++c) {
      const float* pl = x + (n * g.c + c) * g.h * g.w;
      float go = gy[(n * g.c + c) * hw_out + oy * g.w_out + ox];
      if (ggrid) {
        float v00 = tap(pl, g.h, g.w, t.y0, t.x0), v01 = tap(pl, g.h, g.w, t.y0, t.x0 + 1);
        float v10 = tap(pl, g.h, g.w, t.y0 + 1, t.x0), v11 = tap(pl, g.h, g.w, t.y0 + 1, t.x0 + 1);
        gix += go * ((1.f - t.wy1) * (v01 - v00) + t.wy1 * (v11 - v10));
        giy += go * ((1.f - t.wx1) * (v10 - v00) + t.wx1 * (v11 - v01));
      }
      if (gx) {
        float* gp = gx + (n * g.c + c) * g.h * g.w;
        int64_t ys[2] = {t.y0, t.y0 + 1}, xs[2] = {t.x0, t.x0 + 1};
        float wy[2] = {1.f - t.wy1, t.wy1}, wx[2] = {1.f - t.wx1, t.wx1};
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b)
            if (ys[a] >= 0 && ys[a] < g.h && xs[b] >= 0 && xs[b] < g.w)
              atomicAdd(gp + ys[a] * g.w + xs[b], wy[a] * wx[b] * go);
      }
    }
    if (ggrid) {
      ggrid[l * 2] = gix * t.dx;
      ggrid[l * 2 + 1] = giy * t.dy;
    }
  }
}

void resize_bilinear_forward(const ResizeGeometry& g, const float* x, float* y) {
  resize_fwd_kernel<<<rf_blocks(g.planes * g.h_out * g.w_out), 256>>>(g, x, y);
  RF_LAUNCH_CHECK("resize_bilinear");
}
void resize_bilinear_backward(const ResizeGeometry& g, const float* gy, float* gx) {
  RF_CUDA_CHECK(cudaMemsetAsync(gx, 0, sizeof(float) * g.planes * g.h * g.w));
  resize_bwd_kernel<<<rf_blocks(g.planes * g.h_out * g.w_out), 256>>>(g, gy, gx);
  RF_LAUNCH_CHECK("resize_bilinear backward");
}
void upsample_nearest_forward(const ResizeGeometry& g, const float* x, float* y) {
  nearest_fwd_kernel<<<rf_blocks(g.planes * g.h_out * g.w_out), 256>>>(g, x, y);
  RF_LAUNCH_CHECK("upsample_nearest");
}
void upsample_nearest_backward(const ResizeGeometry& g, const float* gy, float* gx) {
  RF_CUDA_CHECK(cudaMemsetAsync(gx, 0, sizeof(float) * g.planes * g.h * g.w));
  nearest_bwd_kernel<<<rf_blocks(g.planes * g.h_out * g.w_out), 256>>>(g, gy, gx);
  RF_LAUNCH_CHECK("upsample_nearest backward");
}
void grid_sample_forward(const GridGeometry& g, const float* x, const float* grid, float* y) {
  grid_fwd_kernel<<<rf_blocks(g.n * g.h_out * g.w_out), 256>>>(g, x, grid, y);
  RF_LAUNCH_CHECK("grid_sample");
}
void grid_sample_backward(const GridGeometry& g, const float* x, const float* grid, const float* gy, float* gx,
                          float* ggrid) {
  if (gx) RF_CUDA_CHECK(cudaMemsetAsync(gx, 0, sizeof(float) * g.n * g.c * g.h * g.w));
  grid_bwd_kernel<<<rf_blocks(g.n * g.h_out * g.w_out), 256>>>(g, x, grid, gy, gx, ggrid);
  RF_LAUNCH_CHECK("grid_sample backward");
}

}  // namespace rf::gpu
