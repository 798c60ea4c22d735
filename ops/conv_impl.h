// Kernel layer of the convolutions. Every pass is written for an ordinary convolution described by
// ConvGeometry; the transposed convolution reuses them with the roles of input and output exchanged
// (its forward is a convolution's data gradient, and so on).
#pragma once
#include <cstdint>

namespace rf {

struct ConvGeometry {
  int64_t n, c_in, h, w;        // input
  int64_t c_out, h_out, w_out;  // output
  int64_t kh, kw;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
  int64_t c_in_g() const { return c_in / groups; }
  int64_t c_out_g() const { return c_out / groups; }
};

#define RF_CONV_KERNELS                                                                                   \
  /* y = conv(x, w) + bias (bias may be null) */                                                        \
  void conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y); \
  /* gx = d/dx, overwritten */                                                                           \
  void conv2d_backward_data(const ConvGeometry& g, const float* gy, const float* w, float* gx);          \
  /* gw = d/dw, overwritten */                                                                           \
  void conv2d_backward_weight(const ConvGeometry& g, const float* x, const float* gy, float* gw);

namespace cpu {
RF_CONV_KERNELS
// Seven nested loops, double accumulation: the oracle for the im2col path.
void conv2d_naive(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);
// Unfold output rows oh0..oh1-1 of one image [c_in, h, w] into columns [c_in * kh * kw, (oh1 - oh0) * w_out],
// and the scatter-add back (accumulating into img).
void im2col(const ConvGeometry& g, const float* img, float* col, int64_t oh0, int64_t oh1);
void col2im_add(const ConvGeometry& g, const float* col, float* img, int64_t oh0, int64_t oh1);
// Winograd F(2x2, 3x3) (ops/winograd.cpp): the CPU path of 3x3, stride-1, one-group convolutions with 16 or more
// channels on each side; the conv2d_* entry points above choose it themselves.
bool winograd_applies(const ConvGeometry& g);
void winograd_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);
void winograd_backward_data(const ConvGeometry& g, const float* gy, const float* w, float* gx);
void winograd_backward_weight(const ConvGeometry& g, const float* x, const float* gy, float* gw);
// The im2col path alone (the oracle of the Winograd path's tests and benchmarks).
void conv2d_forward_im2col(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y);
void conv2d_backward_data_im2col(const ConvGeometry& g, const float* gy, const float* w, float* gx);
void conv2d_backward_weight_im2col(const ConvGeometry& g, const float* x, const float* gy, float* gw);
}  // namespace cpu

namespace gpu {
RF_CONV_KERNELS
void conv_set_tf32(bool on);
}  // namespace gpu
#undef RF_CONV_KERNELS

}  // namespace rf
