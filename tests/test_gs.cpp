// The GS method: the blob rasterizer (against a naive double-precision oracle, by finite differences,
// CPU<->CUDA), more than 256 blobs in one tile.
#include <cmath>

#include "ops/gauss_raster.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;

namespace {

Blobs random_blobs(int64_t n, float h, float w, uint64_t seed, float s_lo = 0.7f, float s_hi = 4.f) {
  Generator g(seed);
  Blobs b;
  b.means = from_vector([&] {
    std::vector<float> v(2 * n);
    for (int64_t i = 0; i < n; ++i) {
      v[2 * i] = g.uniform(0.f, w);
      v[2 * i + 1] = g.uniform(0.f, h);
    }
    return v;
  }(), {n, 2});
  b.theta = uniform({n}, 0.f, 3.14159f, Device::CPU, &g);
  b.scales = uniform({n, 2}, s_lo, s_hi, Device::CPU, &g);
  b.colors = uniform({n, 3}, -0.5f, 1.f, Device::CPU, &g);
  b.opacity = uniform({n}, 0.2f, 1.f, Device::CPU, &g);
  return b;
}

// The sum of Eq. 4 pixel by pixel over every blob, with Sigma = R S S^T R^T inverted explicitly.
Tensor naive_render(const Blobs& b, int64_t h, int64_t w, double sigmas) {
  auto m = b.means.to_vector(), th = b.theta.to_vector(), s = b.scales.to_vector(), c = b.colors.to_vector(),
       o = b.opacity.to_vector();
  std::vector<double> img(3 * h * w, 0.0);
  for (int64_t i = 0; i < b.size(); ++i) {
    double ct = std::cos(th[i]), st = std::sin(th[i]), s1 = s[2 * i], s2 = s[2 * i + 1];
    double sxx = s1 * s1 * ct * ct + s2 * s2 * st * st, syy = s1 * s1 * st * st + s2 * s2 * ct * ct;
    double sxy = (s1 * s1 - s2 * s2) * ct * st, det = sxx * syy - sxy * sxy;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        double dx = x + 0.5 - m[2 * i], dy = y + 0.5 - m[2 * i + 1];
        double q = (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det;
        if (q > sigmas * sigmas) continue;
        for (int k = 0; k < 3; ++k) img[k * h * w + y * w + x] += c[3 * i + k] * o[i] * std::exp(-0.5 * q);
      }
  }
  return from_vector(std::vector<float>(img.begin(), img.end()), {3, h, w});
}

OpFn raster_fn(int64_t h, int64_t w, float sigmas) {
  return [=](const std::vector<Tensor>& x) { return rasterize(Blobs{x[0], x[1], x[2], x[3], x[4]}, h, w, sigmas); };
}

std::vector<Tensor> as_inputs(const Blobs& b) { return {b.means, b.theta, b.scales, b.colors, b.opacity}; }

}  // namespace

TEST_SUITE("gs") {

TEST_CASE("rasterizer forward matches the naive per-pixel sum (3-sigma cutoff)") {
  Blobs b = random_blobs(60, 37, 45, 1);
  Tensor img = rasterize(b, 37, 45);
  CHECK(img.shape() == Shape{3, 37, 45});
  CHECK(rel_err(img, naive_render(b, 37, 45, 3.0)) < 1e-5);
  CHECK(rel_err(rasterize(b, 37, 45, 5.f), naive_render(b, 37, 45, 5.0)) < 1e-5);
}

TEST_CASE("rasterizer gradients for every blob parameter match finite differences") {
  Blobs b = random_blobs(14, 20, 24, 2);
  // A wide cutoff makes the image smooth in the parameters (a pixel crossing the 3-sigma rim would jump).
  GradCheck gc;
  gc.eps = 1e-3;
  gc.tol = 1e-2;
  check_gradients("rasterize", raster_fn(20, 24, 6.f), as_inputs(b), gc);
  // The 3-sigma cutoff uses the same formulas inside the ellipse: compare analytic gradients of the
  // two cutoffs where the blobs are small enough that 3 sigma covers everything that matters.
  check_cuda_parity("rasterize", raster_fn(20, 24, 3.f), as_inputs(b), 1e-4);
}

TEST_CASE("more than 256 blobs in one tile are all rendered") {
  Blobs b = random_blobs(700, 16, 16, 3, 0.4f, 1.2f);  // centres inside the first 16x16 tile
  Tensor img = rasterize(b, 32, 40);
  RasterStats st = last_raster_stats();
  MESSAGE("blobs in the busiest tile: " << st.max_blobs_in_a_tile);
  CHECK(st.max_blobs_in_a_tile > 256);
  CHECK(rel_err(img, naive_render(b, 32, 40, 3.0)) < 1e-5);
  check_cuda_parity("rasterize_dense_tile", raster_fn(32, 40, 3.f), as_inputs(b), 1e-4);
}

TEST_CASE("blobs outside the image or with degenerate scales draw nothing") {
  Blobs b = random_blobs(5, 10, 10, 4);
  b.means = from_vector({-50, -50, 500, 5, 5, 900, 5, 5, 5, 5}, {5, 2});
  b.scales = from_vector({1, 1, 1, 1, 1, 1, 0, 1, 2, 2}, {5, 2});  // blob 3 has a zero scale
  Tensor img = rasterize(b, 10, 10);
  Blobs only_last = b;
  only_last.opacity = from_vector({0, 0, 0, 0, b.opacity.to_vector()[4]}, {5});
  CHECK(max_abs_diff(img, rasterize(only_last, 10, 10)) == 0.0);
}

}  // TEST_SUITE
