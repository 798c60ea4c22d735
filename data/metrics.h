// Image quality metrics on [0, 1] images [C, H, W] (or [1, C, H, W]), computed in double precision on
// the CPU. They follow scikit-image (checked against python3-skimage through golden values).
#pragma once
#include <memory>
#include <string>

#include "engine/tensor.h"

namespace rf {

double psnr(const Tensor& pred, const Tensor& ref, double data_range = 1.0);
double mae(const Tensor& pred, const Tensor& ref);
// skimage.metrics.structural_similarity defaults: 7x7 uniform window, sample covariance, K1 0.01, K2 0.03,
// mean over channels of the mean over positions whose window lies inside the image.
double ssim(const Tensor& pred, const Tensor& ref, double data_range = 1.0);
// Wang et al.'s form: 11x11 Gaussian window (sigma 1.5), population covariance.
double ssim_gaussian(const Tensor& pred, const Tensor& ref, double data_range = 1.0);

// Round to the given bit depth (8: what an 8-bit PNG would hold), as evaluation does by default.
Tensor quantize(const Tensor& img, int bits);

}  // namespace rf
