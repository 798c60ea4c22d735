// cuBLAS SGEMM. cuBLAS is column-major: a row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T, so the operands are passed in swapped order with m and n exchanged.
#include <cublas_v2.h>

#include "engine/cuda_check.h"
#include "ops/gemm.h"

namespace rf::gpu {

static const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
  }
}

#define RF_CUBLAS_CHECK(stmt)                                                                            \
  do {                                                                                                   \
    cublasStatus_t st_ = (stmt);                                                                         \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                    \
      throw ::rf::Error(::rf::cat("cuBLAS ", cublas_status_name(st_), " in ", #stmt, " at ", __FILE__, ":", \
                                  __LINE__, ::rf::cuda_op_context()));                                   \
  } while (0)

static cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t x;
    RF_CUBLAS_CHECK(cublasCreate(&x));
    RF_CUBLAS_CHECK(cublasSetMathMode(x, CUBLAS_DEFAULT_MATH));  // full FP32, no TF32
    return x;
  }();
  return h;
}

void gemm(const GemmShape& s, const float* a, const float* b, float* c) {
  if (s.m == 0 || s.n == 0) return;
  cublasOperation_t op_b = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_a = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  RF_CUBLAS_CHECK(cublasSgemmStridedBatched(handle(), op_b, op_a, (int)s.n, (int)s.m, (int)s.k, &s.alpha, b,
                                            (int)s.ldb, s.stride_b, a, (int)s.lda, s.stride_a, &s.beta, c,
                                            (int)s.ldc, s.stride_c, (int)s.batch));
}

}  // namespace rf::gpu
