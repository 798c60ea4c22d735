#include "ops/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/autograd.h"
#include "ops/conv_impl.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/macs.h"
#include "ops/reduce.h"

namespace rf {

namespace cpu {

void conv2d_naive(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const int64_t cig = g.c_in_g(), cog = g.c_out_g();
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t co = 0; co < g.c_out; ++co)
      for (int64_t oh = 0; oh < g.h_out; ++oh)
        for (int64_t ow = 0; ow < g.w_out; ++ow) {
          double acc = bias ? bias[co] : 0.0;
          int64_t grp = co / cog;
          for (int64_t ci = 0; ci < cig; ++ci)
            for (int64_t ki = 0; ki < g.kh; ++ki)
              for (int64_t kj = 0; kj < g.kw; ++kj) {
                int64_t ih = oh * g.stride_h - g.pad_h + ki * g.dil_h;
                int64_t iw = ow * g.stride_w - g.pad_w + kj * g.dil_w;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                acc += (double)x[((n * g.c_in + grp * cig + ci) * g.h + ih) * g.w + iw] *
                       w[((co * cig + ci) * g.kh + ki) * g.kw + kj];
              }
          y[((n * g.c_out + co) * g.h_out + oh) * g.w_out + ow] = (float)acc;
        }
}

// Output columns [lo, hi) of kernel column kj read inside the input row (iw = ow * stride - pad + kj * dil in
// [0, w)); the rest read zero padding. Computed once per row so the inner loops carry no bounds test.
static void valid_columns(const ConvGeometry& g, int64_t kj, int64_t& lo, int64_t& hi) {
  const int64_t off = kj * g.dil_w - g.pad_w;  // iw = ow * stride + off
  lo = off >= 0 ? 0 : (-off + g.stride_w - 1) / g.stride_w;
  hi = g.w - off <= 0 ? 0 : std::min(g.w_out, (g.w - off + g.stride_w - 1) / g.stride_w);
  lo = std::min(lo, g.w_out);
  hi = std::max(hi, lo);
}

void im2col(const ConvGeometry& g, const float* img, float* col, int64_t oh0, int64_t oh1) {
  const int64_t cols = (oh1 - oh0) * g.w_out, rows = g.c_in * g.kh * g.kw;
#pragma omp parallel for if (rows * cols > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    int64_t kj = r % g.kw, ki = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
    const float* plane = img + c * g.h * g.w;
    float* out = col + r * cols;
    int64_t lo, hi;
    valid_columns(g, kj, lo, hi);
    const int64_t off = kj * g.dil_w - g.pad_w;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      int64_t ih = oh * g.stride_h - g.pad_h + ki * g.dil_h;
      float* orow = out + (oh - oh0) * g.w_out;
      if (ih < 0 || ih >= g.h) {
        std::memset(orow, 0, sizeof(float) * g.w_out);
        continue;
      }
      const float* irow = plane + ih * g.w;
      std::memset(orow, 0, sizeof(float) * lo);
      if (g.stride_w == 1)
        std::memcpy(orow + lo, irow + lo + off, sizeof(float) * (hi - lo));
      else
        for (int64_t ow = lo; ow < hi; ++ow) orow[ow] = irow[ow * g.stride_w + off];
      std::memset(orow + hi, 0, sizeof(float) * (g.w_out - hi));
    }
  }
}

void col2im_add(const ConvGeometry& g, const float* col, float* img, int64_t oh0, int64_t oh1) {
  const int64_t cols = (oh1 - oh0) * g.w_out;
  // Parallel over channels: the rows of one channel only touch that channel's plane.
#pragma omp parallel for if (g.c_in * g.kh * g.kw * cols > (1 << 15))
  for (int64_t c = 0; c < g.c_in; ++c) {
    float* plane = img + c * g.h * g.w;
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const float* in = col + ((c * g.kh + ki) * g.kw + kj) * cols;
        int64_t lo, hi;
        valid_columns(g, kj, lo, hi);
        const int64_t off = kj * g.dil_w - g.pad_w;
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          int64_t ih = oh * g.stride_h - g.pad_h + ki * g.dil_h;
          if (ih < 0 || ih >= g.h) continue;
          const float* irow = in + (oh - oh0) * g.w_out;
          float* prow = plane + ih * g.w;
          if (g.stride_w == 1) {
            float* dst = prow + lo + off;
            const float* src = irow + lo;
            for (int64_t i = 0; i < hi - lo; ++i) dst[i] += src[i];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) prow[ow * g.stride_w + off] += irow[ow];
          }
        }
      }
  }
}

