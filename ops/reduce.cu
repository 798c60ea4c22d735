#include "ops/cuda_common.cuh"
#include "ops/reduce_impl.h"

#include <algorithm>

#include "engine/allocator.h"

namespace rf::gpu {

// Sums are deterministic: every output's elements are split into the same P parts on every run (the split
// depends on the shape only), each part is summed in a fixed order (thread strides, then a fixed shuffle tree),
// and the P partial sums are added by one warp in a fixed order. No atomics.

// Pass 1 when the innermost input dim is reduced (contiguous): block (p, o) sums part p of output o, a tile of
// rows [r0, r1) x inner [j0, j1), its threads striding along the contiguous inner dim (coalesced). A row is an
// index over the other reduced dims.
struct RowSplit {
  int64_t rows, inner, parts_r, parts_i, rows_per, inner_per;
};

__global__ void reduce_rows_kernel(ReduceIndexer ix, RowSplit s, const float* x, float* dst, float scale, bool final) {
  const int64_t parts = s.parts_r * s.parts_i;
  for (int64_t o = blockIdx.y; o < ix.nout; o += gridDim.y) {
    const float* base = x + decompose(ix.nk, ix.ksize, ix.kstride, o);
    for (int64_t p = blockIdx.x; p < parts; p += gridDim.x) {  // uniform across the block: block_sum is safe
      const int64_t r0 = (p / s.parts_i) * s.rows_per, r1 = min(s.rows, r0 + s.rows_per);
      const int64_t j0 = (p % s.parts_i) * s.inner_per, j1 = min(s.inner, j0 + s.inner_per);
      float acc = 0.f;
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = base + decompose(ix.nr - 1, ix.rsize, ix.rstride, r);
        for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) acc += row[j];
      }
      acc = block_sum(acc);
      if (threadIdx.x == 0) dst[o * parts + p] = final ? acc * scale : acc;
    }
  }
}

// Pass 1 when the innermost input dim is kept: one thread per output (neighbouring threads read neighbouring
// addresses), blockIdx.y picks the part [r0, r1) of the reduced elements.
__global__ void reduce_cols_kernel(ReduceIndexer ix, int64_t parts, int64_t per, const float* x, float* dst,
                                   float scale, bool final) {
  for (int64_t p = blockIdx.y; p < parts; p += gridDim.y) {
    const int64_t r0 = p * per, r1 = min(ix.nred, r0 + per);
    RF_GRID_STRIDE(o, ix.nout) {
      const float* base = x + decompose(ix.nk, ix.ksize, ix.kstride, o);
      float acc = 0.f;
      if (ix.nr == 1) {
        const int64_t st = ix.rstride[0];
        for (int64_t r = r0; r < r1; ++r) acc += base[r * st];
      } else {
        for (int64_t r = r0; r < r1; ++r) acc += base[decompose(ix.nr, ix.rsize, ix.rstride, r)];
      }
      dst[o * parts + p] = final ? acc * scale : acc;
    }
  }
}

// Pass 2: one warp adds the parts of one output in a fixed order.
__global__ void reduce_parts_kernel(const float* partial, float* out, int64_t nout, int64_t parts, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5, warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t o = warp; o < nout; o += warps) {  // the same o for all 32 lanes: the full-mask shuffles are safe
    float acc = 0.f;
    for (int64_t p = lane; p < parts; p += 32) acc += partial[o * parts + p];
    acc = warp_sum(acc);
    if (lane == 0) out[o] = acc * scale;
  }
}

__global__ void zero_kernel(float* out, int64_t n) {
  RF_GRID_STRIDE(i, n) out[i] = 0.f;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void reduce_sum(const ReduceIndexer& ix, const float* x, float* out, float scale) {
  if (ix.nout == 0) return;
  if (ix.nred == 0) {  // the sum of nothing
    zero_kernel<<<rf_blocks(ix.nout), 256>>>(out, ix.nout);
    RF_LAUNCH_CHECK("reduce_sum (empty)");
    return;
  }
  // Enough parts to keep ~1000 blocks (or ~64K threads) busy, few enough that each part is worth a block.
  const bool kept_inner = ix.nk > 0 && ix.kstride[ix.nk - 1] == 1;
  int64_t parts;
  RowSplit s{};
  int64_t cols_per = 0;
  if (kept_inner) {
    parts = std::max<int64_t>(1, std::min(ceil_div(65536, ix.nout), ceil_div(ix.nred, 32)));
    parts = std::min<int64_t>(parts, 65535);
    cols_per = ceil_div(ix.nred, parts);
    parts = ceil_div(ix.nred, cols_per);
  } else {
    s.inner = ix.nr ? ix.rsize[ix.nr - 1] : 1;
    s.rows = ix.nred / s.inner;
    int64_t want = std::max<int64_t>(1, std::min<int64_t>({ceil_div(1024, ix.nout), ceil_div(ix.nred, 4096), 1024}));
    s.parts_i = std::min(want, ceil_div(s.inner, 1024));
    s.parts_r = std::min(ceil_div(want, s.parts_i), s.rows);
    s.inner_per = ceil_div(s.inner, s.parts_i);
    s.rows_per = ceil_div(s.rows, s.parts_r);
    s.parts_i = ceil_div(s.inner, s.inner_per);  // no empty parts
    s.parts_r = ceil_div(s.rows, s.rows_per);
    parts = s.parts_r * s.parts_i;
  }
  const bool single = parts == 1;
  float* partial = out;
  if (!single) partial = static_cast<float*>(device_alloc(Device::CUDA, sizeof(float) * (size_t)(ix.nout * parts)));
  if (kept_inner) {
    dim3 grid((unsigned)std::min<int64_t>(ceil_div(ix.nout, 256), 65535), (unsigned)std::min<int64_t>(parts, 65535));
    reduce_cols_kernel<<<grid, 256>>>(ix, parts, cols_per, x, partial, scale, single);
  } else {
    const int threads = s.inner_per >= 256 ? 256 : (s.inner_per >= 128 ? 128 : 64);
    dim3 grid((unsigned)std::min<int64_t>(parts, 65535), (unsigned)std::min<int64_t>(ix.nout, 65535));
    reduce_rows_kernel<<<grid, threads>>>(ix, s, x, partial, scale, single);
  }
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && !single) {
    reduce_parts_kernel<<<(unsigned)std::min<int64_t>(ceil_div(ix.nout * 32, 256), 65535), 256>>>(partial, out, ix.nout,
                                                                                                 parts, scale);
    e = cudaGetLastError();
  }
  if (!single) device_free(Device::CUDA, partial, sizeof(float) * (size_t)(ix.nout * parts));
  if (e != cudaSuccess)
    throw Error(cat("CUDA error in reduce_sum (", ix.nout, " outputs of ", ix.nred, " elements): ", cudaGetErrorString(e)));
  RF_LAUNCH_CHECK("reduce_sum");
}

