#include "ops/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/norm_impl.h"
#include "ops/vector_math.h"

namespace rf {

namespace cpu {
constexpr int64_t kPar = 1 << 14;

// The normalised dimension is strided when inner > 1 (LayerNorm over the channels of an NCHW image): rather than
// walk one pixel's channels HW floats apart, a block of kBlock neighbouring pixels is normalised together, each
// pass over the channels reading contiguous rows. Every pixel's sums run over the channels in the same order as
// one pixel at a time would, so the results are the same to the bit.
constexpr int64_t kBlock = 256;

template <class F>
static void for_pixel_blocks(const NormGeometry& g, F block) {
  const int64_t per_outer = (g.inner + kBlock - 1) / kBlock;
#pragma omp parallel for if (g.outer * g.inner * g.d > kPar)
  for (int64_t t = 0; t < g.outer * per_outer; ++t) {
    const int64_t o = t / per_outer, i0 = (t % per_outer) * kBlock;
    block(o, i0, std::min(g.inner, i0 + kBlock) - i0);
  }
}

// LayerNorm over the last dimension (inner == 1: a transformer's tokens, where every pixel block above is one
// token): each row's sums in lane_sum's eight double lanes; one double accumulator was a chain of dependent adds
// (6.5% of a gs deblurrer training step).
static void layer_norm_rows_forward(const NormGeometry& g, const float* x, const float* w, const float* b, float* y,
                                    float* mean, float* rstd, float eps) {
#pragma omp parallel for if (g.outer * g.d > kPar)
  for (int64_t o = 0; o < g.outer; ++o) {
    const float* xr = x + o * g.d;
    float* yr = y + o * g.d;
    const double mu = lane_sum(g.d, [&](int64_t k) { return (double)xr[k]; }) / g.d;
    const double var = lane_sum(g.d, [&](int64_t k) {
                         const double dv = xr[k] - mu;
                         return dv * dv;
                       }) / g.d;
    const float mu_f = (float)mu, rs = (float)(1.0 / std::sqrt(var + eps));
    mean[o] = mu_f;
    rstd[o] = rs;
    for (int64_t k = 0; k < g.d; ++k) yr[k] = (xr[k] - mu_f) * rs * (w ? w[k] : 1.f) + (b ? b[k] : 0.f);
  }
}

static void layer_norm_rows_backward_input(const NormGeometry& g, const float* x, const float* w, const float* mean,
                                           const float* rstd, const float* gy, float* gx) {
#pragma omp parallel for if (g.outer * g.d > kPar)
  for (int64_t o = 0; o < g.outer; ++o) {
    const float *xr = x + o * g.d, *gr = gy + o * g.d;
    float* out = gx + o * g.d;
    const float mu = mean[o], rs = rstd[o];
    auto gh = [&](int64_t k) { return gr[k] * (w ? w[k] : 1.f); };  // the gradient at the normalised x
    auto xh = [&](int64_t k) { return (xr[k] - mu) * rs; };           // the normalised x
    const float ma = (float)(lane_sum(g.d, [&](int64_t k) { return (double)gh(k); }) / g.d);
    const float mb = (float)(lane_sum(g.d, [&](int64_t k) { return (double)(gh(k) * xh(k)); }) / g.d);
    for (int64_t k = 0; k < g.d; ++k) out[k] = rs * (gh(k) - ma - xh(k) * mb);
  }
}

void layer_norm_forward(const NormGeometry& g, const float* x, const float* w, const float* b, float* y, float* mean,
                        float* rstd, float eps) {
  if (g.inner == 1) return layer_norm_rows_forward(g, x, w, b, y, mean, rstd, eps);
  for_pixel_blocks(g, [&](int64_t o, int64_t i0, int64_t len) {
    double s[kBlock], ss[kBlock];
    float mu_f[kBlock], rs[kBlock];
    const int64_t base = o * g.d * g.inner + i0;
    for (int64_t i = 0; i < len; ++i) s[i] = ss[i] = 0;
    for (int64_t k = 0; k < g.d; ++k) {
      const float* xr = x + base + k * g.inner;
      for (int64_t i = 0; i < len; ++i) s[i] += xr[i];
    }
    for (int64_t i = 0; i < len; ++i) s[i] /= g.d;  // the mean, in double
    for (int64_t k = 0; k < g.d; ++k) {
      const float* xr = x + base + k * g.inner;
      for (int64_t i = 0; i < len; ++i) {
        double dv = xr[i] - s[i];
        ss[i] += dv * dv;
      }
    }
    for (int64_t i = 0; i < len; ++i) {
      rs[i] = (float)(1.0 / std::sqrt(ss[i] / g.d + eps));
      mu_f[i] = (float)s[i];
      mean[o * g.inner + i0 + i] = mu_f[i];
      rstd[o * g.inner + i0 + i] = rs[i];
    }
    for (int64_t k = 0; k < g.d; ++k) {
      const float* xr = x + base + k * g.inner;
      float* yr = y + base + k * g.inner;
      const float wk = w ? w[k] : 1.f, bk = b ? b[k] : 0.f;
      for (int64_t i = 0; i < len; ++i) yr[i] = (xr[i] - mu_f[i]) * rs[i] * wk + bk;
    }
  });
}

void layer_norm_backward_input(const NormGeometry& g, const float* x, const float* w, const float* mean,
                               const float* rstd, const float* gy, float* gx) {
  if (g.inner == 1) return layer_norm_rows_backward_input(g, x, w, mean, rstd, gy, gx);
  for_pixel_blocks(g, [&](int64_t o, int64_t i0, int64_t len) {
    double a[kBlock], bsum[kBlock];
    float ma[kBlock], mb[kBlock];
    const int64_t base = o * g.d * g.inner + i0;
    const float* mu = mean + o * g.inner + i0;
    const float* rs = rstd + o * g.inner + i0;
    for (int64_t i = 0; i < len; ++i) a[i] = bsum[i] = 0;
    for (int64_t k = 0; k < g.d; ++k) {
      const float* xr = x + base + k * g.inner;
      const float* gr = gy + base + k * g.inner;
      const float wk = w ? w[k] : 1.f;
      for (int64_t i = 0; i < len; ++i) {
        float gh = gr[i] * wk, xh = (xr[i] - mu[i]) * rs[i];
        a[i] += gh;
        bsum[i] += gh * xh;
      }
    }
    for (int64_t i = 0; i < len; ++i) {
      ma[i] = (float)(a[i] / g.d);
      mb[i] = (float)(bsum[i] / g.d);
    }
    for (int64_t k = 0; k < g.d; ++k) {
      const float* xr = x + base + k * g.inner;
      const float* gr = gy + base + k * g.inner;
      float* out = gx + base + k * g.inner;
      const float wk = w ? w[k] : 1.f;
      for (int64_t i = 0; i < len; ++i) {
        float gh = gr[i] * wk, xh = (xr[i] - mu[i]) * rs[i];
        out[i] = rs[i] * (gh - ma[i] - xh * mb[i]);
      }
    }
  });
}

void channel_stats(const NormGeometry& g, const float* x, float* mean, float* var) {
  const int64_t count = g.outer * g.inner;
#pragma omp parallel for if (count * g.d > kPar)
  for (int64_t c = 0; c < g.d; ++c) {
    double s = 0, ss = 0;
    for (int64_t o = 0; o < g.outer; ++o) {
      const float* p = x + (o * g.d + c) * g.inner;
      for (int64_t i = 0; i < g.inner; ++i) s += p[i];
    }
    double mu = s / count;
    for (int64_t o = 0; o < g.outer; ++o) {
      const float* p = x + (o * g.d + c) * g.inner;
      for (int64_t i = 0; i < g.inner; ++i) ss += (p[i] - mu) * (p[i] - mu);
    }
    mean[c] = (float)mu;
    var[c] = (float)(ss / count);
  }
}

void channel_affine(const NormGeometry& g, const float* x, const float* mean, const float* rstd, const float* w,
                    const float* b, float* y) {
  const int64_t n = g.outer * g.d * g.inner;
#pragma omp parallel for if (n > kPar)
  for (int64_t oc = 0; oc < g.outer * g.d; ++oc) {  // one (outer, channel) row at a time: no division per element
    const int64_t c = oc % g.d;
    const float scale = rstd[c] * (w ? w[c] : 1.f), shift = (b ? b[c] : 0.f) - mean[c] * scale;
    const float* xr = x + oc * g.inner;
    float* yr = y + oc * g.inner;
    for (int64_t i = 0; i < g.inner; ++i) yr[i] = xr[i] * scale + shift;
  }
}

// LayerNorm over the last dimension (inner == 1, statistics per row): a channel is every d-th float, so a walk per
// channel read each cache line of x and gy up to 16 times, one channel at a time (4.8x PyTorch's LayerNorm step in
// bench_engine). Fixed chunks of rows instead, each chunk's per-channel sums in double, then the chunks added in
// order: the same result for any number of threads.
static void channel_grad_sums_rows(const NormGeometry& g, const float* x, const float* mean, const float* rstd,
                                   const float* gy, float* sum_g, float* sum_gx) {
  constexpr int64_t kRows = 256;
  const int64_t chunks = (g.outer + kRows - 1) / kRows;
  std::vector<double> partial((size_t)(chunks * 2 * g.d), 0.0);  // per chunk: sum g, then sum g * x-hat
#pragma omp parallel for if (g.outer * g.d > kPar)
  for (int64_t c = 0; c < chunks; ++c) {
    double* sg = partial.data() + c * 2 * g.d;
    double* sgx = sg + g.d;
    for (int64_t o = c * kRows; o < std::min(g.outer, (c + 1) * kRows); ++o) {
      const float *xr = x + o * g.d, *gr = gy + o * g.d;
      const float mu = mean[o], rs = rstd[o];
      for (int64_t k = 0; k < g.d; ++k) {
        sg[k] += gr[k];
        sgx[k] += gr[k] * ((xr[k] - mu) * rs);
      }
    }
  }
  for (int64_t k = 0; k < g.d; ++k) {
    double sg = 0, sgx = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      sg += partial[(size_t)(c * 2 * g.d + k)];
      sgx += partial[(size_t)(c * 2 * g.d + g.d + k)];
    }
    sum_g[k] = (float)sg;
    sum_gx[k] = (float)sgx;
  }
}

void channel_grad_sums(const NormGeometry& g, const float* x, const float* mean, const float* rstd,
                       bool stats_per_channel, const float* gy, float* sum_g, float* sum_gx) {
  if (g.inner == 1 && !stats_per_channel) return channel_grad_sums_rows(g, x, mean, rstd, gy, sum_g, sum_gx);
#pragma omp parallel for if (g.outer * g.d * g.inner > kPar)
  for (int64_t c = 0; c < g.d; ++c) {
    double sg = 0, sgx = 0;
    for (int64_t o = 0; o < g.outer; ++o)
      for (int64_t i = 0; i < g.inner; ++i) {
        int64_t j = (o * g.d + c) * g.inner + i, s = stats_per_channel ? c : o * g.inner + i;
        sg += gy[j];
        sgx += gy[j] * ((x[j] - mean[s]) * rstd[s]);
      }
    sum_g[c] = (float)sg;
    sum_gx[c] = (float)sgx;
  }
}

void batch_norm_backward_input(const NormGeometry& g, const float* x, const float* mean, const float* rstd,
                               const float* w, const float* gy, const float* sum_g, const float* sum_gx, float* gx) {
  const int64_t n = g.outer * g.d * g.inner;
  const float inv_count = 1.f / (float)(g.outer * g.inner);
#pragma omp parallel for if (n > kPar)
  for (int64_t j = 0; j < n; ++j) {
    int64_t c = (j / g.inner) % g.d;
    float v = gy[j];
    if (sum_g) v -= (sum_g[c] + (x[j] - mean[c]) * rstd[c] * sum_gx[c]) * inv_count;
    gx[j] = (w ? w[c] : 1.f) * rstd[c] * v;
  }
}

}  // namespace cpu

