// Reductions (sum, mean, max), broadcasting helpers (sum_to, expand) and softmax.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace rf {

Tensor sum(const Tensor& x);  // all elements -> shape {}
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Largest value along one dimension; the gradient goes to the first position holding it.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);

// Sum x down to `shape` (which must broadcast to x's shape): the backward of broadcasting.
Tensor sum_to(const Tensor& x, const Shape& shape);
// Broadcast x up to `shape` (a copy): the backward of sum_to.
Tensor expand(const Tensor& x, const Shape& shape);

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace rf
