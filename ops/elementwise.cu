// CUDA versions of the elementwise kernels; the formulas come from elementwise_math.h.
#include "engine/cuda_check.h"
#include "engine/rng.h"
#include "ops/elementwise_impl.h"

namespace rf::gpu {

__global__ void unary_fwd_kernel(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1) {
  RF_GRID_STRIDE(i, n) y[i] = unary_fwd(op, x[i], p0, p1);
}

__global__ void unary_bwd_kernel(UnaryOp op, const float* x, const float* y, const float* g, float* gx, int64_t n,
                                 float p0, float p1) {
  RF_GRID_STRIDE(i, n) gx[i] = unary_bwd(op, x[i], y[i], g[i], p0, p1);
}

__global__ void binary_fwd_kernel(BinaryOp op, StridedIndexer ix, const float* a, const float* b, float* out,
                                  int64_t n) {
  RF_GRID_STRIDE(i, n) {
    int64_t oa, ob;
    strided_offsets(ix, i, oa, ob);
    out[i] = binary_fwd(op, a[oa], b[ob]);
  }
}

__global__ void binary_bwd_kernel(BinaryOp op, int which, StridedIndexer ix, const float* a, const float* b,
                                  const float* g, float* grad, int64_t n) {
  RF_GRID_STRIDE(i, n) {
    int64_t oa, ob;
    strided_offsets(ix, i, oa, ob);
    grad[i] = binary_bwd(op, which, a[oa], b[ob], g[i]);
  }
}

__global__ void axpy_kernel(float* dst, const float* src, float alpha, int64_t n) {
  RF_GRID_STRIDE(i, n) dst[i] += alpha * src[i];
}

__global__ void scale_kernel(float* dst, float s, int64_t n) { RF_GRID_STRIDE(i, n) dst[i] *= s; }

__global__ void uniform_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi) {
  RF_GRID_STRIDE(i, n) out[i] = lo + (hi - lo) * philox_uniform(seed, offset + (uint64_t)i);
}

__global__ void normal_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  RF_GRID_STRIDE(i, n) out[i] = philox_normal(seed, offset + (uint64_t)i);
}

__global__ void dropout_kernel(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset) {
  const float keep_scale = 1.f / (1.f - p);
  RF_GRID_STRIDE(i, n) y[i] = philox_uniform(seed, offset + (uint64_t)i) >= p ? x[i] * keep_scale : 0.f;
}

__global__ void copy_strided_kernel(StridedIndexer ix, float* dst, const float* src, int64_t n) {
  RF_GRID_STRIDE(i, n) {
    int64_t od, os;
    strided_offsets(ix, i, od, os);
    dst[od] = src[os];
  }
}

void copy_strided(const StridedIndexer& ix, float* dst, const float* src, int64_t n) {
  if (n == 0) return;
  copy_strided_kernel<<<rf_blocks(n), 256>>>(ix, dst, src, n);
  RF_LAUNCH_CHECK("copy_strided");
}

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1) {
  if (n == 0) return;
  unary_fwd_kernel<<<rf_blocks(n), 256>>>(op, x, y, n, p0, p1);
  RF_LAUNCH_CHECK("unary_forward");
}

void unary_backward(UnaryOp op, const float* x, const float* y, const float* g, float* gx, int64_t n, float p0,
                    float p1) {
  if (n == 0) return;
  unary_bwd_kernel<<<rf_blocks(n), 256>>>(op, x, y, g, gx, n, p0, p1);
  RF_LAUNCH_CHECK("unary_backward");
}

void binary_forward(BinaryOp op, const StridedIndexer& ix, const float* a, const float* b, float* out, int64_t n) {
  if (n == 0) return;
  binary_fwd_kernel<<<rf_blocks(n), 256>>>(op, ix, a, b, out, n);
  RF_LAUNCH_CHECK("binary_forward");
}

void binary_backward(BinaryOp op, int which, const StridedIndexer& ix, const float* a, const float* b,
                     const float* g, float* grad, int64_t n) {
  if (n == 0) return;
  binary_bwd_kernel<<<rf_blocks(n), 256>>>(op, which, ix, a, b, g, grad, n);
  RF_LAUNCH_CHECK("binary_backward");
}

void axpy(float* dst, const float* src, float alpha, int64_t n) {
  if (n == 0) return;
  axpy_kernel<<<rf_blocks(n), 256>>>(dst, src, alpha, n);
  RF_LAUNCH_CHECK("axpy");
}

void scale(float* dst, float s, int64_t n) {
  if (n == 0) return;
  scale_kernel<<<rf_blocks(n), 256>>>(dst, s, n);
  RF_LAUNCH_CHECK("scale");
}

void fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi) {
  if (n == 0) return;
  uniform_kernel<<<rf_blocks(n), 256>>>(out, n, seed, offset, lo, hi);
  RF_LAUNCH_CHECK("fill_uniform");
}

void fill_normal(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  if (n == 0) return;
  normal_kernel<<<rf_blocks(n), 256>>>(out, n, seed, offset);
  RF_LAUNCH_CHECK("fill_normal");
}

void dropout_apply(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset) {
  if (n == 0) return;
  dropout_kernel<<<rf_blocks(n), 256>>>(x, y, n, p, seed, offset);
  RF_LAUNCH_CHECK("dropout");
}

}  // namespace rf::gpu
