// CUDA, cuBLAS, cuDNN and cuFFT status checks that throw rf::Error naming the statement and place.
// Included only by files compiled with CUDA support.
#pragma once
#include <cuda_runtime.h>

#include "engine/error.h"

namespace rf {
// After every kernel launch: a launch error throws at once; with REFOCUS_SYNC_DEBUG=1 in the
// environment the device is also synchronised, so an asynchronous fault is blamed on the right op.
void cuda_after_launch(const char* what, const char* file, int line);
// "; the last op to start CUDA work: convolution on [..], [..] ..." (last_cuda_op, engine/device.h), or "" before any.
std::string cuda_op_context();
}  // namespace rf

#define RF_CUDA_CHECK(stmt)                                                                   \
  do {                                                                                        \
    cudaError_t rf_err_ = (stmt);                                                             \
    if (rf_err_ != cudaSuccess)                                                               \
      throw ::rf::Error(::rf::cat("CUDA error '", cudaGetErrorString(rf_err_), "' in ", #stmt, \
                                  " at ", __FILE__, ":", __LINE__, ::rf::cuda_op_context())); \
  } while (0)

#define RF_LAUNCH_CHECK(what) ::rf::cuda_after_launch(what, __FILE__, __LINE__)

// Grid size for n elements with `threads` per block, capped so the grid-stride loops cover the rest.
inline unsigned rf_blocks(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return (unsigned)(b < 1 ? 1 : b);
}

// Grid-stride loop over 0..n-1: kernels stay correct for any grid size.
#define RF_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
