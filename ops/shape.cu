#include "ops/cuda_common.cuh"
#include "ops/shape_impl.h"

namespace rf::gpu {

__global__ void pad_fwd_kernel(PadGeometry g, const float* x, float* y) {
  const int64_t ho = g.h_out(), wo = g.w_out();
  RF_GRID_STRIDE(i, g.planes * ho * wo) {
    int64_t ox = i % wo, oy = (i / wo) % ho, p = i / (wo * ho);
    int64_t iy = pad_source(oy, g.h, g.top, g.mode), ix = pad_source(ox, g.w, g.left, g.mode);
    y[i] = (iy < 0 || ix < 0) ? 0.f : x[(p * g.h + iy) * g.w + ix];
  }
}

__global__ void pad_bwd_kernel(PadGeometry g, const float* gy, float* gx) {
  const int64_t ho = g.h_out(), wo = g.w_out();
  RF_GRID_STRIDE(i, g.planes * g.h * g.w) {
    int64_t ix = i % g.w, iy = (i / g.w) % g.h, p = i / (g.w * g.h);
    float acc = 0.f;
    pad_targets(iy, g.h, g.top, g.bottom, g.mode, [&](int64_t oy) {
      pad_targets(ix, g.w, g.left, g.right, g.mode, [&](int64_t ox) { acc += gy[(p * ho + oy) * wo + ox]; });
    });
    gx[i] = acc;
  }
}

void pad_forward(const PadGeometry& g, const float* x, float* y) {
  int64_t n = g.planes * g.h_out() * g.w_out();
  if (n == 0) return;
  pad_fwd_kernel<<<rf_blocks(n), 256>>>(g, x, y);
  RF_LAUNCH_CHECK("pad2d");
}

void pad_backward(const PadGeometry& g, const float* gy, float* gx) {
  int64_t n = g.planes * g.h * g.w;
  if (n == 0) return;
  pad_bwd_kernel<<<rf_blocks(n), 256>>>(g, gy, gx);
  RF_LAUNCH_CHECK("pad2d backward");
}

__global__ void gather_rows_kernel(const float* x, const int32_t* index, float* out, int64_t n, int64_t row) {
  RF_GRID_STRIDE(e, n * row) out[e] = x[(int64_t)index[e / row] * row + e % row];
}

__global__ void scatter_add_rows_kernel(const float* g, const int32_t* index, float* gx, int64_t n, int64_t row) {
  RF_GRID_STRIDE(e, n * row) atomicAdd(gx + (int64_t)index[e / row] * row + e % row, g[e]);
}

void gather_rows(const float* x, const int32_t* index, float* out, int64_t n, int64_t row) {
  if (n * row == 0) return;
  gather_rows_kernel<<<rf_blocks(n * row), 256>>>(x, index, out, n, row);
  RF_LAUNCH_CHECK("gather_rows");
}

void scatter_add_rows(const float* g, const int32_t* index, float* gx, int64_t n, int64_t row) {
  if (n * row == 0) return;
  scatter_add_rows_kernel<<<rf_blocks(n * row), 256>>>(g, index, gx, n, row);
  RF_LAUNCH_CHECK("gather_rows backward");
}

}  // namespace rf::gpu
