#include "ops/fft.h"

#include <cmath>
#include <complex>
#include <vector>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/fft_impl.h"

namespace rf {

namespace cpu {

using cd = std::complex<double>;

// In-place 1-D DFT of n values spaced `stride` apart, with exp(sign * 2 pi i jk / n).
// Radix-2 Cooley–Tukey when n is a power of two, the direct O(n^2) sum otherwise.
static void dft1d(cd* a, int64_t n, int64_t stride, int sign, std::vector<cd>& tmp) {
  tmp.resize(n);
  for (int64_t k = 0; k < n; ++k) tmp[k] = a[k * stride];
  const double two_pi = 6.283185307179586;
  if ((n & (n - 1)) == 0) {
    for (int64_t i = 1, j = 0; i < n; ++i) {  // bit-reversal permutation
      int64_t bit = n >> 1;
      for (; j & bit; bit >>= 1) j ^= bit;
      j ^= bit;
      if (i < j) std::swap(tmp[i], tmp[j]);
    }
    for (int64_t len = 2; len <= n; len <<= 1) {
      cd wl = std::polar(1.0, sign * two_pi / (double)len);
      for (int64_t i = 0; i < n; i += len) {
        cd w = 1.0;
        for (int64_t k = 0; k < len / 2; ++k) {
          cd u = tmp[i + k], v = tmp[i + k + len / 2] * w;
          tmp[i + k] = u + v;
          tmp[i + k + len / 2] = u - v;
          w *= wl;
        }
      }
    }
    for (int64_t k = 0; k < n; ++k) a[k * stride] = tmp[k];
  } else {
    for (int64_t k = 0; k < n; ++k) {
      cd acc = 0.0;
      for (int64_t j = 0; j < n; ++j) acc += tmp[j] * std::polar(1.0, sign * two_pi * (double)((j * k) % n) / (double)n);
      a[k * stride] = acc;
    }
  }
}

// Rows, then columns, of one [h, w] plane.
static void dft2(cd* plane, int64_t h, int64_t w, int sign) {
  std::vector<cd> tmp;
  for (int64_t y = 0; y < h; ++y) dft1d(plane + y * w, w, 1, sign, tmp);
  for (int64_t x = 0; x < w; ++x) dft1d(plane + x, h, w, sign, tmp);
}

void fft2_forward(const float* x, float* out, int64_t planes, int64_t h, int64_t w) {
#pragma omp parallel for
  for (int64_t p = 0; p < planes; ++p) {
    std::vector<cd> plane(h * w);
    for (int64_t i = 0; i < h * w; ++i) plane[i] = x[p * h * w + i];
    dft2(plane.data(), h, w, -1);
    for (int64_t i = 0; i < h * w; ++i) {
      out[(p * h * w + i) * 2] = (float)plane[i].real();
      out[(p * h * w + i) * 2 + 1] = (float)plane[i].imag();
    }
  }
}

void fft2_backward(const float* g, float* gx, int64_t planes, int64_t h, int64_t w) {
#pragma omp parallel for
  for (int64_t p = 0; p < planes; ++p) {
    std::vector<cd> plane(h * w);
    for (int64_t i = 0; i < h * w; ++i) plane[i] = cd(g[(p * h * w + i) * 2], g[(p * h * w + i) * 2 + 1]);
    dft2(plane.data(), h, w, +1);
    for (int64_t i = 0; i < h * w; ++i) gx[p * h * w + i] = (float)plane[i].real();
  }
}

}  // namespace cpu

Tensor fft2(const Tensor& x) {
  RF_CHECK(x.dim() >= 2 && x.numel() > 0, "fft2: expected a non-empty [..., H, W], got ", describe(x));
  int64_t h = x.size(-2), w = x.size(-1), planes = x.numel() / (h * w);
  Shape os = x.shape();
  os.push_back(2);
  Tensor y = empty(os, x.device());
  if (x.is_cuda())
    RF_GPU_OP("fft2", (x), gpu::fft2_forward(x.data(), y.data(), planes, h, w));
  else
    cpu::fft2_forward(x.data(), y.data(), planes, h, w);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "fft2", {x}, [in_shape, planes, h, w](const Tensor& g) {
      Tensor gx = empty(in_shape, g.device());
      if (g.is_cuda())
        RF_GPU(gpu::fft2_backward(g.data(), gx.data(), planes, h, w));
      else
        cpu::fft2_backward(g.data(), gx.data(), planes, h, w);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

}  // namespace rf
