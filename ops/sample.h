// Resampling: bilinear resize, nearest upsampling, and bilinear grid sampling (flow warping,
// deformable attention). Conventions follow PyTorch's interpolate / grid_sample.
#pragma once
#include "engine/tensor.h"

namespace rf {

// [N, C, H, W] -> [N, C, h_out, w_out]. align_corners=false is PyTorch's default (half-pixel centres).
Tensor resize_bilinear(const Tensor& x, int64_t h_out, int64_t w_out, bool align_corners = false);
// PyTorch's mode='nearest': source = floor(dst * in / out).
Tensor upsample_nearest(const Tensor& x, int64_t h_out, int64_t w_out);

enum class GridPadding { Zeros, Border };
// x [N, C, H, W], grid [N, Ho, Wo, 2] holding (x, y) in [-1, 1] -> [N, C, Ho, Wo]. Differentiable in both.
Tensor grid_sample(const Tensor& x, const Tensor& grid, bool align_corners = false,
                   GridPadding padding = GridPadding::Zeros);

}  // namespace rf
