#include "engine/cuda_check.h"
#include "engine/tensor_gpu.h"

namespace rf::gpu {

__global__ void fill_kernel(float* p, int64_t n, float v) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = v;
}

void fill(float* p, int64_t n, float v) {
  if (n == 0) return;
  fill_kernel<<<rf_blocks(n), 256>>>(p, n, v);
  RF_LAUNCH_CHECK("fill");
}

__global__ void add_inplace_kernel(float* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] += src[i];
}

void add_inplace(float* dst, const float* src, int64_t n) {
  if (n == 0) return;
  add_inplace_kernel<<<rf_blocks(n), 256>>>(dst, src, n);
  RF_LAUNCH_CHECK("add_ (gradient accumulation)");
}

}  // namespace rf::gpu
