#include "ops/cuda_common.cuh"
#include "ops/reduce_impl.h"

namespace rf::gpu {

// Long reductions: one block per output, threads stride over the reduced elements.
__global__ void reduce_block_kernel(ReduceIndexer ix, const float* x, float* out, float scale) {
  for (int64_t o = blockIdx.x; o < ix.nout; o += gridDim.x) {
    const float* base = x + decompose(ix.nk, ix.ksize, ix.kstride, o);
    float acc = 0.f;
    for (int64_t r = threadIdx.x; r < ix.nred; r += blockDim.x) acc += base[decompose(ix.nr, ix.rsize, ix.rstride, r)];
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[o] = acc * scale;
  }
}

// Short reductions: one thread per output.
__global__ void reduce_thread_kernel(ReduceIndexer ix, const float* x, float* out, float scale) {
  RF_GRID_STRIDE(o, ix.nout) {
    const float* base = x + decompose(ix.nk, ix.ksize, ix.kstride, o);
    float acc = 0.f;
    for (int64_t r = 0; r < ix.nred; ++r) acc += base[decompose(ix.nr, ix.rsize, ix.rstride, r)];
    out[o] = acc * scale;
  }
}

void reduce_sum(const ReduceIndexer& ix, const float* x, float* out, float scale) {
  if (ix.nout == 0) return;
  if (ix.nred >= 256 || ix.nout < 4096) {
    unsigned blocks = (unsigned)(ix.nout < 65535LL * 16 ? ix.nout : 65535LL * 16);
    reduce_block_kernel<<<blocks, 256>>>(ix, x, out, scale);
  } else {
    reduce_thread_kernel<<<rf_blocks(ix.nout), 256>>>(ix, x, out, scale);
  }
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