static const float* ptr(const Tensor& t) { return t.defined() ? t.data() : nullptr; }

Tensor layer_norm(const Tensor& x, int64_t dim, const Tensor& weight, const Tensor& bias, float eps) {
  Device dev = same_device("layer_norm", {x, weight, bias});
  int64_t dd = wrap_dim(dim, x.dim(), "layer_norm");
  NormGeometry g{1, x.size(dd), 1};
  for (int64_t k = 0; k < dd; ++k) g.outer *= x.size(k);
  for (int64_t k = dd + 1; k < x.dim(); ++k) g.inner *= x.size(k);
  for (const Tensor* t : {&weight, &bias})
    RF_CHECK(!t->defined() || (t->dim() == 1 && t->size(0) == g.d), "layer_norm: parameter ", describe(*t),
             " does not match dim ", dim, " of ", describe(x));
  Tensor y = empty_like(x), mean = empty({g.outer * g.inner}, dev), rstd = empty({g.outer * g.inner}, dev);
  if (dev == Device::CUDA)
    RF_GPU_OP("layer_norm", (x, weight, bias),
              gpu::layer_norm_forward(g, x.data(), ptr(weight), ptr(bias), y.data(), mean.data(), rstd.data(), eps));
  else
    cpu::layer_norm_forward(g, x.data(), ptr(weight), ptr(bias), y.data(), mean.data(), rstd.data(), eps);
  if (needs_grad({x, weight, bias})) {
    record(y, "layer_norm", {x, weight, bias}, [g, x, weight, bias, mean, rstd](const Tensor& gy) {
      Tensor gx, gw, gb;
      bool cuda = gy.is_cuda();
      if (x.requires_grad()) {
        gx = empty_like(x);
        if (cuda)
          RF_GPU(gpu::layer_norm_backward_input(g, x.data(), ptr(weight), mean.data(), rstd.data(), gy.data(), gx.data()));
        else
          cpu::layer_norm_backward_input(g, x.data(), ptr(weight), mean.data(), rstd.data(), gy.data(), gx.data());
      }
      bool want_w = weight.defined() && weight.requires_grad(), want_b = bias.defined() && bias.requires_grad();
      if (want_w || want_b) {
        Tensor sg = empty({g.d}, gy.device()), sgx = empty({g.d}, gy.device());
        if (cuda)
          RF_GPU(gpu::channel_grad_sums(g, x.data(), mean.data(), rstd.data(), false, gy.data(), sg.data(), sgx.data()));
        else
          cpu::channel_grad_sums(g, x.data(), mean.data(), rstd.data(), false, gy.data(), sg.data(), sgx.data());
        if (want_w) gw = sgx;
        if (want_b) gb = sg;
      }
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return y;
}

Tensor batch_norm(const Tensor& x, Tensor& running_mean, Tensor& running_var, const Tensor& weight, const Tensor& bias,
                  bool training, float momentum, float eps) {
  Device dev = same_device("batch_norm", {x, running_mean, running_var, weight, bias});
  RF_CHECK(x.dim() >= 2, "batch_norm: expected [N, C, ...], got ", describe(x));
  NormGeometry g{x.size(0), x.size(1), 1};
  for (int64_t k = 2; k < x.dim(); ++k) g.inner *= x.size(k);
  for (const Tensor* t : {(const Tensor*)&running_mean, (const Tensor*)&running_var, &weight, &bias})
    RF_CHECK(!t->defined() || (t->dim() == 1 && t->size(0) == g.d), "batch_norm: ", describe(*t),
             " does not match the ", g.d, " channels of ", describe(x));
  Tensor mean, rstd;
  {
    NoGrad ng;
    if (training) {
      int64_t count = g.outer * g.inner;
      RF_CHECK(count > 1, "batch_norm: training needs more than one value per channel, got ", describe(x));
      mean = empty({g.d}, dev);
      Tensor var = empty({g.d}, dev);
      if (dev == Device::CUDA)
        RF_GPU_OP("batch_norm statistics", (x), gpu::channel_stats(g, x.data(), mean.data(), var.data()));
      else
        cpu::channel_stats(g, x.data(), mean.data(), var.data());
      rstd = pow(var + eps, -0.5f);
      if (running_mean.defined()) {
        scale_(running_mean, 1.f - momentum);
        add_(running_mean, mean, momentum);
      }
      if (running_var.defined()) {
        scale_(running_var, 1.f - momentum);
        add_(running_var, var, momentum * (float)count / (float)(count - 1));
      }
    } else {
      RF_CHECK(running_mean.defined() && running_var.defined(), "batch_norm: evaluation mode needs running statistics");
      mean = running_mean.detach().clone();
      rstd = pow(running_var + eps, -0.5f);
    }
  }
  Tensor y = empty_like(x);
  if (dev == Device::CUDA)
    RF_GPU_OP("batch_norm", (x, weight, bias),
              gpu::channel_affine(g, x.data(), mean.data(), rstd.data(), ptr(weight), ptr(bias), y.data()));
  else
    cpu::channel_affine(g, x.data(), mean.data(), rstd.data(), ptr(weight), ptr(bias), y.data());
  if (needs_grad({x, weight, bias})) {
    record(y, "batch_norm", {x, weight, bias}, [g, x, weight, bias, mean, rstd, training](const Tensor& gy) {
      bool cuda = gy.is_cuda();
      Tensor sg = empty({g.d}, gy.device()), sgx = empty({g.d}, gy.device());
      if (cuda)
        RF_GPU(gpu::channel_grad_sums(g, x.data(), mean.data(), rstd.data(), true, gy.data(), sg.data(), sgx.data()));
      else
        cpu::channel_grad_sums(g, x.data(), mean.data(), rstd.data(), true, gy.data(), sg.data(), sgx.data());
      Tensor gx;
      if (x.requires_grad()) {
        gx = empty_like(x);
        const float* s1 = training ? sg.data() : nullptr;
        const float* s2 = training ? sgx.data() : nullptr;
        if (cuda)
          RF_GPU(gpu::batch_norm_backward_input(g, x.data(), mean.data(), rstd.data(), ptr(weight), gy.data(), s1, s2,
                                                gx.data()));
        else
          cpu::batch_norm_backward_input(g, x.data(), mean.data(), rstd.data(), ptr(weight), gy.data(), s1, s2,
                                         gx.data());
      }
      Tensor gw = weight.defined() && weight.requires_grad() ? sgx : Tensor();
      Tensor gb = bias.defined() && bias.requires_grad() ? sg : Tensor();
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return y;
}

}  // namespace rf