// A 1x1, stride-1, unpadded convolution needs no unfolding: the image already is its column matrix.
static bool is_pointwise(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}

// The column matrix of a whole image can be huge (576 x 1.9M floats for 64 channels at 1680x1120), so
// each image is unfolded a band of output rows at a time and the band's GEMM writes straight into the output
// with a leading dimension of h_out * w_out. One band on all threads: up to 16 MiB. A band or an image per
// thread (conv2d_forward, images_in_parallel): 1 MiB each, so that every thread's band stays in its own cache
// (3x3 32->32 at batch 4 x 128^2, forward: 9.7 ms with 16 MiB bands, 6.3 ms with 1 MiB). The band size changes where the
// weight gradient's sums over pixels are cut, so CPU results can differ in the last bits between thread counts
// (as OpenBLAS's own may); for a given thread count they are deterministic.
static int64_t band_rows(const ConvGeometry& g, bool per_thread) {
  const int64_t budget = per_thread ? (256 << 10) : (4 << 20);  // floats
  // At least 1024 output columns a band: fewer make the GEMM too narrow for its register tiles (512 channels at
  // 16^2 would get 3 rows).
  const int64_t per_row = g.c_in * g.kh * g.kw * g.w_out, min_rows = (1024 + g.w_out - 1) / g.w_out;
  return std::min<int64_t>(g.h_out, std::max<int64_t>(min_rows, budget / std::max<int64_t>(per_row, 1)));
}

static float* scratch(size_t floats) {
  thread_local std::vector<float> buf;
  if (buf.size() < floats) buf.resize(floats);
  return buf.data();
}

// How the three passes walk an image: whole (pointwise, no column matrix) or a band of rows at a time
// through a scratch column matrix.
struct Banding {
  bool pointwise;
  int64_t rows;  // output rows per band
  float* col;    // the band's column matrix (null when pointwise)
};

static Banding banding(const ConvGeometry& g, bool per_thread) {
  const bool pw = is_pointwise(g);
  const int64_t rows = pw ? g.h_out : band_rows(g, per_thread);
  return {pw, rows, pw ? nullptr : scratch((size_t)(g.c_in * g.kh * g.kw * rows * g.w_out))};
}

// Output rows oh0..oh1-1 of one image, bias included; col holds the band's column matrix (unused when pointwise).
static void forward_band(const ConvGeometry& g, const float* xn, const float* w, const float* bias, float* yn,
                         int64_t oh0, int64_t oh1, float* col) {
  const int64_t hw_out = g.h_out * g.w_out, k = g.c_in_g() * g.kh * g.kw, cog = g.c_out_g();
  const bool pw = is_pointwise(g);
  const int64_t cols = (oh1 - oh0) * g.w_out;
  // Pointwise: the image is its own column matrix, the band a range of its columns.
  const float* cm = pw ? xn + oh0 * g.w_out : col;
  const int64_t ldcm = pw ? hw_out : cols;
  if (!pw) im2col(g, xn, col, oh0, oh1);
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    GemmShape s = gemm_shape(false, false, cog, cols, k);
    s.ldb = ldcm;
    s.ldc = hw_out;
    gemm(s, w + grp * cog * k, cm + grp * k * ldcm, yn + grp * cog * hw_out + oh0 * g.w_out);
  }
  if (bias) {
#pragma omp parallel for if (g.c_out * cols > (1 << 15))
    for (int64_t c = 0; c < g.c_out; ++c)
      for (int64_t i = oh0 * g.w_out; i < oh1 * g.w_out; ++i) yn[c * hw_out + i] += bias[c];
  }
}

// One image of the two backward passes. Called either image after image (the GEMMs and unfolding threaded inside)
// or with the images spread over the threads (each one's GEMM then single-threaded), see for_images.
static void data_image(const ConvGeometry& g, const float* gyn, const float* w, float* gxn) {
  const int64_t hw_out = g.h_out * g.w_out, k = g.c_in_g() * g.kh * g.kw, cog = g.c_out_g();
  const auto [pw, band, col] = banding(g, omp_in_parallel());
  if (!pw) std::memset(gxn, 0, sizeof(float) * g.c_in * g.h * g.w);
  for (int64_t oh0 = 0; oh0 < g.h_out; oh0 += band) {
    int64_t oh1 = std::min(g.h_out, oh0 + band), cols = (oh1 - oh0) * g.w_out;
    float* cm = pw ? gxn : col;
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      GemmShape s = gemm_shape(true, false, k, cols, cog);
      s.ldb = hw_out;
      s.ldc = pw ? hw_out : cols;
      gemm(s, w + grp * cog * k, gyn + grp * cog * hw_out + oh0 * g.w_out, cm + grp * k * s.ldc);
    }
    if (!pw) col2im_add(g, col, gxn, oh0, oh1);
  }
}

