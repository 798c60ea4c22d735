#pragma once
#include <cstdint>

namespace rf {
// planes: number of [h, w] images. Forward: real -> interleaved complex. Backward: the gradient of the
// forward, i.e. the real part of the unnormalised inverse transform of the complex gradient.
#define RF_FFT_KERNELS                                                                       \
  void fft2_forward(const float* x, float* out, int64_t planes, int64_t h, int64_t w);     \
  void fft2_backward(const float* g, float* gx, int64_t planes, int64_t h, int64_t w);

namespace cpu {
RF_FFT_KERNELS
}
namespace gpu {
RF_FFT_KERNELS
}
#undef RF_FFT_KERNELS
}  // namespace rf
