// The GS method: the blob rasterizer (against a naive double-precision oracle, by finite differences,
// CPU<->CUDA), more than 256 blobs in one tile.
#include <unistd.h>

#include <cmath>
#include <filesystem>

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

#include "ops/attention.h"
#include "ops/attention_impl.h"

namespace {
// softmax(Q K^T / sqrt(D)) V with every score stored, window by window (the plain formula).
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3);
  if (window == 0 || window > n) window = n;
  std::vector<Tensor> parts;
  for (int64_t s = 0; s < n; s += window) {
    int64_t e = std::min(n, s + window);
    Tensor qs = slice(q, 2, s, e).reshape({b * h, e - s, d}), ks = slice(k, 2, s, e).reshape({b * h, e - s, d});
    Tensor vs = slice(v, 2, s, e).reshape({b * h, e - s, d});
    Tensor p = softmax(matmul(qs, ks, false, true) * (1.f / std::sqrt((float)d)), -1);
    parts.push_back(matmul(p, vs).reshape({b, h, e - s, d}));
  }
  return concat(parts, 2);
}
}  // namespace

TEST_SUITE("gs") {

TEST_CASE("fused attention equals the naive softmax(QK^T/sqrt(d))V, forward and backward") {
  for (int64_t window : {0, 7}) {
    std::vector<Tensor> in = {uniform_input({2, 3, 23, 16}, -1, 1, 5), uniform_input({2, 3, 23, 16}, -1, 1, 6),
                              uniform_input({2, 3, 23, 16}, -1, 1, 7)};
    std::vector<Tensor> a, b;
    for (auto& t : in) {
      a.push_back(t.clone().set_requires_grad());
      b.push_back(t.clone().set_requires_grad());
    }
    Tensor fused = attention(a[0], a[1], a[2], window), naive = naive_attention(b[0], b[1], b[2], window);
    CHECK(rel_err(fused, naive) < 1e-5);
    Tensor g = uniform_input(fused.shape(), -1, 1, 8);
    fused.backward(g);
    naive.backward(g);
    for (int i = 0; i < 3; ++i) CHECK_MESSAGE(rel_err(a[i].grad(), b[i].grad()) < 1e-5, "input " << i << " window " << window);
    // the loop-per-query oracle agrees with the blocked GEMM path too
    {
      AttentionGeometry geo{6, 23, 16, window ? window : 23, 0.25f};
      Tensor o1 = empty_like(in[0]), o2 = empty_like(in[0]), l1 = empty({6, 23}), l2 = empty({6, 23});
      cpu::attention_forward(geo, in[0].data(), in[1].data(), in[2].data(), o1.data(), l1.data());
      cpu::attention_forward_reference(geo, in[0].data(), in[1].data(), in[2].data(), o2.data(), l2.data());
      CHECK(rel_err(o1, o2) < 1e-5);
      CHECK(rel_err(l1, l2) < 1e-5);
      Tensor gq1 = empty_like(o1), gk1 = empty_like(o1), gv1 = empty_like(o1), gq2 = empty_like(o1), gk2 = empty_like(o1),
             gv2 = empty_like(o1);
      cpu::attention_backward(geo, in[0].data(), in[1].data(), in[2].data(), o1.data(), l1.data(), g.data(), gq1.data(),
                              gk1.data(), gv1.data());
      cpu::attention_backward_reference(geo, in[0].data(), in[1].data(), in[2].data(), o2.data(), l2.data(), g.data(),
                                        gq2.data(), gk2.data(), gv2.data());
      CHECK(rel_err(gq1, gq2) < 1e-5);
      CHECK(rel_err(gk1, gk2) < 1e-5);
      CHECK(rel_err(gv1, gv2) < 1e-5);
    }
    auto fn = [window](const std::vector<Tensor>& x) { return attention(x[0], x[1], x[2], window); };
    check_gradients("attention", fn, in);
    check_cuda_parity("attention", fn, in, 1e-4);
  }
  // head dimensions 32 and 64 (the CUDA kernels have one instance each)
  for (int64_t d : {32, 64}) {
    std::vector<Tensor> in = {uniform_input({1, 2, 70, d}, -1, 1, 9), uniform_input({1, 2, 70, d}, -1, 1, 10),
                              uniform_input({1, 2, 70, d}, -1, 1, 11)};
    CHECK(rel_err(attention(in[0], in[1], in[2]), naive_attention(in[0], in[1], in[2], 0)) < 1e-5);
    check_cuda_parity("attention_d" + std::to_string(d), [](auto& x) { return attention(x[0], x[1], x[2]); }, in, 1e-4);
  }
}

}  // TEST_SUITE

#include "data/loader.h"
#include "models/gs.h"
#include "layers/losses.h"
#include "data/metrics.h"

