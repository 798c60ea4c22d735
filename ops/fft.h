// 2-D discrete Fourier transform of real images, for the frequency-domain losses.
#pragma once
#include "engine/tensor.h"

namespace rf {

// Real [..., H, W] -> complex [..., H, W, 2] (real, imaginary parts), unnormalised:
// X[u, v] = sum_{y, x} x[y, x] exp(-2 pi i (u y / H + v x / W))  (torch.fft.fft2 with norm="backward").
Tensor fft2(const Tensor& x);

}  // namespace rf
