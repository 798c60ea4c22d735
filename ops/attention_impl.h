#pragma once
#include <cstdint>

namespace rf {

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
