// A bank of separable kernels applied to every channel it is asked for, in one pass over the whole bank:
// GKMNet's Gaussian kernel mixture and GGKMNet's grouped mixture (paper 001). Each kernel is a 1-D tap
// vector run along the rows and then the columns (never a dense k x k convolution), with zero padding, so
// the output has the input's size.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace rf {

struct KernelBank {
  std::vector<std::vector<float>> taps;  // kernel k: odd length, centred
};

// Which input channel and which kernels make each output plane.
struct BankPlan {
  std::vector<int32_t> channel;  // [J]: the input channel of output plane j
  int64_t q = 1;                 // kernels mixed into each output plane
  std::vector<int32_t> kernel;   // [J * q]: kernel (q'th of plane j at j * q + q')
};

// x [B, C, H, W] -> [B, J, H, W]:
//   out[b, j] = sum_q weights[b, j, q] * (kernel[j, q] (x) x[b, channel[j]])
// weights [B, J, q] (per image, e.g. GGKMNet's alpha), or undefined for all ones (then q must be 1).
// Differentiable in x and in weights (the taps are constants).
Tensor kernel_bank(const Tensor& x, const KernelBank& bank, const BankPlan& plan, const Tensor& weights = Tensor());

// The same planes computed densely (each kernel as its k x k outer product, one plane at a time): the
// oracle the tests compare the separable passes with.
Tensor kernel_bank_dense_reference(const Tensor& x, const KernelBank& bank, const BankPlan& plan, const Tensor& weights);

}  // namespace rf
