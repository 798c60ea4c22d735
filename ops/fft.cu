// fft2 through cuFFT (complex-to-complex, batched over planes; plans cached per shape).
#include <cufft.h>

#include <map>
#include <mutex>
#include <tuple>

#include "engine/allocator.h"
#include "engine/device.h"
#include "ops/cuda_common.cuh"
#include "ops/fft_impl.h"

namespace rf::gpu {

#define RF_CUFFT_CHECK(stmt)                                                                                 \
  do {                                                                                                       \
    cufftResult r_ = (stmt);                                                                                 \
    if (r_ != CUFFT_SUCCESS) throw ::rf::Error(::rf::cat("cuFFT error ", (int)r_, " in ", #stmt, " at ", __FILE__, ":", __LINE__, ::rf::cuda_op_context())); \
  } while (0)

static cufftHandle plan_for(int64_t planes, int64_t h, int64_t w) {
  static std::map<std::tuple<int64_t, int64_t, int64_t>, cufftHandle> plans;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(planes, h, w);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  cufftHandle p;
  int n[2] = {(int)h, (int)w};
  cuda_empty_cache();  // cuFFT allocates the plan's work area with cudaMalloc, around our caching allocator
  RF_CUFFT_CHECK(cufftPlanMany(&p, 2, n, nullptr, 1, (int)(h * w), nullptr, 1, (int)(h * w), CUFFT_C2C, (int)planes));
  plans[key] = p;
  return p;
}

__global__ void real_to_complex_kernel(const float* x, float2* c, int64_t n) {
  RF_GRID_STRIDE(i, n) c[i] = make_float2(x[i], 0.f);
}
__global__ void complex_real_part_kernel(const float2* c, float* x, int64_t n) { RF_GRID_STRIDE(i, n) x[i] = c[i].x; }

void fft2_forward(const float* x, float* out, int64_t planes, int64_t h, int64_t w) {
  int64_t n = planes * h * w;
  float2* c = reinterpret_cast<float2*>(out);  // the output buffer holds the complex input, then the result
  real_to_complex_kernel<<<rf_blocks(n), 256>>>(x, c, n);
  RF_LAUNCH_CHECK("fft2 pack");
  try {
    RF_CUFFT_CHECK(cufftExecC2C(plan_for(planes, h, w), (cufftComplex*)c, (cufftComplex*)c, CUFFT_FORWARD));
  } catch (const Error& e) {
    throw Error(cat("fft2 on cuda (", planes, " planes of ", h, "x", w, "): ", e.what()));
  }
}

void fft2_backward(const float* g, float* gx, int64_t planes, int64_t h, int64_t w) {
  int64_t n = planes * h * w;
  size_t bytes = sizeof(float2) * (size_t)n;
  float2* tmp = static_cast<float2*>(device_alloc(Device::CUDA, bytes));
  try {
    RF_CUDA_CHECK(cudaMemcpyAsync(tmp, g, bytes, cudaMemcpyDeviceToDevice));
    RF_CUFFT_CHECK(cufftExecC2C(plan_for(planes, h, w), (cufftComplex*)tmp, (cufftComplex*)tmp, CUFFT_INVERSE));
    complex_real_part_kernel<<<rf_blocks(n), 256>>>(tmp, gx, n);
    RF_LAUNCH_CHECK("fft2 backward unpack");
  } catch (const Error& e) {
    device_free(Device::CUDA, tmp, bytes);
    throw Error(cat("fft2 backward on cuda (", planes, " planes of ", h, "x", w, "): ", e.what()));
  }
  device_free(Device::CUDA, tmp, bytes);
}

}  // namespace rf::gpu
