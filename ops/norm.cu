#include "ops/cuda_common.cuh"
#include "ops/norm_impl.h"

namespace rf::gpu {

// One thread per row: rows are strided by `inner`, so neighbouring threads read neighbouring floats.
__global__ void ln_fwd_kernel(NormGeometry g, const float* x, const float* w, const float* b, float* y, float* mean,
                              float* rstd, float eps) {
  RF_GRID_STRIDE(r, g.outer * g.inner) {
    int64_t base = (r / g.inner) * g.d * g.inner + r % g.inner;
    float s = 0.f;
    for (int64_t k = 0; k < g.d; ++k) s += x[base + k * g.inner];
    float mu = s / (float)g.d, ss = 0.f;
    for (int64_t k = 0; k < g.d; ++k) {
      float dv = x[base + k * g.inner] - mu;
      ss += dv * dv;
    }
    float rs = rsqrtf(ss / (float)g.d + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (int64_t k = 0; k < g.d; ++k)
      y[base + k * g.inner] = (x[base + k * g.inner] - mu) * rs * (w ? w[k] : 1.f) + (b ? b[k] : 0.f);
  }
}

__global__ void ln_bwd_kernel(NormGeometry g, const float* x, const float* w, const float* mean, const float* rstd,
                              const float* gy, float* gx) {
  RF_GRID_STRIDE(r, g.outer * g.inner) {
    int64_t base = (r / g.inner) * g.d * g.inner + r % g.inner;
    float a = 0.f, bs = 0.f;
    for (int64_t k = 0; k < g.d; ++k) {
      int64_t j = base + k * g.inner;
      float gh = gy[j] * (w ? w[k] : 1.f), xh = (x[j] - mean[r]) * rstd[r];
      a += gh;
      bs += gh * xh;
    }
    a /= (float)g.d;
    bs /= (float)g.d;
    for (int64_t k = 0; k < g.d; ++k) {
      int64_t j = base + k * g.inner;
      float gh = gy[j] * (w ? w[k] : 1.f), xh = (x[j] - mean[r]) * rstd[r];
      gx[j] = rstd[r] * (gh - a - xh * bs);
    }
  }
}

// One block per channel, threads stride over the channel's values.
__global__ void channel_stats_kernel(NormGeometry g, const float* x, float* mean, float* var) {
  int64_t c = blockIdx.x, count = g.outer * g.inner;
  __shared__ float mu_shared;
  float s = 0.f;
  for (int64_t t = threadIdx.x; t < count; t += blockDim.x) s += x[((t / g.inner) * g.d + c) * g.inner + t % g.inner];
  s = block_sum(s);
  if (threadIdx.x == 0) mu_shared = s / (float)count;
  __syncthreads();
  float mu = mu_shared, ss = 0.f;
  for (int64_t t = threadIdx.x; t < count; t += blockDim.x) {
    float dv = x[((t / g.inner) * g.d + c) * g.inner + t % g.inner] - mu;
    ss += dv * dv;
  }
  ss = block_sum(ss);
  if (threadIdx.x == 0) {
    mean[c] = mu;
    var[c] = ss / (float)count;
  }
}

__global__ void channel_affine_kernel(NormGeometry g, const float* x, const float* mean, const float* rstd,
                                      const float* w, const float* b, float* y) {
  RF_GRID_STRIDE(j, g.outer * g.d * g.inner) {
    int64_t c = (j / g.inner) % g.d;
    y[j] = (x[j] - mean[c]) * rstd[c] * (w ? w[c] : 1.f) + (b ? b[c] : 0.f);
  }
}

__global__ void channel_grad_sums_kernel(NormGeometry g, const float* x, const float* mean, const float* rstd,
                                         bool per_channel, const float* gy, float* sum_g, float* sum_gx) {
  int64_t c = blockIdx.x, count = g.outer * g.inner;
  float sg = 0.f, sgx = 0.f;
  for (int64_t t = threadIdx.x; t < count; t += blockDim.x) {
    int64_t o = t / g.inner, i = t % g.inner;
    int64_t j = (o * g.d + c) * g.inner + i, s = per_channel ? c : o * g.inner + i;
    sg += gy[j];
    sgx += gy[j] * ((x[j] - mean[s]) * rstd[s]);
  }
  sg = block_sum(sg);
  sgx = block_sum(sgx);
  if (threadIdx.x == 0) {
    sum_g[c] = sg;
    sum_gx[c] = sgx;
  }
}

__global__ void bn_bwd_kernel(NormGeometry g, const float* x, const float* mean, const float* rstd, const float* w,
                              const float* gy, const float* sum_g, const float* sum_gx, float* gx) {
  const float inv_count = 1.f / (float)(g.outer * g.inner);
  RF_GRID_STRIDE(j, g.outer * g.d * g.inner) {
    int64_t c = (j / g.inner) % g.d;
    float v = gy[j];
    if (sum_g) v -= (sum_g[c] + (x[j] - mean[c]) * rstd[c] * sum_gx[c]) * inv_count;
    gx[j] = (w ? w[c] : 1.f) * rstd[c] * v;
  }
}

void layer_norm_forward(const NormGeometry& g, const float* x, const float* w, const float* b, float* y, float* mean,
                        float* rstd, float eps) {
  ln_fwd_kernel<<<rf_blocks(g.outer * g.inner), 256>>>(g, x, w, b, y, mean, rstd, eps);
  RF_LAUNCH_CHECK("layer_norm");
}
void layer_norm_backward_input(const NormGeometry& g, const float* x, const float* w, const float* mean,
                               const float* rstd, const float* gy, float* gx) {
  ln_bwd_kernel<<<rf_blocks(g.outer * g.inner), 256>>>(g, x, w, mean, rstd, gy, gx);
  RF_LAUNCH_CHECK("layer_norm backward");
}
void channel_stats(const NormGeometry& g, const float* x, float* mean, float* var) {
  if (g.d == 0) return;  // no channel: an empty grid is an invalid launch
  channel_stats_kernel<<<(unsigned)g.d, 256>>>(g, x, mean, var);
  RF_LAUNCH_CHECK("batch_norm statistics");
}
void channel_affine(const NormGeometry& g, const float* x, const float* mean, const float* rstd, const float* w,
                    const float* b, float* y) {
  channel_affine_kernel<<<rf_blocks(g.outer * g.d * g.inner), 256>>>(g, x, mean, rstd, w, b, y);
  RF_LAUNCH_CHECK("batch_norm");
}
void channel_grad_sums(const NormGeometry& g, const float* x, const float* mean, const float* rstd,
                       bool stats_per_channel, const float* gy, float* sum_g, float* sum_gx) {
  if (g.d == 0) return;  // no channel: an empty grid is an invalid launch
  channel_grad_sums_kernel<<<(unsigned)g.d, 256>>>(g, x, mean, rstd, stats_per_channel, gy, sum_g, sum_gx);
  RF_LAUNCH_CHECK("normalisation parameter gradients");
}
void batch_norm_backward_input(const NormGeometry& g, const float* x, const float* mean, const float* rstd,
                               const float* w, const float* gy, const float* sum_g, const float* sum_gx, float* gx) {
  bn_bwd_kernel<<<rf_blocks(g.outer * g.d * g.inner), 256>>>(g, x, mean, rstd, w, gy, sum_g, sum_gx, gx);
  RF_LAUNCH_CHECK("batch_norm backward");
}

}  // namespace rf::gpu
