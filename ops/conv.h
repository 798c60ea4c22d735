// 2-D convolution and transposed convolution (cuDNN on the GPU, im2col + GEMM on the CPU).
#pragma once
#include "engine/tensor.h"

namespace rf {

struct ConvOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  int64_t output_pad_h = 0, output_pad_w = 0;  // transposed convolution only
  static ConvOptions make(int64_t stride, int64_t pad, int64_t dilation = 1, int64_t groups = 1) {
    ConvOptions o;
    o.stride_h = o.stride_w = stride;
    o.pad_h = o.pad_w = pad;
    o.dilation_h = o.dilation_w = dilation;
    o.groups = groups;
    return o;
  }
};

// x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw], bias [Cout] or undefined -> [N, Cout, Ho, Wo]
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvOptions& o = {});

// x [N, Cin, H, W], w [Cin, Cout/groups, kh, kw] (PyTorch's layout), bias [Cout] -> [N, Cout, Ho, Wo] with
// Ho = (H - 1) * stride - 2 * pad + dilation * (kh - 1) + output_pad + 1.
Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvOptions& o = {});

// Use TF32 tensor cores for GPU convolutions (faster, ~1e-3 relative error). Off by default.
void set_conv_allow_tf32(bool on);

}  // namespace rf