// gw_n = d/dw of one image alone, overwritten.
static void weight_image(const ConvGeometry& g, const float* xn, const float* gyn, float* gwn) {
  const int64_t hw_out = g.h_out * g.w_out, k = g.c_in_g() * g.kh * g.kw, cog = g.c_out_g();
  const auto [pw, band, col] = banding(g, omp_in_parallel());
  for (int64_t oh0 = 0; oh0 < g.h_out; oh0 += band) {
    int64_t oh1 = std::min(g.h_out, oh0 + band), cols = (oh1 - oh0) * g.w_out;
    const float* cm = pw ? xn : col;
    int64_t ldcm = pw ? hw_out : cols;
    if (!pw) im2col(g, xn, col, oh0, oh1);
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      GemmShape s = gemm_shape(false, true, cog, k, cols, 1.f, oh0 == 0 ? 0.f : 1.f);
      s.lda = hw_out;
      s.ldb = ldcm;
      gemm(s, gyn + grp * cog * hw_out + oh0 * g.w_out, cm + grp * k * ldcm, gwn + grp * cog * k);
    }
  }
}

// A batch with an image for every thread runs one image per thread, each GEMM single-threaded: OpenBLAS splitting
// one image's GEMM over the threads waits at its barriers, and each thread's column band can stay in its cache.
// 3x3 convolutions at batch 4 on 2 cores (forward / data / weight gradient, ms): 32->32 at 128^2 8.5 / 10.3 / 10.0
// -> 6.3 / 5.7 / 7.6; 64->64 at 256^2 122 / 93 / 100 -> 88 / 83 / 87 (PyTorch's oneDNN: 7.1 / 5.4 / 8.3 and
// 92 / 92 / 101).
static bool images_in_parallel(const ConvGeometry& g) {
  const int threads = omp_get_max_threads();
  return threads > 1 && g.n >= threads && !omp_in_parallel();
}

template <class F>
static void for_images(const ConvGeometry& g, F per_image) {
  if (images_in_parallel(g)) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < g.n; ++n) per_image(n);
  } else {
    for (int64_t n = 0; n < g.n; ++n) per_image(n);
  }
}

// The forward pass spreads bands, not only images, over the threads: bands write disjoint output rows, and a
// single large image (inference) then gets the same per-thread bands as a batch. Its result does not depend on
// the banding (each output sums over the same K in the same order).
void conv2d_forward_im2col(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const int threads = omp_get_max_threads();
  const int64_t in_size = g.c_in * g.h * g.w, out_size = g.c_out * g.h_out * g.w_out;
  const int64_t rows = band_rows(g, true);  // a pointwise band reads its input in place; the same size serves
  const int64_t bands = (g.h_out + rows - 1) / rows;
  if (threads > 1 && !omp_in_parallel() && g.n * bands >= threads) {
#pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < g.n * bands; ++item) {
      const int64_t n = item / bands, oh0 = (item % bands) * rows, oh1 = std::min(g.h_out, oh0 + rows);
      float* col = is_pointwise(g) ? nullptr : scratch((size_t)(g.c_in * g.kh * g.kw * rows * g.w_out));
      forward_band(g, x + n * in_size, w, bias, y + n * out_size, oh0, oh1, col);
    }
    return;
  }
  const auto [pw, band, col] = banding(g, false);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oh0 = 0; oh0 < g.h_out; oh0 += band)
      forward_band(g, x + n * in_size, w, bias, y + n * out_size, oh0, std::min(g.h_out, oh0 + band), col);
}

void conv2d_backward_data_im2col(const ConvGeometry& g, const float* gy, const float* w, float* gx) {
  for_images(g, [&](int64_t n) {
    data_image(g, gy + n * g.c_out * g.h_out * g.w_out, w, gx + n * g.c_in * g.h * g.w);
  });
}

void conv2d_backward_weight_im2col(const ConvGeometry& g, const float* x, const float* gy, float* gw) {
  // Each image's gradient on its own (so that images can run on separate threads), then summed in image order.
  const int64_t wsize = g.c_out * g.c_in_g() * g.kh * g.kw;
  std::vector<float> parts((size_t)((g.n - 1) * wsize));
  for_images(g, [&](int64_t n) {
    weight_image(g, x + n * g.c_in * g.h * g.w, gy + n * g.c_out * g.h_out * g.w_out,
                 n == 0 ? gw : parts.data() + (n - 1) * wsize);
  });
  for (int64_t n = 1; n < g.n; ++n) {
    const float* p = parts.data() + (n - 1) * wsize;
    for (int64_t i = 0; i < wsize; ++i) gw[i] += p[i];
  }
}

void conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  if (winograd_applies(g))
    winograd_forward(g, x, w, bias, y);
  else
    conv2d_forward_im2col(g, x, w, bias, y);
}

void conv2d_backward_data(const ConvGeometry& g, const float* gy, const float* w, float* gx) {
  if (winograd_applies(g))
    winograd_backward_data(g, gy, w, gx);
  else
    conv2d_backward_data_im2col(g, gy, w, gx);
}

void conv2d_backward_weight(const ConvGeometry& g, const float* x, const float* gy, float* gw) {
  if (winograd_applies(g))
    winograd_backward_weight(g, x, gy, gw);
  else
    conv2d_backward_weight_im2col(g, x, gy, gw);
}

}  // namespace cpu

// ---------------------------------------------------------------------------------------------------

void set_conv_allow_tf32(bool on) {
#ifdef REFOCUS_WITH_CUDA
  gpu::conv_set_tf32(on);
#else
  (void)on;
#endif
}

static void conv_forward_kernel(const ConvGeometry& g, const Tensor& x, const Tensor& w, const float* bias, Tensor& y) {
  if (x.is_cuda())
    RF_GPU_OP("convolution", (x, w), gpu::conv2d_forward(g, x.data(), w.data(), bias, y.data()));
  else
    cpu::conv2d_forward(g, x.data(), w.data(), bias, y.data());
}
static void conv_data_kernel(const ConvGeometry& g, const Tensor& gy, const Tensor& w, Tensor& gx) {
  if (gy.is_cuda())
    RF_GPU_OP("convolution data gradient", (gy, w), gpu::conv2d_backward_data(g, gy.data(), w.data(), gx.data()));
  else
    cpu::conv2d_backward_data(g, gy.data(), w.data(), gx.data());
}
static void conv_weight_kernel(const ConvGeometry& g, const Tensor& x, const Tensor& gy, Tensor& gw) {
  if (x.is_cuda())
    RF_GPU_OP("convolution weight gradient", (x, gy), gpu::conv2d_backward_weight(g, x.data(), gy.data(), gw.data()));
  else
    cpu::conv2d_backward_weight(g, x.data(), gy.data(), gw.data());
}

static std::string conv_desc(const char* op, const Tensor& x, const Tensor& w, const ConvOptions& o) {
  return cat(op, "(input ", x.shape(), ", weight ", w.shape(), ", stride ", o.stride_h, "x", o.stride_w, ", padding ",
             o.pad_h, "x", o.pad_w, ", dilation ", o.dilation_h, "x", o.dilation_w, ", groups ", o.groups, ")");
}

