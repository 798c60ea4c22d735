// Kernel layer of the reductions. A reduction splits the input's (coalesced) dimensions into kept
// ones, which index the output, and reduced ones, which are summed over.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/elementwise_math.h"

namespace rf {

struct ReduceIndexer {
  int nk = 0, nr = 0;
  int64_t ksize[kMaxDims], kstride[kMaxDims];  // kept dims (output order) and their input strides
  int64_t rsize[kMaxDims], rstride[kMaxDims];  // reduced dims and their input strides
  int64_t nout = 1, nred = 1;
};

RF_HD int64_t decompose(int n, const int64_t* size, const int64_t* stride, int64_t i) {
  int64_t off = 0;
  for (int d = n - 1; d >= 0; --d) {
    off += (i % size[d]) * stride[d];
    i /= size[d];
  }
  return off;
}

ReduceIndexer make_reduce_indexer(const Shape& in, const std::vector<bool>& reduced);

#define RF_REDUCE_KERNELS                                                                                  \
  void reduce_sum(const ReduceIndexer& ix, const float* x, float* out, float scale);                      \
  /* [outer, D, inner] -> [outer, inner] */                                                               \
  void max_dim(const float* x, float* out, int32_t* arg, int64_t outer, int64_t d, int64_t inner);        \
  void max_dim_backward(const float* g, const int32_t* arg, float* gx, int64_t outer, int64_t d,          \
                        int64_t inner);                                                                   \
  void softmax_forward(const float* x, float* y, int64_t outer, int64_t d, int64_t inner, bool log);      \
  void softmax_backward(const float* y, const float* g, float* gx, int64_t outer, int64_t d, int64_t inner, \
                        bool log);

namespace cpu {
RF_REDUCE_KERNELS
}
namespace gpu {
RF_REDUCE_KERNELS
}
#undef RF_REDUCE_KERNELS

}  // namespace rf
