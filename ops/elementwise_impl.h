// Kernel layer of the elementwise ops: raw pointers, no autograd. cpu:: is the reference; gpu:: the
// CUDA version with the same signature.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/elementwise_math.h"

namespace rf {

// Index space `sizes` walked with strides a and b (coalesced).
StridedIndexer make_strided_indexer(const Shape& sizes, const std::vector<int64_t>& sa, const std::vector<int64_t>& sb);
StridedIndexer make_broadcast_indexer(const Shape& out, const Shape& a, const Shape& b);

#define RF_ELEMENTWISE_KERNELS                                                                              \
  void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1);               \
  void unary_backward(UnaryOp op, const float* x, const float* y, const float* g, float* gx, int64_t n,  \
                      float p0, float p1);                                                               \
  void binary_forward(BinaryOp op, const StridedIndexer& ix, const float* a, const float* b, float* out, \
                      int64_t n);                                                                        \
  void binary_backward(BinaryOp op, int which, const StridedIndexer& ix, const float* a, const float* b, \
                       const float* g, float* grad, int64_t n);                                          \
  void axpy(float* dst, const float* src, float alpha, int64_t n);                                       \
  void scale(float* dst, float s, int64_t n);                                                            \
  void fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi);          \
  void fill_normal(float* out, int64_t n, uint64_t seed, uint64_t offset);                               \
  void dropout_apply(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset);      \
  /* dst[a-offset] = src[b-offset] over the index space */                                             \
  void copy_strided(const StridedIndexer& ix, float* dst, const float* src, int64_t n);

namespace cpu {
RF_ELEMENTWISE_KERNELS
}
namespace gpu {
RF_ELEMENTWISE_KERNELS
}
#undef RF_ELEMENTWISE_KERNELS

}  // namespace rf
