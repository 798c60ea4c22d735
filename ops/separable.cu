#include "ops/cuda_common.cuh"
#include "ops/separable_impl.h"

namespace rf::gpu {

__global__ void filter_valid_kernel(const float* in, float* out, int64_t planes, int64_t h, int64_t w, const float* taps,
                                    int64_t k, bool vertical) {
  const int64_t ho = vertical ? h - k + 1 : h, wo = vertical ? w : w - k + 1;
  RF_GRID_STRIDE(i, planes * ho * wo) {
    int64_t x = i % wo, y = (i / wo) % ho, p = i / (wo * ho);
    const float* src = in + (p * h + y) * w + x;
    const int64_t step = vertical ? w : 1;
    float acc = 0.f;
    for (int64_t t = 0; t < k; ++t) acc += taps[t] * src[t * step];
    out[i] = acc;
  }
}

// Gather form of the adjoint: each input position sums the outputs that read it.
__global__ void filter_full_kernel(const float* in, float* out, int64_t planes, int64_t ho, int64_t wo, const float* taps,
                                   int64_t k, bool vertical) {
  const int64_t h = vertical ? ho + k - 1 : ho, w = vertical ? wo : wo + k - 1;
  RF_GRID_STRIDE(i, planes * h * w) {
    int64_t x = i % w, y = (i / w) % h, p = i / (w * h);
    float acc = 0.f;
    for (int64_t t = 0; t < k; ++t) {
      int64_t sy = vertical ? y - t : y, sx = vertical ? x : x - t;
      if (sy >= 0 && sy < ho && sx >= 0 && sx < wo) acc += taps[t] * in[(p * ho + sy) * wo + sx];
    }
    out[i] = acc;
  }
}

void filter_valid(const float* in, float* out, int64_t planes, int64_t h, int64_t w, const float* taps, int64_t k,
                  bool vertical) {
  int64_t n = planes * (vertical ? (h - k + 1) * w : h * (w - k + 1));
  if (n == 0) return;
  filter_valid_kernel<<<rf_blocks(n), 256>>>(in, out, planes, h, w, taps, k, vertical);
  RF_LAUNCH_CHECK("separable_filter");
}

void filter_full(const float* in, float* out, int64_t planes, int64_t ho, int64_t wo, const float* taps, int64_t k,
                 bool vertical) {
  int64_t n = planes * (vertical ? (ho + k - 1) * wo : ho * (wo + k - 1));
  if (n == 0) return;
  filter_full_kernel<<<rf_blocks(n), 256>>>(in, out, planes, ho, wo, taps, k, vertical);
  RF_LAUNCH_CHECK("separable_filter backward");
}

}  // namespace rf::gpu
