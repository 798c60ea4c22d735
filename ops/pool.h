// Pooling over the last two dims of [N, C, H, W].
#pragma once
#include "engine/tensor.h"

namespace rf {

// Padding counts as -infinity for max and as zeros for avg (PyTorch's count_include_pad=True).
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding = 0);
// Mean over H and W -> [N, C, 1, 1].
Tensor global_avg_pool(const Tensor& x);

}  // namespace rf
