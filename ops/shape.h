// Shape ops: permute/transpose, slice, concat/split, padding. All of them copy (see tensor.h).
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace rf {

Tensor permute(const Tensor& x, const std::vector<int64_t>& perm);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
// Elements start, start+step, ... < end along `dim` (negative start/end count from the end).
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);  // equal parts
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);

// Rows of x [N, ...] picked by index: out[i] = x[index[i]] (backward adds the gradient back by index). On CUDA a row
// picked more than once gets its gradients added by atomics in no fixed order: bitwise repeatable only for distinct
// indices (gs's permutations and column selections).
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& index);

enum class PadMode { Zeros, Reflect, Replicate };
// Pad the last two dims of [..., H, W]: left/right on W, top/bottom on H. Reflect mirrors without
// repeating the edge (PyTorch's 'reflect') and needs pad < size.
Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom,
             PadMode mode = PadMode::Zeros);

}  // namespace rf
