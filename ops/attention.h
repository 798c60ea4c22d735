// Scaled dot-product attention softmax(Q K^T / sqrt(D)) V, fused: the N x N score matrix is never
// stored (FlashAttention's online softmax forward, recomputation in backward), so memory is O(N * D)
// and N can reach 10^5 blobs. With `window` > 0 the tokens are cut into consecutive windows of that
// many tokens and each token attends only within its own window (for blobs sorted along a space-filling
// curve this is local attention, as in Point Transformer V3); window = 0 is full attention.
#pragma once
#include "engine/tensor.h"

namespace rf {

// q, k, v [B, H, N, D] (D <= 64) -> [B, H, N, D]. Differentiable in q, k and v.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window = 0);

}  // namespace rf
