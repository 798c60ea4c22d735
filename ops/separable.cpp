#include "ops/separable.h"

#include <cmath>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/separable_impl.h"

namespace rf {

namespace cpu {

// in [planes, h, w] -> out [planes, h - k + 1, w] (vertical) or [planes, h, w - k + 1] (horizontal).
void filter_valid(const float* in, float* out, int64_t planes, int64_t h, int64_t w, const float* taps, int64_t k,
                  bool vertical) {
  const int64_t ho = vertical ? h - k + 1 : h, wo = vertical ? w : w - k + 1;
#pragma omp parallel for if (planes * ho * wo * k > (1 << 16))
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t y = 0; y < ho; ++y) {
      float* o = out + (p * ho + y) * wo;
      for (int64_t x = 0; x < wo; ++x) o[x] = 0.f;
      for (int64_t t = 0; t < k; ++t) {
        const float* src = vertical ? in + (p * h + y + t) * w : in + (p * h + y) * w + t;
        const float tv = taps[t];
        for (int64_t x = 0; x < wo; ++x) o[x] += tv * src[x];
      }
    }
}

// The adjoint of filter_valid: in [planes, h_out, w_out] (the valid output) -> out [planes, h, w].
void filter_full(const float* in, float* out, int64_t planes, int64_t ho, int64_t wo, const float* taps, int64_t k,
                 bool vertical) {
  const int64_t h = vertical ? ho + k - 1 : ho, w = vertical ? wo : wo + k - 1;
#pragma omp parallel for if (planes * h * w * k > (1 << 16))
  for (int64_t p = 0; p < planes; ++p) {
    float* o = out + p * h * w;
    for (int64_t i = 0; i < h * w; ++i) o[i] = 0.f;
    for (int64_t y = 0; y < ho; ++y)
      for (int64_t t = 0; t < k; ++t) {
        const float* src = in + (p * ho + y) * wo;
        float* dst = vertical ? o + (y + t) * w : o + y * w + t;
        const float tv = taps[t];
        for (int64_t x = 0; x < wo; ++x) dst[x] += tv * src[x];
      }
  }
}

}  // namespace cpu

std::vector<float> gaussian_taps(float sigma, int radius) {
  std::vector<float> t(2 * radius + 1);
  double s = 0;
  for (int i = -radius; i <= radius; ++i) s += t[i + radius] = (float)std::exp(-0.5 * i * i / ((double)sigma * sigma));
  for (float& v : t) v = (float)(v / s);
  return t;
}

static void run_pass(bool full, const Tensor& in, Tensor& out, int64_t planes, int64_t h, int64_t w,
                     const Tensor& taps, int64_t k, bool vertical) {
  if (in.is_cuda()) {
    if (full)
      RF_GPU_OP("separable filter", (in, taps),
                gpu::filter_full(in.data(), out.data(), planes, h, w, taps.data(), k, vertical));
    else
      RF_GPU_OP("separable filter", (in, taps),
                gpu::filter_valid(in.data(), out.data(), planes, h, w, taps.data(), k, vertical));
  } else {
    if (full)
      cpu::filter_full(in.data(), out.data(), planes, h, w, taps.data(), k, vertical);
    else
      cpu::filter_valid(in.data(), out.data(), planes, h, w, taps.data(), k, vertical);
  }
}

Tensor separable_filter(const Tensor& x, const std::vector<float>& kernel_h, const std::vector<float>& kernel_w) {
  RF_CHECK(x.dim() >= 2, "separable_filter: needs [..., H, W], got ", describe(x));
  const int64_t kh = (int64_t)kernel_h.size(), kw = (int64_t)kernel_w.size();
  const int64_t h = x.size(-2), w = x.size(-1), planes = h * w != 0 ? x.numel() / (h * w) : 0;
  RF_CHECK(kh >= 1 && kw >= 1 && kh <= h && kw <= w, "separable_filter: kernels of ", kh, " and ", kw,
           " taps do not fit ", describe(x));
  Tensor th = from_vector(kernel_h, {kh}, x.device()), tw = from_vector(kernel_w, {kw}, x.device());
  const int64_t ho = h - kh + 1, wo = w - kw + 1;
  Tensor mid = empty({planes, ho, w}, x.device());
  run_pass(false, x, mid, planes, h, w, th, kh, true);
  Shape os = x.shape();
  os[os.size() - 2] = ho;
  os[os.size() - 1] = wo;
  Tensor y = empty(os, x.device());
  run_pass(false, mid, y, planes, ho, w, tw, kw, false);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "separable_filter", {x}, [=](const Tensor& g) {
      Tensor gm = empty({planes, ho, w}, g.device()), gx = empty(in_shape, g.device());
      run_pass(true, g, gm, planes, ho, wo, tw, kw, false);
      run_pass(true, gm, gx, planes, ho, w, th, kh, true);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

}  // namespace rf
