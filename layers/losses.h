// Training losses, composed from differentiable ops.
#pragma once
#include "engine/tensor.h"

namespace rf {

Tensor mse_loss(const Tensor& pred, const Tensor& target);
Tensor l1_loss(const Tensor& pred, const Tensor& target);
Tensor charbonnier_loss(const Tensor& pred, const Tensor& target, float eps = 1e-3f);
// Mean SSIM over every channel and every position whose 11x11 Gaussian (sigma 1.5) window lies inside
// the image, population covariance — the same number as data/metrics.h's ssim_gaussian, differentiable
// in both images. Inputs [C, H, W] or [N, C, H, W] in [0, data_range].
Tensor ssim_index(const Tensor& x, const Tensor& y, float data_range = 1.f);
// mean |FFT2(pred) - FFT2(target)| over real and imaginary parts (the frequency loss of MIMO-UNet et al.)
Tensor fft_l1_loss(const Tensor& pred, const Tensor& target);

}  // namespace rf