// Geometry of the ordinary convolution taking an [n, c_in, h, w] input with a [c_out, c_in/groups, kh, kw] kernel.
static ConvGeometry geometry(int64_t n, int64_t c_in, int64_t h, int64_t w, int64_t c_out, int64_t h_out, int64_t w_out,
                             const Tensor& weight, const ConvOptions& o) {
  ConvGeometry g;
  g.n = n;
  g.c_in = c_in;
  g.h = h;
  g.w = w;
  g.c_out = c_out;
  g.h_out = h_out;
  g.w_out = w_out;
  g.kh = weight.size(2);
  g.kw = weight.size(3);
  g.stride_h = o.stride_h;
  g.stride_w = o.stride_w;
  g.pad_h = o.pad_h;
  g.pad_w = o.pad_w;
  g.dil_h = o.dilation_h;
  g.dil_w = o.dilation_w;
  g.groups = o.groups;
  return g;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvOptions& o) {
  Device dev = same_device("conv2d", {x, w, bias});
  RF_CHECK(x.dim() == 4 && w.dim() == 4, conv_desc("conv2d", x, w, o), ": input and weight must be 4-d");
  RF_CHECK(o.groups >= 1 && x.size(1) == w.size(1) * o.groups && w.size(0) % o.groups == 0,
           conv_desc("conv2d", x, w, o), ": channel counts do not match");
  RF_CHECK(o.stride_h >= 1 && o.stride_w >= 1 && o.dilation_h >= 1 && o.dilation_w >= 1 && o.pad_h >= 0 && o.pad_w >= 0,
           conv_desc("conv2d", x, w, o), ": invalid stride, padding or dilation");
  RF_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == w.size(0)), conv_desc("conv2d", x, w, o), ": bias ",
           bias.shape(), " does not match");
  int64_t h_out = (x.size(2) + 2 * o.pad_h - o.dilation_h * (w.size(2) - 1) - 1) / o.stride_h + 1;
  int64_t w_out = (x.size(3) + 2 * o.pad_w - o.dilation_w * (w.size(3) - 1) - 1) / o.stride_w + 1;
  RF_CHECK(h_out > 0 && w_out > 0, conv_desc("conv2d", x, w, o), ": the output would be empty");
  ConvGeometry g = geometry(x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), h_out, w_out, w, o);
  Tensor y = empty({g.n, g.c_out, h_out, w_out}, dev);
  count_macs(g.n * w.size(0) * h_out * w_out * w.size(1) * w.size(2) * w.size(3));
  conv_forward_kernel(g, x, w, bias.defined() ? bias.data() : nullptr, y);
  if (needs_grad({x, w, bias})) {
    record(y, "conv2d", {x, w, bias}, [g, x, w, bias](const Tensor& gy) {
      Tensor gx, gw, gb;
      if (x.requires_grad()) {
        gx = empty_like(x);
        conv_data_kernel(g, gy, w, gx);
      }
      if (w.requires_grad()) {
        gw = empty_like(w);
        conv_weight_kernel(g, x, gy, gw);
      }
      if (bias.defined() && bias.requires_grad()) gb = sum(gy, {0, 2, 3});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return y;
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvOptions& o) {
  Device dev = same_device("conv_transpose2d", {x, w, bias});
  RF_CHECK(x.dim() == 4 && w.dim() == 4, conv_desc("conv_transpose2d", x, w, o), ": input and weight must be 4-d");
  RF_CHECK(o.groups >= 1 && x.size(1) == w.size(0) && w.size(0) % o.groups == 0,
           conv_desc("conv_transpose2d", x, w, o), ": channel counts do not match (weight is [Cin, Cout/groups, kh, kw])");
  RF_CHECK(o.output_pad_h >= 0 && o.output_pad_w >= 0 &&
               o.output_pad_h < std::max(o.stride_h, o.dilation_h) && o.output_pad_w < std::max(o.stride_w, o.dilation_w),
           conv_desc("conv_transpose2d", x, w, o), ": output padding must be smaller than stride or dilation");
  // cuDNN runs it as a convolution's data gradient and checks that convolution's output size, which an output padding
  // at or above the stride (allowed by a larger dilation) breaks.
  RF_CHECK(dev == Device::CPU || (o.output_pad_h < o.stride_h && o.output_pad_w < o.stride_w),
           conv_desc("conv_transpose2d", x, w, o), ": on cuda the output padding must be smaller than the stride");
  int64_t c_out = w.size(1) * o.groups;
  RF_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == c_out), conv_desc("conv_transpose2d", x, w, o),
           ": bias ", bias.shape(), " does not match");
  int64_t h_out = (x.size(2) - 1) * o.stride_h - 2 * o.pad_h + o.dilation_h * (w.size(2) - 1) + o.output_pad_h + 1;
  int64_t w_out = (x.size(3) - 1) * o.stride_w - 2 * o.pad_w + o.dilation_w * (w.size(3) - 1) + o.output_pad_w + 1;
  RF_CHECK(h_out > 0 && w_out > 0, conv_desc("conv_transpose2d", x, w, o), ": the output would be empty");
  count_macs(x.size(0) * x.size(1) * x.size(2) * x.size(3) * w.size(1) * w.size(2) * w.size(3));
  // The convolution whose data gradient this is: input [N, c_out, h_out, w_out] -> output x's shape.
  ConvGeometry g = geometry(x.size(0), c_out, h_out, w_out, x.size(1), x.size(2), x.size(3), w, o);
  Tensor y = empty({g.n, c_out, h_out, w_out}, dev);
  {
    NoGrad ng;
    conv_data_kernel(g, x, w, y);
    if (bias.defined()) y = add(y, bias.reshape({1, c_out, 1, 1}));
  }
  if (needs_grad({x, w, bias})) {
    record(y, "conv_transpose2d", {x, w, bias}, [g, x, w, bias](const Tensor& gy) {
      Tensor gx, gw, gb;
      if (x.requires_grad()) {
        gx = empty_like(x);
        conv_forward_kernel(g, gy, w, nullptr, gx);
      }
      if (w.requires_grad()) {
        gw = empty_like(w);
        conv_weight_kernel(g, gy, x, gw);
      }
      if (bias.defined() && bias.requires_grad()) gb = sum(gy, {0, 2, 3});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return y;
}

}  // namespace rf
