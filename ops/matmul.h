// Matrix products (cuBLAS on the GPU; OpenBLAS or the built-in GEMM on the CPU).
#pragma once
#include "engine/tensor.h"

namespace rf {

// a [M, K] @ b [K, N] -> [M, N]; or batched a [B, M, K] @ b [B, K, N] (b may also be a shared [K, N]).
Tensor matmul(const Tensor& a, const Tensor& b);
// The general form: op(a) @ op(b) with optional transposes, same batching rules.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);
// x [..., in] @ w[out, in]^T + bias[out] -> [..., out]   (PyTorch's nn.functional.linear)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());

}  // namespace rf
