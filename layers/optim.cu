#include "engine/cuda_check.h"
#include "layers/optim_impl.h"

namespace rf::gpu {

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                            float eps, float wd, bool decoupled, float bc1, float bc2) {
  RF_GRID_STRIDE(i, n) adam_one(p[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, decoupled, bc1, bc2);
}

__global__ void sgd_kernel(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, float dampening,
                           float wd, bool nesterov, bool first) {
  RF_GRID_STRIDE(i, n) {
    float unused = 0.f;
    sgd_one(p[i], g[i], buf ? buf[i] : unused, lr, momentum, dampening, wd, nesterov, first);
  }
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                 float wd, bool decoupled, float bc1, float bc2) {
  if (n == 0) return;
  adam_kernel<<<rf_blocks(n), 256>>>(p, g, m, v, n, lr, b1, b2, eps, wd, decoupled, bc1, bc2);
  RF_LAUNCH_CHECK("adam_update");
}

void sgd_update(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, float dampening, float wd,
                bool nesterov, bool first) {
  if (n == 0) return;
  sgd_kernel<<<rf_blocks(n), 256>>>(p, g, buf, n, lr, momentum, dampening, wd, nesterov, first);
  RF_LAUNCH_CHECK("sgd_update");
}

}  // namespace rf::gpu
