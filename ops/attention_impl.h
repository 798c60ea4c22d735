#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace rf {

#ifndef __CUDACC__  // CPU code only (the CUDA kernels use __expf)
// exp(x) for the softmax's x = score - max <= 0, in straight-line float arithmetic that the compiler vectorizes (libm's
// expf is a call per element: it was a third of a gs deblurrer training step's softmax). 2^k exp(r) with r = x - k ln 2
// in two parts (Cody-Waite) and Cephes's degree-6 polynomial: within 2 ulp of exp on [-87, 0] (tested); from about
// -87.7 down it is 0 (expf from -104 down; beside the row's maximum's 1 neither can be added to a float); NaN stays NaN.
inline float exp_nonpositive(float x) {
#ifdef __FMA__  // a fused multiply-add where the CPU has one; otherwise std::fma would be a libm call
  auto madd = [](float a, float b, float c) { return std::fma(a, b, c); };
#else
  auto madd = [](float a, float b, float c) { return a * b + c; };
#endif
  // Clamped at -88 (k >= -127, where 2^k's exponent bits are 0: the result is 0); xk maps NaN to -88 too, so that the
  // float -> int conversion is defined, xr keeps NaN so that it reaches the result.
  const float xk = x > -88.f ? x : -88.f;
  const float xr = x < -88.f ? -88.f : x;
  // k = round(x / ln 2) for x <= 0 by truncation toward zero (std::floor and std::fmax do not vectorize in GCC).
  const int32_t ki = (int32_t)madd(xk, 1.44269504088896341f, -0.5f);
  const float k = (float)ki;
  float r = madd(k, -0.693359375f, xr);  // k ln 2 in two parts: k times the first is exact
  r = madd(k, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = madd(p, r, 1.3981999507e-3f);
  p = madd(p, r, 8.3334519073e-3f);
  p = madd(p, r, 4.1665795894e-2f);
  p = madd(p, r, 1.6666665459e-1f);
  p = madd(p, r, 5.0000001201e-1f);
  p = madd(p, r * r, r) + 1.f;
  const int32_t bits = (ki + 127) << 23;  // 2^k, k in [-127, 0]: bits in [0, 127] << 23, never negative (0: 0.f)
#if defined(__has_builtin)
#if __has_builtin(__builtin_bit_cast)
#define RF_BIT_CAST_FLOAT(b) __builtin_bit_cast(float, b)  // a memcpy here keeps GCC from vectorizing the loop
#endif
#endif
#ifdef RF_BIT_CAST_FLOAT
  const float two_k = RF_BIT_CAST_FLOAT(bits);
#undef RF_BIT_CAST_FLOAT
#else
  float two_k;
  std::memcpy(&two_k, &bits, sizeof two_k);
#endif
  return p * two_k;
}
#endif

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