TEST_SUITE("gs") {

TEST_CASE("crop_blobs renders exactly the crop_square of the full render, for all 8 flips and rotations") {
  Blobs b = random_blobs(80, 40, 48, 21, 0.6f, 2.5f);
  Tensor full = rasterize(b, 40, 48);
  for (int k = 0; k < 4; ++k)
    for (int f = 0; f < 4; ++f) {
      bool fx = f & 1, fy = f & 2;
      Blobs c = crop_blobs(b, Tensor(), 5, 9, 24, k, fx, fy, 1000.f, nullptr);
      Tensor expect = crop_square(full, 5, 9, 24, k, fx, fy);
      CHECK_MESSAGE(max_abs_diff(rasterize(c, 24, 24), expect) < 1e-4, "k " << k << " flips " << fx << fy);
    }
}

TEST_CASE("blob deblurrer: identity at initialisation, Eq. 5-8 updates, gradients reach its weights") {
  GsConfig cfg;
  cfg.dim = 32;
  cfg.heads = 2;
  manual_seed(3);
  BlobDeblurrer d(cfg);
  Blobs b = random_blobs(50, 30, 30, 22, 0.5f, 2.f);
  Blobs out = d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30);
  CHECK(max_abs_diff(out.theta, b.theta) == 0.0);
  CHECK(max_abs_diff(out.opacity, b.opacity) == 0.0);
  CHECK(max_abs_diff(out.scales, b.scales) < 1.001e-3);  // the 1e-3 px bias that keeps ReLU(ds) trainable
  CHECK(rel_err(rasterize(out, 30, 30), rasterize(b, 30, 30)) < 1e-2);
  // Eq. 5-8 with a known output: dtheta = 4 (clamped to pi), ds = 0.5, do = 0.3.
  for (auto& [name, t] : d.named_parameters())
    if (name == "head.bias") {
      Tensor h = t;
      h.copy_(from_vector({4.f, 0.5f, 0.5f, 0.3f}, {4}));
    }
  Blobs e = d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30);
  auto th = b.theta.to_vector(), th2 = e.theta.to_vector(), s = b.scales.to_vector(), s2 = e.scales.to_vector();
  auto o = b.opacity.to_vector(), o2 = e.opacity.to_vector();
  for (size_t i = 0; i < th.size(); ++i) {
    CHECK(th2[i] == doctest::Approx(th[i] + 3.14159265f));
    CHECK(o2[i] == doctest::Approx(std::min(o[i] + 0.3f, 1.f)));
  }
  for (size_t i = 0; i < s.size(); ++i) CHECK(s2[i] == doctest::Approx(std::max(s[i] - 0.5f, 0.1f)));
  // gradients: a fresh deblurrer's loss reaches every weight, the scale outputs included
  manual_seed(4);
  BlobDeblurrer fresh(cfg);
  Tensor target = rasterize(b, 30, 30) * 0.9f;
  mse_loss(rasterize(fresh.forward(b, Tensor(), Tensor(), Tensor(), 30, 30), 30, 30), target).backward();
  for (auto& [name, t] : fresh.named_parameters()) {
    REQUIRE_MESSAGE(t.grad().defined(), name);
    if (name == "head.weight") {
      auto g = t.grad().to_vector();  // rows: dtheta, ds1, ds2, do
      double row1 = 0;
      for (int64_t c = 0; c < cfg.dim; ++c) row1 += std::fabs(g[cfg.dim + c]);
      CHECK(row1 > 0);
    }
  }
}

TEST_CASE("blob deblurrer with windowed attention and depth inputs") {
  GsConfig cfg;
  cfg.dim = 32;
  cfg.heads = 2;
  cfg.window = 16;
  manual_seed(5);
  BlobDeblurrer d(cfg);
  Blobs b = random_blobs(70, 30, 30, 23);
  Tensor d2 = uniform_input({70}, 0.2f, 1.f, 24), d1 = full({1}, 0.5f), lk = full({1}, std::log(0.05f));
  Blobs out = d.forward(b, d2, d1, lk, 30, 30);
  CHECK(out.size() == 70);
  CHECK(max_abs_diff(out.scales, b.scales) < 1.001e-3);
}

// The deblurrer is trained on crops and run on whole images: its tokens must describe a blob the same way
// in both (a regression: positions were once normalised by the image size, so a test image looked like a
// 4x finer grid than the training crops).
TEST_CASE("blob deblurrer: a blob's change depends on its neighbourhood, not on the image size or offset") {
  GsConfig cfg;
  cfg.dim = 32;
  cfg.heads = 2;
  cfg.window = 0;  // full attention: the result does not depend on the token order
  manual_seed(7);
  BlobDeblurrer d(cfg);
  for (auto& [name, t] : d.named_parameters())
    if (name == "head.weight") t.copy_(uniform_input({4, cfg.dim}, -0.2f, 0.2f, 25));
  Blobs b = random_blobs(60, 32, 32, 26, 0.5f, 2.f);
  Blobs small = d.forward(b, Tensor(), Tensor(), Tensor(), 32, 32);
  Blobs moved = b;
  moved.means = b.means + from_vector({64.f, 128.f}, {1, 2});  // a multiple of every encoding period
  Blobs large = d.forward(moved, Tensor(), Tensor(), Tensor(), 256, 192);
  CHECK(max_abs_diff(small.scales, b.scales) > 1e-3);  // the head does change the blobs
  CHECK(max_abs_diff(large.scales, small.scales) < 1e-5);
  CHECK(max_abs_diff(large.opacity, small.opacity) < 1e-5);
  CHECK(max_abs_diff(large.theta, small.theta) < 1e-5);
}

