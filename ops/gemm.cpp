#include "ops/gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#ifdef REFOCUS_WITH_OPENBLAS
#include <cblas.h>
#endif

namespace rf {

GemmShape gemm_shape(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  GemmShape s;
  s.trans_a = ta;
  s.trans_b = tb;
  s.m = m;
  s.n = n;
  s.k = k;
  s.lda = std::max<int64_t>(1, ta ? m : k);  // BLAS wants leading dimensions of at least 1
  s.ldb = std::max<int64_t>(1, tb ? k : n);
  s.ldc = std::max<int64_t>(1, n);
  s.stride_a = m * k;
  s.stride_b = k * n;
  s.stride_c = m * n;
  s.alpha = alpha;
  s.beta = beta;
  return s;
}

namespace cpu {

static inline float elem_a(const GemmShape& s, const float* a, int64_t i, int64_t p) {
  return s.trans_a ? a[p * s.lda + i] : a[i * s.lda + p];
}
static inline float elem_b(const GemmShape& s, const float* b, int64_t p, int64_t j) {
  return s.trans_b ? b[j * s.ldb + p] : b[p * s.ldb + j];
}

void gemm_naive(const GemmShape& s, const float* a, const float* b, float* c) {
  for (int64_t t = 0; t < s.batch; ++t) {
    const float* A = a + t * s.stride_a;
    const float* B = b + t * s.stride_b;
    float* C = c + t * s.stride_c;
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < s.k; ++p) acc += (double)elem_a(s, A, i, p) * elem_b(s, B, p, j);
        float prev = s.beta == 0.f ? 0.f : s.beta * C[i * s.ldc + j];
        C[i * s.ldc + j] = (float)(s.alpha * acc) + prev;
      }
  }
}

// --- built-in blocked GEMM -------------------------------------------------------------------------
// Goto-style: B is packed into KC x NR column panels, A into MR x KC row panels, and a 6x16 register
// tile accumulates one panel pair; the compiler vectorises the 16-wide inner loop.
namespace {
constexpr int64_t MR = 6, NR = 16, MC = 96, KC = 256, NC = 1024;

void pack_a(const GemmShape& s, const float* A, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* out) {
  for (int64_t ir = 0; ir < mc; ir += MR)
    for (int64_t p = 0; p < kc; ++p)
      for (int64_t i = 0; i < MR; ++i)
        *out++ = (ir + i < mc) ? elem_a(s, A, i0 + ir + i, p0 + p) : 0.f;
}

void pack_b(const GemmShape& s, const float* B, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  for (int64_t jr = 0; jr < nc; jr += NR)
    for (int64_t p = 0; p < kc; ++p)
      for (int64_t j = 0; j < NR; ++j)
        *out++ = (jr + j < nc) ? elem_b(s, B, p0 + p, j0 + jr + j) : 0.f;
}

// C[mr x nr] = alpha * Ap * Bp + beta * C (only the valid mr x nr corner is written).
void micro_kernel(int64_t kc, const float* ap, const float* bp, float* C, int64_t ldc, int64_t mr, int64_t nr,
                  float alpha, float beta) {
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float* b = bp + p * NR;
    const float* a = ap + p * MR;
    for (int64_t i = 0; i < MR; ++i) {
      float ai = a[i];
#pragma omp simd
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  }
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) {
      float prev = beta == 0.f ? 0.f : beta * C[i * ldc + j];
      C[i * ldc + j] = alpha * acc[i][j] + prev;
    }
}
}  // namespace

void gemm_blocked(const GemmShape& s, const float* a, const float* b, float* c) {
  std::vector<float> bpack((size_t)KC * (NC + NR));
  for (int64_t t = 0; t < s.batch; ++t) {
    const float* A = a + t * s.stride_a;
    const float* B = b + t * s.stride_b;
    float* C = c + t * s.stride_c;
    if (s.k == 0) {  // C = beta * C
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t j = 0; j < s.n; ++j) C[i * s.ldc + j] = s.beta == 0.f ? 0.f : s.beta * C[i * s.ldc + j];
      continue;
    }
    for (int64_t j0 = 0; j0 < s.n; j0 += NC) {
      int64_t nc = std::min(NC, s.n - j0);
      for (int64_t p0 = 0; p0 < s.k; p0 += KC) {
        int64_t kc = std::min(KC, s.k - p0);
        float beta = p0 == 0 ? s.beta : 1.f;
        pack_b(s, B, p0, kc, j0, nc, bpack.data());
#pragma omp parallel
        {
          std::vector<float> apack((size_t)(MC + MR) * KC);
#pragma omp for schedule(dynamic)
          for (int64_t i0 = 0; i0 < s.m; i0 += MC) {
            int64_t mc = std::min(MC, s.m - i0);
            pack_a(s, A, i0, mc, p0, kc, apack.data());
            for (int64_t jr = 0; jr < nc; jr += NR)
              for (int64_t ir = 0; ir < mc; ir += MR)
                micro_kernel(kc, apack.data() + ir * kc, bpack.data() + jr * kc, C + (i0 + ir) * s.ldc + j0 + jr,
                             s.ldc, std::min(MR, mc - ir), std::min(NR, nc - jr), s.alpha, beta);
          }
        }
      }
    }
  }
}

void gemm(const GemmShape& s, const float* a, const float* b, float* c) {
#ifdef REFOCUS_WITH_OPENBLAS
  for (int64_t t = 0; t < s.batch; ++t)
    cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans,
                (int)s.m, (int)s.n, (int)s.k, s.alpha, a + t * s.stride_a, (int)s.lda, b + t * s.stride_b,
                (int)s.ldb, s.beta, c + t * s.stride_c, (int)s.ldc);
#else
  gemm_blocked(s, a, b, c);
#endif
}

}  // namespace cpu
}  // namespace rf
