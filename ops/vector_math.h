// Math the CPU loops can vectorize: straight-line float arithmetic in place of libm calls (one call per element
// keeps GCC from vectorizing a loop). CPU code only: the CUDA kernels have their own fast intrinsics.
#pragma once
#ifdef __CUDACC__
#error "ops/vector_math.h is CPU code"
#endif
#include <cmath>
#include <cstdint>
#include <cstring>

namespace rf {

// exp(x) for x <= 0 (the softmax's x = score - max, GELU's tails), in straight-line float arithmetic that the
// compiler vectorizes (libm's expf is a call per element: it was a third of a gs deblurrer training step's softmax).
// 2^k exp(r) with r = x - k ln 2 in two parts (Cody-Waite) and Cephes's degree-6 polynomial: within 2 ulp of exp on
// [-87, 0] (tested); from about -87.7 down it is 0 (expf from -104 down: below 1e-38, nothing its users can add to a
// float of order 1); NaN stays NaN. Exact enough for small x > 0 too (k = 0 while x < 0.34).
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

// The sum of term(0) ... term(n - 1) in eight fixed double lanes, then the tail, then the lanes in order: GCC
// vectorizes it where one double accumulator is a chain of dependent adds (it may not reorder float sums itself).
// The order depends on n only, never on the thread count.
template <class Term>
inline double lane_sum(int64_t n, Term term) {
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += term(k + l);
  double sum = 0;
  for (; k < n; ++k) sum += term(k);
  for (int l = 0; l < 8; ++l) sum += lanes[l];
  return sum;
}

// erfc(z) for z >= 0 by Numerical Recipes' Chebyshev fit (erfcc), whose error is relative (1.2e-7), not absolute, so
// that the left tail of the normal CDF below keeps its digits; in float the rounding of z * z adds about z^2 1e-7
// (6e-6 at z = 6.4). Its exponent is at most about 3e-8 (0 in float at z = 0), within exp_nonpositive's range.
inline float erfc_nonnegative(float z) {
  const float t = 1.f / (1.f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  return t * exp_nonpositive(p - z * z);
}

// The standard normal CDF, Phi(x) = (1 + erf(x / sqrt 2)) / 2, for the exact (erf) GELU.
inline float normal_cdf(float x) {
  const float half_tail = 0.5f * erfc_nonnegative(std::fabs(x) * 0.70710678118654752f);  // Phi(-|x|)
  const float right = x >= 0.f ? 1.f : 0.f;  // a multiply, not a select: GCC vectorizes it
  return half_tail + right * (1.f - 2.f * half_tail);
}

// GELU(x) = x Phi(x) and its derivative Phi(x) + x phi(x) times g, for the CPU loops (GELU's loops around libm's
// erff were 11% of a gs deblurrer training step, erff itself 6%). Within 1.3e-7 max(1, |x|) of the exact GELU and
// 1.8e-7 of its derivative (tested against double precision); the erff forms in rf::unary_fwd / unary_bwd, which
// the CUDA kernels use, round the far left tail to 0.
inline float gelu_vectorizable(float x) { return x * normal_cdf(x); }
inline float gelu_backward_vectorizable(float x, float g) {
  const float pdf = 0.3989422804014327f * exp_nonpositive(-0.5f * x * x);
  return g * (normal_cdf(x) + x * pdf);
}

}  // namespace rf
