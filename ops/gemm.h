// GEMM, the kernel under matmul, linear and the im2col convolutions.
//
// Row-major: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, where op(X) is X or its transpose,
// repeated `batch` times with the given element strides between consecutive matrices.
#pragma once
#include <cstdint>

namespace rf {

struct GemmShape {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int64_t batch = 1;
  float alpha = 1.f, beta = 0.f;
};

// Plain row-major leading dimensions for the given transposes.
GemmShape gemm_shape(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha = 1.f,
                     float beta = 0.f);

namespace cpu {
// The fast CPU path: OpenBLAS when built with it, the built-in blocked GEMM otherwise.
void gemm(const GemmShape& s, const float* a, const float* b, float* c);
// Built-in cache-blocked GEMM (packing + 6x16 register tile, OpenMP over row blocks).
void gemm_blocked(const GemmShape& s, const float* a, const float* b, float* c);
// Triple loop in double precision: the oracle the others are tested against.
void gemm_naive(const GemmShape& s, const float* a, const float* b, float* c);
}  // namespace cpu

namespace gpu {
// cuBLAS strided-batched SGEMM (FP32 math, no TF32, to match PyTorch's default).
void gemm(const GemmShape& s, const float* a, const float* b, float* c);
}  // namespace gpu

}  // namespace rf
