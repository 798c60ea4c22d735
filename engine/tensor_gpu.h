// CUDA launchers used by the tensor core (defined in tensor.cu).
#pragma once
#include <cstdint>

namespace rf::gpu {
void fill(float* p, int64_t n, float v);
void add_inplace(float* dst, const float* src, int64_t n);  // dst += src
}  // namespace rf::gpu
