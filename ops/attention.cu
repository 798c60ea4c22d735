// Fused attention kernels (FP32, FlashAttention-style): a block of 64 query threads streams 64-key tiles
// through shared memory with an online softmax; the backward recomputes the probabilities from the
// saved log-sum-exp, with one pass per query (dQ) and one per key (dK, dV), so no atomics are needed.
#include "engine/allocator.h"
#include "engine/device.h"
#include "ops/attention_impl.h"
#include "ops/cuda_common.cuh"

namespace rf::gpu {

namespace {

constexpr int kTile = 64;

__device__ __forceinline__ void window_of(const AttentionGeometry& g, int64_t i, int64_t& lo, int64_t& hi) {
  lo = i / g.window * g.window;
  hi = min(g.n, lo + g.window);
}

// Keys any query of the block [i_first, i_last] may see.
__device__ __forceinline__ void block_range(const AttentionGeometry& g, int64_t i_first, int64_t i_last, int64_t& lo,
                                            int64_t& hi) {
  int64_t a, b, c, d;
  window_of(g, i_first, a, b);
  window_of(g, i_last, c, d);
  lo = a;
  hi = d;
}

template <int DMAX>
__global__ void attn_fwd_kernel(AttentionGeometry g, const float* q, const float* k, const float* v, float* out,
                                float* lse) {
  __shared__ float sk[kTile][DMAX], sv[kTile][DMAX];
  const int64_t b = blockIdx.y, i = (int64_t)blockIdx.x * kTile + threadIdx.x, d = g.d;
  const bool valid = i < g.n;
  const float* kb = k + b * g.n * d;
  const float* vb = v + b * g.n * d;
  float qr[DMAX], acc[DMAX];
  for (int c = 0; c < DMAX; ++c) {
    qr[c] = (valid && c < d) ? q[(b * g.n + i) * d + c] * g.scale : 0.f;
    acc[c] = 0.f;
  }
  int64_t lo, hi, blo, bhi;
  window_of(g, valid ? i : g.n - 1, lo, hi);
  block_range(g, (int64_t)blockIdx.x * kTile, min(g.n - 1, (int64_t)blockIdx.x * kTile + kTile - 1), blo, bhi);
  float m = -INFINITY, l = 0.f;
  for (int64_t t = blo; t < bhi; t += kTile) {
    __syncthreads();
    // Every column up to DMAX is written (zeros beyond d): the dot products run over DMAX, and 0 times an
    // unwritten shared-memory word could be 0 x NaN = NaN.
    for (int64_t e = threadIdx.x; e < (int64_t)kTile * DMAX; e += blockDim.x) {
      int64_t jj = e / DMAX, c = e % DMAX, j = t + jj;
      const bool in = j < g.n && c < d;
      sk[jj][c] = in ? kb[j * d + c] : 0.f;
      sv[jj][c] = in ? vb[j * d + c] : 0.f;
    }
    __syncthreads();
    if (!valid) continue;
    const int64_t count = min((int64_t)kTile, bhi - t);
    for (int64_t jj = 0; jj < count; ++jj) {
      const int64_t j = t + jj;
      if (j < lo || j >= hi) continue;
      float s = 0.f;
#pragma unroll
      for (int c = 0; c < DMAX; ++c) s += qr[c] * sk[jj][c];
      float m_new = fmaxf(m, s), corr = __expf(m - m_new), p = __expf(s - m_new);
      l = l * corr + p;
#pragma unroll
      for (int c = 0; c < DMAX; ++c) acc[c] = acc[c] * corr + p * sv[jj][c];
      m = m_new;
    }
  }
  if (valid) {
    for (int c = 0; c < d; ++c) out[(b * g.n + i) * d + c] = acc[c] / l;
    lse[b * g.n + i] = m + logf(l);
  }
}

__global__ void attn_delta_kernel(AttentionGeometry g, const float* out, const float* go, float* delta) {
  RF_GRID_STRIDE(r, g.bh * g.n) {
    float s = 0.f;
    for (int64_t c = 0; c < g.d; ++c) s += out[r * g.d + c] * go[r * g.d + c];
    delta[r] = s;
  }
}

template <int DMAX>
__global__ void attn_dq_kernel(AttentionGeometry g, const float* q, const float* k, const float* v, const float* lse,
                               const float* delta, const float* go, float* gq) {
  __shared__ float sk[kTile][DMAX], sv[kTile][DMAX];
  const int64_t b = blockIdx.y, i = (int64_t)blockIdx.x * kTile + threadIdx.x, d = g.d;
  const bool valid = i < g.n;
  const int64_t r = b * g.n + (valid ? i : 0);
  float qr[DMAX], gor[DMAX], acc[DMAX];
  for (int c = 0; c < DMAX; ++c) {
    qr[c] = (valid && c < d) ? q[r * d + c] * g.scale : 0.f;
    gor[c] = (valid && c < d) ? go[r * d + c] : 0.f;
    acc[c] = 0.f;
  }
  const float L = valid ? lse[r] : 0.f, D = valid ? delta[r] : 0.f;
  int64_t lo, hi, blo, bhi;
  window_of(g, valid ? i : g.n - 1, lo, hi);
  block_range(g, (int64_t)blockIdx.x * kTile, min(g.n - 1, (int64_t)blockIdx.x * kTile + kTile - 1), blo, bhi);
  for (int64_t t = blo; t < bhi; t += kTile) {
    __syncthreads();
    for (int64_t e = threadIdx.x; e < (int64_t)kTile * DMAX; e += blockDim.x) {  // all DMAX columns (see forward)
      int64_t jj = e / DMAX, c = e % DMAX, j = t + jj;
      const bool in = j < g.n && c < d;
      sk[jj][c] = in ? k[(b * g.n + j) * d + c] : 0.f;
      sv[jj][c] = in ? v[(b * g.n + j) * d + c] : 0.f;
    }
    __syncthreads();
    if (!valid) continue;
    const int64_t count = min((int64_t)kTile, bhi - t);
    for (int64_t jj = 0; jj < count; ++jj) {
      const int64_t j = t + jj;
      if (j < lo || j >= hi) continue;
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int c = 0; c < DMAX; ++c) {
        s += qr[c] * sk[jj][c];
        dp += gor[c] * sv[jj][c];
      }
      float ds = __expf(s - L) * (dp - D);
#pragma unroll
      for (int c = 0; c < DMAX; ++c) acc[c] += ds * sk[jj][c];
    }
  }
  if (valid)
    for (int c = 0; c < d; ++c) gq[r * d + c] = acc[c] * g.scale;
}

template <int DMAX>
__global__ void attn_dkv_kernel(AttentionGeometry g, const float* q, const float* k, const float* v, const float* lse,
                                const float* delta, const float* go, float* gk, float* gv) {
  __shared__ float sq[kTile][DMAX], sgo[kTile][DMAX], sl[kTile], sd[kTile];
  const int64_t b = blockIdx.y, j = (int64_t)blockIdx.x * kTile + threadIdx.x, d = g.d;
  const bool valid = j < g.n;
  const int64_t r = b * g.n + (valid ? j : 0);
  float kr[DMAX], vr[DMAX], ak[DMAX], av[DMAX];
  for (int c = 0; c < DMAX; ++c) {
    kr[c] = (valid && c < d) ? k[r * d + c] * g.scale : 0.f;
    vr[c] = (valid && c < d) ? v[r * d + c] : 0.f;
    ak[c] = av[c] = 0.f;
  }
  int64_t lo, hi, blo, bhi;  // windows are symmetric: the queries that see key j are j's window
  window_of(g, valid ? j : g.n - 1, lo, hi);
  block_range(g, (int64_t)blockIdx.x * kTile, min(g.n - 1, (int64_t)blockIdx.x * kTile + kTile - 1), blo, bhi);
  for (int64_t t = blo; t < bhi; t += kTile) {
    __syncthreads();
    for (int64_t e = threadIdx.x; e < (int64_t)kTile * DMAX; e += blockDim.x) {  // all DMAX columns (see forward)
      int64_t ii = e / DMAX, c = e % DMAX, i = t + ii;
      const bool in = i < g.n && c < d;
      sq[ii][c] = in ? q[(b * g.n + i) * d + c] : 0.f;
      sgo[ii][c] = in ? go[(b * g.n + i) * d + c] : 0.f;
    }
    for (int64_t ii = threadIdx.x; ii < kTile; ii += blockDim.x) {
      int64_t i = t + ii;
      sl[ii] = i < g.n ? lse[b * g.n + i] : 0.f;
      sd[ii] = i < g.n ? delta[b * g.n + i] : 0.f;
    }
    __syncthreads();
    if (!valid) continue;
    const int64_t count = min((int64_t)kTile, bhi - t);
    for (int64_t ii = 0; ii < count; ++ii) {
      const int64_t i = t + ii;
      if (i < lo || i >= hi) continue;
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int c = 0; c < DMAX; ++c) {
        s += sq[ii][c] * kr[c];
        dp += sgo[ii][c] * vr[c];
      }
      float p = __expf(s - sl[ii]), ds = p * (dp - sd[ii]);
#pragma unroll
      for (int c = 0; c < DMAX; ++c) {
        av[c] += p * sgo[ii][c];
        ak[c] += ds * sq[ii][c];
      }
    }
  }
  if (valid)
    for (int c = 0; c < d; ++c) {
      gk[r * d + c] = ak[c] * g.scale;
      gv[r * d + c] = av[c];
    }
}

