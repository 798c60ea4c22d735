#include "ops/cuda_common.cuh"
#include "ops/pool_impl.h"

namespace rf::gpu {

__global__ void max_pool_fwd_kernel(PoolGeometry g, const float* x, float* y, int32_t* arg) {
  RF_GRID_STRIDE(i, g.planes * g.h_out * g.w_out) max_pool_one(g, x, y, arg, i);
}
__global__ void max_pool_bwd_kernel(PoolGeometry g, const float* gy, const int32_t* arg, float* gx) {
  RF_GRID_STRIDE(i, g.planes * g.h * g.w) max_pool_grad_one(g, gy, arg, gx, i);
}
__global__ void avg_pool_fwd_kernel(PoolGeometry g, const float* x, float* y) {
  RF_GRID_STRIDE(i, g.planes * g.h_out * g.w_out) avg_pool_one(g, x, y, i);
}
__global__ void avg_pool_bwd_kernel(PoolGeometry g, const float* gy, float* gx) {
  RF_GRID_STRIDE(i, g.planes * g.h * g.w) avg_pool_grad_one(g, gy, gx, i);
}

void max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* arg) {
  max_pool_fwd_kernel<<<rf_blocks(g.planes * g.h_out * g.w_out), 256>>>(g, x, y, arg);
  RF_LAUNCH_CHECK("max_pool2d");
}
void max_pool_backward(const PoolGeometry& g, const float* gy, const int32_t* arg, float* gx) {
  max_pool_bwd_kernel<<<rf_blocks(g.planes * g.h * g.w), 256>>>(g, gy, arg, gx);
  RF_LAUNCH_CHECK("max_pool2d backward");
}
void avg_pool_forward(const PoolGeometry& g, const float* x, float* y) {
  avg_pool_fwd_kernel<<<rf_blocks(g.planes * g.h_out * g.w_out), 256>>>(g, x, y);
  RF_LAUNCH_CHECK("avg_pool2d");
}
void avg_pool_backward(const PoolGeometry& g, const float* gy, float* gx) {
  avg_pool_bwd_kernel<<<rf_blocks(g.planes * g.h * g.w), 256>>>(g, gy, gx);
  RF_LAUNCH_CHECK("avg_pool2d backward");
}

}  // namespace rf::gpu
