#include "ops/pool.h"

#include <algorithm>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/pool_impl.h"
#include "ops/reduce.h"

namespace rf {

namespace cpu {
constexpr int64_t kPar = 1 << 14;
void max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* arg) {
  int64_t n = g.planes * g.h_out * g.w_out;
#pragma omp parallel for if (n > kPar)
  for (int64_t i = 0; i < n; ++i) max_pool_one(g, x, y, arg, i);
}
// Each output adds its gradient to the pixel it took, plane by plane in output order: for every pixel the same
// additions in the same order as the gather the GPU does (max_pool_grad_one), without searching each pixel's windows.
void max_pool_backward(const PoolGeometry& g, const float* gy, const int32_t* arg, float* gx) {
  const int64_t in_plane = g.h * g.w, out_plane = g.h_out * g.w_out;
#pragma omp parallel for if (g.planes * in_plane > kPar)
  for (int64_t p = 0; p < g.planes; ++p) {
    float* gp = gx + p * in_plane;
    const float* gyp = gy + p * out_plane;
    const int32_t* ap = arg + p * out_plane;
    std::fill(gp, gp + in_plane, 0.f);
    for (int64_t o = 0; o < out_plane; ++o)
      if (ap[o] >= 0) gp[ap[o]] += gyp[o];
  }
}
void avg_pool_forward(const PoolGeometry& g, const float* x, float* y) {
  int64_t n = g.planes * g.h_out * g.w_out;
#pragma omp parallel for if (n > kPar)
  for (int64_t i = 0; i < n; ++i) avg_pool_one(g, x, y, i);
}
void avg_pool_backward(const PoolGeometry& g, const float* gy, float* gx) {
  int64_t n = g.planes * g.h * g.w;
#pragma omp parallel for if (n > kPar)
  for (int64_t i = 0; i < n; ++i) avg_pool_grad_one(g, gy, gx, i);
}
}  // namespace cpu

static PoolGeometry pool_geometry(const char* op, const Tensor& x, int64_t k, int64_t s, int64_t p) {
  RF_CHECK(x.dim() == 4, op, ": expected [N, C, H, W], got ", describe(x));
  RF_CHECK(k >= 1 && s >= 1 && p >= 0 && 2 * p <= k, op, ": kernel ", k, ", stride ", s, ", padding ", p,
           " are invalid (padding may be at most half the kernel)");
  PoolGeometry g{x.size(0) * x.size(1), x.size(2), x.size(3), k, s, p, (x.size(2) + 2 * p - k) / s + 1,
                 (x.size(3) + 2 * p - k) / s + 1};
  RF_CHECK(x.size(2) + 2 * p >= k && x.size(3) + 2 * p >= k, op, ": kernel ", k, " is larger than the padded input ",
           describe(x));
  return g;
}

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  PoolGeometry g = pool_geometry("max_pool2d", x, kernel, stride, padding);
  Tensor y = empty({x.size(0), x.size(1), g.h_out, g.w_out}, x.device());
  Tensor arg = empty(y.shape(), x.device());  // int32 argmax in a float-sized buffer
  int32_t* a = reinterpret_cast<int32_t*>(arg.data());
  if (x.is_cuda())
    RF_GPU_OP("max_pool2d", (x), gpu::max_pool_forward(g, x.data(), y.data(), a));
  else
    cpu::max_pool_forward(g, x.data(), y.data(), a);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "max_pool2d", {x}, [g, arg, in_shape](const Tensor& gy) {
      Tensor gx = empty(in_shape, gy.device());
      const int32_t* a = reinterpret_cast<const int32_t*>(arg.data());
      if (gy.is_cuda())
        RF_GPU(gpu::max_pool_backward(g, gy.data(), a, gx.data()));
      else
        cpu::max_pool_backward(g, gy.data(), a, gx.data());
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  PoolGeometry g = pool_geometry("avg_pool2d", x, kernel, stride, padding);
  Tensor y = empty({x.size(0), x.size(1), g.h_out, g.w_out}, x.device());
  if (x.is_cuda())
    RF_GPU_OP("avg_pool2d", (x), gpu::avg_pool_forward(g, x.data(), y.data()));
  else
    cpu::avg_pool_forward(g, x.data(), y.data());
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "avg_pool2d", {x}, [g, in_shape](const Tensor& gy) {
      Tensor gx = empty(in_shape, gy.device());
      if (gy.is_cuda())
        RF_GPU(gpu::avg_pool_backward(g, gy.data(), gx.data()));
      else
        cpu::avg_pool_backward(g, gy.data(), gx.data());
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor global_avg_pool(const Tensor& x) {
  RF_CHECK(x.dim() == 4, "global_avg_pool: expected [N, C, H, W], got ", describe(x));
  return mean(x, {2, 3}, true);
}

}  // namespace rf