template <int DMAX>
void launch_forward(const AttentionGeometry& g, const float* q, const float* k, const float* v, float* out, float* lse) {
  dim3 grid((unsigned)((g.n + kTile - 1) / kTile), (unsigned)g.bh);
  attn_fwd_kernel<DMAX><<<grid, kTile>>>(g, q, k, v, out, lse);
  RF_LAUNCH_CHECK("attention");
}

template <int DMAX>
void launch_backward(const AttentionGeometry& g, const float* q, const float* k, const float* v, const float* lse,
                     const float* delta, const float* go, float* gq, float* gk, float* gv) {
  dim3 grid((unsigned)((g.n + kTile - 1) / kTile), (unsigned)g.bh);
  attn_dq_kernel<DMAX><<<grid, kTile>>>(g, q, k, v, lse, delta, go, gq);
  RF_LAUNCH_CHECK("attention backward (dQ)");
  attn_dkv_kernel<DMAX><<<grid, kTile>>>(g, q, k, v, lse, delta, go, gk, gv);
  RF_LAUNCH_CHECK("attention backward (dK, dV)");
}

}  // namespace

void attention_forward(const AttentionGeometry& g, const float* q, const float* k, const float* v, float* out,
                       float* lse) {
  RF_CHECK(g.bh <= 65535, "attention on cuda: batch x heads = ", g.bh, " exceeds 65535");
  if (g.bh * g.n == 0) return;  // nothing to attend (an empty grid is an invalid launch)
  if (g.d <= 16)
    launch_forward<16>(g, q, k, v, out, lse);
  else if (g.d <= 32)
    launch_forward<32>(g, q, k, v, out, lse);
  else
    launch_forward<64>(g, q, k, v, out, lse);
}

void attention_backward(const AttentionGeometry& g, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* go, float* gq, float* gk, float* gv) {
  if (g.bh * g.n == 0) return;
  size_t bytes = sizeof(float) * (size_t)(g.bh * g.n);
  float* delta = static_cast<float*>(device_alloc(Device::CUDA, bytes));
  try {
    attn_delta_kernel<<<rf_blocks(g.bh * g.n), 256>>>(g, out, go, delta);
    RF_LAUNCH_CHECK("attention backward (delta)");
    if (g.d <= 16)
      launch_backward<16>(g, q, k, v, lse, delta, go, gq, gk, gv);
    else if (g.d <= 32)
      launch_backward<32>(g, q, k, v, lse, delta, go, gq, gk, gv);
    else
      launch_backward<64>(g, q, k, v, lse, delta, go, gq, gk, gv);
  } catch (...) {
    device_free(Device::CUDA, delta, bytes);
    throw;
  }
  device_free(Device::CUDA, delta, bytes);
}

}  // namespace rf::gpu
