#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace rf {

// exp(x) for the softmax's x = score - max <= 0, in straight-line float arithmetic that the compiler vectorizes (libm's
// expf is a call per element: it was a third of a gs deblurrer training step's softmax). 2^k exp(r) with r = x - k ln 2
// in two parts (Cody-Waite) and Cephes's degree-6 polynomial: within 2 ulp of expf on [-87, 0]; x < -87 gives
// exp(-87) (~1.6e-38, negligible beside the row's maximum, whose exp is 1); NaN stays NaN.
inline float exp_nonpositive(float x) {
  x = x < -87.f ? -87.f : x;
  // k = round(x / ln 2) for x <= 0 by truncation toward zero (std::floor and std::fmax do not vectorize in GCC).
  const int32_t ki = (int32_t)std::fma(x, 1.44269504088896341f, -0.5f);
  const float k = (float)ki;
  float r = std::fma(k, -0.693359375f, x);
  r = std::fma(k, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p, r * r, r + 1.f);
  const int32_t bits = (ki + 127) << 23;  // 2^k, k in [-126, 0]
#if defined(__GNUC__) && !defined(__CUDACC__)
  const float two_k = __builtin_bit_cast(float, bits);  // a memcpy here keeps GCC from vectorizing the loop
#else
  float two_k;
  std::memcpy(&two_k, &bits, sizeof two_k);
#endif
  return p * two_k;
}

struct AttentionGeometry {
  int64_t bh, n, d;  // batch x heads, tokens, head dimension
  int64_t window;    // keys of query i: [i / window * window, + window) (window = n: full attention)
  float scale;       // 1 / sqrt(d)
};

#define RF_ATTENTION_KERNELS                                                                                     \
  /* out [bh, n, d]; lse [bh, n] = log-sum-exp of each query's scores (kept for backward) */                    \
  void attention_forward(const AttentionGeometry& g, const float* q, const float* k, const float* v, float* out, \
                         float* lse);                                                                           \
  void attention_backward(const AttentionGeometry& g, const float* q, const float* k, const float* v,           \
                          const float* out, const float* lse, const float* grad_out, float* gq, float* gk, float* gv);

namespace cpu {
RF_ATTENTION_KERNELS
// One query at a time in plain loops: the oracle the blocked (GEMM) CPU path is tested against.
void attention_forward_reference(const AttentionGeometry& g, const float* q, const float* k, const float* v, float* out,
                                 float* lse);
void attention_backward_reference(const AttentionGeometry& g, const float* q, const float* k, const float* v,
                                  const float* out, const float* lse, const float* grad_out, float* gq, float* gk,
                                  float* gv);
}
namespace gpu {
RF_ATTENTION_KERNELS
}
#undef RF_ATTENTION_KERNELS

}  // namespace rf