TEST_CASE("initializer: one blob per 2x2 cell, trainable through the rasterizer") {
  GsConfig cfg;
  cfg.init_width = 8;
  manual_seed(6);
  GsInitializer init(cfg);
  Tensor img = uniform_input({3, 18, 22}, 0, 1, 25), depth = uniform_input({1, 18, 22}, 0.5f, 1.f, 26);
  FitParams p = init.forward(img, depth);
  CHECK(p.size() == 9 * 11);
  Tensor loss = mse_loss(rasterize(p.blobs(), 18, 22), img);
  loss.backward();
  for (auto& [name, t] : init.named_parameters()) CHECK_MESSAGE(t.grad().defined(), name);
  CHECK_THROWS_WITH_AS(init.forward(img, Tensor()), doctest::Contains("configured with depth"), Error);
}

TEST_CASE("fitting reproduces an image; L_reg follows Eq. 14; blob files round trip") {
  Tensor img = rasterize(random_blobs(40, 48, 48, 27, 1.f, 5.f), 48, 48) * 0.5f + 0.25f;
  FitParams init = analytic_init(img, 2);
  CHECK(init.size() == 24 * 24);
  double start = psnr(clamp(rasterize(init.blobs(), 48, 48), 0.f, 1.f), img);
  FitOptions fo;
  fo.iters = 150;
  FitResult r = fit_blobs(img, Tensor(), init, fo);
  MESSAGE("fit 48x48: analytic init " << start << " dB, after 150 iterations " << r.psnr << " dB");
  CHECK(r.psnr > start + 5);
  CHECK(r.psnr > 35);
  // Eq. 14 for one blob by hand: s = (3, 2) px on a 100 px image, d2 = 0.5, d1 = 0.4, K = 0.05
  Tensor reg = depth_regulariser(full({1}, 0.5f), from_vector({3.f, 2.f}, {1, 2}), full({1}, 0.4f), full({1}, 0.05f), 100.f);
  double s1 = 0.03, s2 = 0.02, d2v = 0.5, d1v = 0.4, k = 0.05;
  double expect = std::pow(d2v * d2v - (s1 * s2 * d2v * d2v / (k * k) + 2 * d1v * d2v - d1v * d1v), 2);
  CHECK(reg.item() == doctest::Approx(expect).epsilon(1e-5));
  GradCheck fine;  // 1/K^2 is steep: a small step
  fine.eps = 1e-3;
  check_gradients("depth_regulariser",
                  [](auto& x) { return depth_regulariser(x[0], x[1], x[2], x[3], 50.f); },
                  {uniform_input({6}, 0.3f, 1.f, 28), uniform_input({6, 2}, 0.5f, 3.f, 29), full({1}, 0.5f), full({1}, 0.3f)},
                  fine);
  // with depth the fit also learns d1 and K
  FitOptions fd;
  fd.iters = 20;
  FitResult rd = fit_blobs(img, uniform_input({1, 48, 48}, 1.f, 3.f, 30), analytic_init(img, 2), fd);
  CHECK(rd.params.d1.defined());
  CHECK(rd.params.log_k.item() != doctest::Approx(std::log(0.05f)));
  auto dir = std::filesystem::temp_directory_path() / ("refocus_blobs_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  save_blobs((dir / "b.safetensors").string(), rd.params, 48, 48);
  int64_t h = 0, w = 0;
  FitParams back = load_blobs((dir / "b.safetensors").string(), &h, &w);
  CHECK(h == 48);
  CHECK(rel_err(rasterize(back.blobs(), 48, 48), rasterize(rd.params.blobs(), 48, 48)) < 1e-5);
  std::filesystem::remove_all(dir);
}

}  // TEST_SUITE

TEST_SUITE("gs") {

TEST_CASE("gs_deblur: an untrained model returns the input (residual output) or the fitted render (paper)") {
  GsConfig cfg;
  cfg.init_width = 8;
  cfg.dim = 16;
  cfg.heads = 2;
  cfg.use_depth = false;
  manual_seed(8);
  GsModel m(cfg);
  Tensor img = clamp(rasterize(random_blobs(30, 32, 32, 31, 1.f, 4.f), 32, 32) * 0.6f + 0.2f, 0.f, 1.f);
  GsResult r = gs_deblur(m, img, Tensor(), 30);
  CHECK(max_abs_diff(r.sharp, img) < 2e-2);  // the fresh deblurrer only shrinks blobs by 1e-3 px
  CHECK(r.fitted.size() == 16 * 16);
  m.cfg.residual = false;
  GsResult p = gs_deblur(m, img, Tensor(), 30);
  CHECK(max_abs_diff(p.sharp, clamp(rasterize(p.fitted.blobs(), 32, 32), 0.f, 1.f)) < 2e-2);
}

}  // TEST_SUITE
