// Kernel layer of ops/kernel_bank.h. Taps are stored as [K, T] (T = 2 R + 1 for the largest radius R), each
// kernel centred, with its own radius in radius[K] so that small kernels cost only their own taps.
#pragma once
#include <cstdint>

namespace rf {

struct BankGeometry {
  int64_t b = 0, c = 0, j = 0, q = 1, h = 0, w = 0;
  int64_t t = 1;  // stored taps per kernel (2 R + 1)
  const float* taps = nullptr;      // [K, t]
  const int32_t* radius = nullptr;  // [K]
  const int32_t* channel = nullptr; // [J]
  const int32_t* kernel = nullptr;  // [J * q]
  // Backward: the output planes of each input channel, planes_of[offset[c] .. offset[c + 1]).
  const int32_t* plane_offset = nullptr;  // [C + 1]
  const int32_t* planes_of = nullptr;     // [J]
};

#define RF_BANK_KERNELS                                                                                      \
  /* out [B, J, H, W]; weights [B, J, q] or null (ones) */                                                   \
  void bank_forward(const BankGeometry& g, const float* x, const float* weights, float* out);               \
  /* gx [B, C, H, W] (written), gw [B, J, q] (written when not null) */                                      \
  void bank_backward(const BankGeometry& g, const float* x, const float* weights, const float* gout, float* gx, \
                     float* gw);

namespace cpu {
RF_BANK_KERNELS
}
namespace gpu {
RF_BANK_KERNELS
}
#undef RF_BANK_KERNELS

}  // namespace rf
