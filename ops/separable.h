// Separable filtering: correlation of every plane of [..., H, W] with a 1-D kernel along H and another
// along W, without padding ("valid": the output is (H - kh + 1) x (W - kw + 1)). Pad first with pad2d
// for same-size filtering. Used by the SSIM loss and the Gaussian kernel mixtures of GKMNet/GGKMNet.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace rf {

// Differentiable in x (the kernels are constants).
Tensor separable_filter(const Tensor& x, const std::vector<float>& kernel_h, const std::vector<float>& kernel_w);

// Normalised Gaussian taps exp(-i^2 / (2 sigma^2)), i = -radius..radius.
std::vector<float> gaussian_taps(float sigma, int radius);

}  // namespace rf