__global__ void max_dim_kernel(const float* x, float* out, int32_t* arg, int64_t outer, int64_t d, int64_t inner) {
  RF_GRID_STRIDE(oi, outer * inner) {
    int64_t o = oi / inner, i = oi % inner;
    const float* p = x + o * d * inner + i;
    int32_t best = 0;
    for (int64_t k = 1; k < d; ++k)
      if (p[k * inner] > p[best * inner]) best = (int32_t)k;
    out[oi] = p[best * inner];
    arg[oi] = best;
  }
}

__global__ void max_dim_bwd_kernel(const float* g, const int32_t* arg, float* gx, int64_t outer, int64_t d,
                                   int64_t inner) {
  RF_GRID_STRIDE(j, outer * d * inner) {
    int64_t i = j % inner, k = (j / inner) % d, o = j / (inner * d);
    int64_t oi = o * inner + i;
    gx[j] = (arg[oi] == k) ? g[oi] : 0.f;
  }
}

void max_dim(const float* x, float* out, int32_t* arg, int64_t outer, int64_t d, int64_t inner) {
  if (outer * inner == 0) return;
  max_dim_kernel<<<rf_blocks(outer * inner), 256>>>(x, out, arg, outer, d, inner);
  RF_LAUNCH_CHECK("max_dim");
}

void max_dim_backward(const float* g, const int32_t* arg, float* gx, int64_t outer, int64_t d, int64_t inner) {
  if (outer * d * inner == 0) return;
  max_dim_bwd_kernel<<<rf_blocks(outer * d * inner), 256>>>(g, arg, gx, outer, d, inner);
  RF_LAUNCH_CHECK("max_dim_backward");
}

// One thread per row of the softmax (rows are short in every use here; attention has its own kernel).
__global__ void softmax_fwd_kernel(const float* x, float* y, int64_t outer, int64_t d, int64_t inner, bool log) {
  RF_GRID_STRIDE(oi, outer * inner) {
    int64_t o = oi / inner, i = oi % inner;
    const float* p = x + o * d * inner + i;
    float* q = y + o * d * inner + i;
    float m = p[0];
    for (int64_t k = 1; k < d; ++k) m = fmaxf(m, p[k * inner]);
    float s = 0.f;
    for (int64_t k = 0; k < d; ++k) s += expf(p[k * inner] - m);
    if (log) {
      float lse = m + logf(s);
      for (int64_t k = 0; k < d; ++k) q[k * inner] = p[k * inner] - lse;
    } else {
      float inv = 1.f / s;
      for (int64_t k = 0; k < d; ++k) q[k * inner] = expf(p[k * inner] - m) * inv;
    }
  }
}

__global__ void softmax_bwd_kernel(const float* y, const float* g, float* gx, int64_t outer, int64_t d, int64_t inner,
                                   bool log) {
  RF_GRID_STRIDE(oi, outer * inner) {
    int64_t o = oi / inner, i = oi % inner;
    int64_t base = o * d * inner + i;
    float s = 0.f;
    for (int64_t k = 0; k < d; ++k) s += log ? g[base + k * inner] : g[base + k * inner] * y[base + k * inner];
    for (int64_t k = 0; k < d; ++k) {
      int64_t j = base + k * inner;
      gx[j] = log ? g[j] - expf(y[j]) * s : y[j] * (g[j] - s);
    }
  }
}

void softmax_forward(const float* x, float* y, int64_t outer, int64_t d, int64_t inner, bool log) {
  if (outer * inner == 0) return;
  softmax_fwd_kernel<<<rf_blocks(outer * inner), 256>>>(x, y, outer, d, inner, log);
  RF_LAUNCH_CHECK("softmax_forward");
}

void softmax_backward(const float* y, const float* g, float* gx, int64_t outer, int64_t d, int64_t inner, bool log) {
  if (outer * inner == 0) return;
  softmax_bwd_kernel<<<rf_blocks(outer * inner), 256>>>(y, g, gx, outer, d, inner, log);
  RF_LAUNCH_CHECK("softmax_backward");
}

}  // namespace rf::gpu
