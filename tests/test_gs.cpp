// The GS method above the ops: blob crops, the deblurrer, the initializer, fitting and the whole pipeline.
// (The rasterizer and attention ops are tested in test_op_table.cpp against their naive oracles.)
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "ops/gauss_raster.h"
#include "ops/separable.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;

namespace {


}  // namespace

#include "data/loader.h"
#include "models/gs.h"
#include "layers/losses.h"
#include "layers/optim.h"
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

TEST_CASE("image patches turn with the crop: the patches of a rotated or flipped crop, for all 8") {
  manual_seed(17);
  Tensor image = rand({3, 40, 48});
  Blobs b = random_blobs(120, 40, 48, 5, 0.6f, 2.5f);
  const int64_t p = 4, top = 6, left = 10, size = 24;
  // Two columns of something isotropic in front, as blob_features puts the local contrast first.
  Tensor extra = concat({rand({b.size(), 2}), image_patches(image, b.means, p)}, 1);
  REQUIRE(extra.size(1) == 2 + 3 * p * p);
  // The sample grid sits at +-0.5, +-1.5 px around the centre: a sample at pixel centre (x, y) is that pixel.
  Tensor at = image_patches(image, from_vector({21.f, 11.f}, {1, 2}), p);  // [1, 48]: column 0 is pixel (x 19, y 9)
  auto px = image.to_vector();  // red plane, row-major, width 48
  auto red = [&](int y, int x) { return px[(size_t)(y * 48 + x)]; };
  const float centre = 0.25f * (red(10, 20) + red(10, 21) + red(11, 20) + red(11, 21));  // the blob sits between them
  CHECK(std::fabs(at.to_vector()[0] - 4.f * (red(9, 19) - centre)) < 1e-5);
  double largest = 0;
  for (int k = 0; k < 4; ++k)
    for (int f = 0; f < 4; ++f) {
      const bool fx = f & 1, fy = f & 2;
      Tensor cropped_extra;
      Blobs c = crop_blobs(b, Tensor(), top, left, size, k, fx, fy, 0.f, nullptr, extra, &cropped_extra);
      Tensor turned = orient_patches(cropped_extra, 2, p, k, fx, fy);
      // Computed afresh on the transformed crop, for the blobs whose patch lies inside it.
      Tensor fresh = image_patches(crop_square(image, top, left, size, k, fx, fy), c.means, p);
      auto m = c.means.to_vector();
      std::vector<int64_t> inside;
      for (int64_t i = 0; i < c.size(); ++i)
        if (m[2 * i] > 3.f && m[2 * i] < size - 3.f && m[2 * i + 1] > 3.f && m[2 * i + 1] < size - 3.f) inside.push_back(i);
      REQUIRE(inside.size() > 10);
      const double diff = max_abs_diff(gather_rows(slice(turned, 1, 2, 2 + 3 * p * p), inside), gather_rows(fresh, inside));
      CHECK_MESSAGE(diff < 1e-5, "k " << k << " flips " << fx << fy);
      CHECK(max_abs_diff(slice(turned, 1, 0, 2), slice(cropped_extra, 1, 0, 2)) == 0.0);  // the others stay
      if (k || f) largest = std::max(largest, max_abs_diff(turned, cropped_extra));
    }
  CHECK(largest > 0.1);  // the turns do move the columns
  CHECK_THROWS(orient_patches(extra, 3, p, 1, false, false));  // no 4x4 patch at column 3 of 50
}

// The recipe takes a training crop's encoder features of the crop padded by the margin, the encoder's reach and a
// bilinear tap, turned as the crop is; they must be those of the whole image turned the same way, at the same blobs,
// for every blob the crop keeps (the margin's too).
TEST_CASE("photo encoder features of a rotated or flipped training crop are the turned whole image's, for all 8") {
  GsConfig cfg;
  cfg.dim = 16;
  cfg.heads = 2;
  cfg.photo_encoder = 4;
  manual_seed(19);
  GsModel m(cfg);
  REQUIRE(m.encoder);
  const float margin = 8.f;
  const int64_t side = 40, top = 6, left = 10, size = 24, pad = GsPhotoEncoder::kPad + 8;
  Tensor image = rand({3, side, side});  // square, so that the whole image turns like a crop
  Blobs b = random_blobs(150, (float)side, (float)side, 7, 0.6f, 2.5f);
  std::vector<float> ids(b.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = (float)i;
  Tensor id = from_vector(ids, {b.size(), 1});
  for (int k = 0; k < 4; ++k)
    for (int f = 0; f < 4; ++f) {
      const bool fx = f & 1, fy = f & 2;
      Tensor crop_ids, whole_ids;
      Blobs c = crop_blobs(b, Tensor(), top, left, size, k, fx, fy, margin, nullptr, id, &crop_ids);
      Tensor photo = crop_square(GsModel::pad_for_encoder(image, pad), top, left, size + 2 * pad, k, fx, fy);
      Tensor in_crop = m.with_encoder_features(Tensor(), photo, c.means, pad);
      Blobs all = crop_blobs(b, Tensor(), 0, 0, side, k, fx, fy, 0.f, nullptr, id, &whole_ids);
      REQUIRE(all.size() == b.size());
      Tensor whole = GsModel::pad_for_encoder(crop_square(image, 0, 0, side, k, fx, fy), pad);
      Tensor in_whole = m.with_encoder_features(Tensor(), whole, all.means, pad);
      REQUIRE(in_crop.shape() == Shape({c.size(), cfg.photo_encoder}));
      // Row i of the crop is blob crop_ids[i]; row j of the whole image is blob whole_ids[j].
      auto ci = crop_ids.to_vector(), wi = whole_ids.to_vector(), cm = c.means.to_vector();
      std::vector<int64_t> where(b.size()), whole_rows;
      for (size_t j = 0; j < wi.size(); ++j) where[(size_t)wi[j]] = (int64_t)j;
      int64_t in_margin = 0;
      for (size_t i = 0; i < ci.size(); ++i) {
        whole_rows.push_back(where[(size_t)ci[i]]);
        if (cm[2 * i] < 0.f || cm[2 * i + 1] < 0.f || cm[2 * i] >= size || cm[2 * i + 1] >= size) in_margin++;
      }
      REQUIRE(c.size() > 40);
      REQUIRE(in_margin > 5);
      Tensor e = gather_rows(in_whole, whole_rows);
      CHECK(max(abs(e).flatten(), 0).item() > 1e-2f);  // the features are not nothing
      CHECK_MESSAGE(max_abs_diff(in_crop, e) < 1e-5, "k " << k << " flips " << fx << fy);
    }
  // The features are learned with the deblurrer: the gradient reaches every encoder weight.
  Blobs c = crop_blobs(b, Tensor(), top, left, size, 1, true, false, margin, nullptr);
  Tensor photo = crop_square(GsModel::pad_for_encoder(image, pad), top, left, size + 2 * pad, 1, true, false);
  Tensor fixed = rand({c.size(), 2});
  Tensor extra = m.with_encoder_features(fixed, photo, c.means, pad);
  REQUIRE(extra.shape() == Shape({c.size(), 2 + cfg.photo_encoder}));
  CHECK(max_abs_diff(slice(extra, 1, 0, 2), fixed) == 0.0);  // the fixed features first, as they were
  sum(square(extra)).backward();
  for (auto& [name_, t] : m.encoder->named_parameters()) {
    const std::string& name = name_;  // captured by doctest's message lambda
    REQUIRE_MESSAGE(t.grad().defined(), name);
    CHECK_MESSAGE(max(abs(t.grad()).flatten(), 0).item() > 0.f, name);
  }
  CHECK_THROWS(m.with_encoder_features(Tensor(), slice(photo, 1, 0, 30), c.means, pad));  // too small for its padding
}

TEST_CASE("blob deblurrer: identity at initialisation, Eq. 5-8 updates, gradients reach its weights") {
  GsConfig cfg;
  cfg.dim = 32;
  cfg.heads = 2;
  REQUIRE_FALSE(cfg.color_change);  // the paper's head by default (the colour change has its own case below)
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
  for (auto& [name_, t] : fresh.named_parameters()) {
    const std::string& name = name_;  // captured by doctest's message lambda
    REQUIRE_MESSAGE(t.grad().defined(), name);
    if (name == "head.weight") {
      auto g = t.grad().to_vector();  // rows: dtheta, ds1, ds2, do
      double row1 = 0;
      for (int64_t c = 0; c < cfg.dim; ++c) row1 += std::fabs(g[cfg.dim + c]);
      CHECK(row1 > 0);
    }
  }
}

// A deblurrer small enough for the tests (dim 32, 2 heads) with the given [ours] options.
static GsConfig small_deblurrer(bool color_change, bool context) {
  GsConfig cfg;
  cfg.dim = 32;
  cfg.heads = 2;
  cfg.color_change = color_change;
  cfg.context = context;
  return cfg;
}

// softplus never stops learning where ReLU(ds) does; a shrunk blob keeps its light (colour x s1 s2 / (s1' s2')).
TEST_CASE("blob deblurrer with a softplus shrink that keeps the light: start, Eq. 7, colours, gradients") {
  GsConfig cfg = small_deblurrer(true, false);
  cfg.shrink = "softplus";
  cfg.keep_light = true;
  manual_seed(10);
  BlobDeblurrer d(cfg);
  Blobs b = random_blobs(40, 30, 30, 28, 0.5f, 2.f);
  Blobs out = d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30);
  CHECK(max_abs_diff(out.scales, b.scales) < 1.001e-3);  // softplus(bias) = 1e-3 px at the start
  CHECK(max_abs_diff(out.scales, b.scales) > 0.999e-3);
  CHECK(rel_err(rasterize(out, 30, 30), rasterize(b, 30, 30)) < 2e-3);  // and the light is kept: nearly the identity
  // A known head output: ds = softplus(0.5) on both axes, dc = (0.1, -0.2, 0.3).
  for (auto& [name, t] : d.named_parameters())
    if (name == "head.bias") t.copy_(from_vector({0.f, 0.5f, 0.5f, 0.f, 0.1f, -0.2f, 0.3f}, {7}));
  Blobs e = d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30);
  const float ds = std::log1p(std::exp(0.5f)), dc[3] = {0.1f, -0.2f, 0.3f};
  auto s = b.scales.to_vector(), s2 = e.scales.to_vector(), c = b.colors.to_vector(), c2 = e.colors.to_vector();
  for (size_t i = 0; i < s.size(); ++i) CHECK(s2[i] == doctest::Approx(std::max(s[i] - ds, 0.1f)));
  for (size_t i = 0; i < c.size(); ++i) {
    const size_t blob = i / 3;
    const float light = s[2 * blob] * s[2 * blob + 1] / (s2[2 * blob] * s2[2 * blob + 1]);
    CHECK(c2[i] == doctest::Approx((c[i] + dc[i % 3]) * light).epsilon(1e-5));
  }
  // Even a head whose shrink is far below zero still has a gradient on it (ReLU's would be exactly zero).
  for (auto& [name, t] : d.named_parameters())
    if (name == "head.bias") t.copy_(from_vector({0.f, -3.f, -3.f, 0.f, 0.f, 0.f, 0.f}, {7}));
  mse_loss(rasterize(d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30), 30, 30), rasterize(b, 30, 30) * 1.2f).backward();
  for (auto& [name, t] : d.named_parameters())
    if (name == "head.bias") {
      auto g = t.grad().to_vector();
      CHECK(std::fabs(g[1]) > 0);
      CHECK(std::fabs(g[2]) > 0);
    }
  CHECK(GsConfig::from_json({{"dim", 32}, {"heads", 2}}).shrink == "relu");  // configs before the option
  CHECK_FALSE(GsConfig::from_json({{"dim", 32}, {"heads", 2}}).keep_light);
  CHECK(GsConfig::from_json(cfg.to_json()).keep_light);
  CHECK(GsConfig::from_json(cfg.to_json()).shrink == "softplus");
  CHECK_THROWS(GsConfig::from_json({{"dim", 32}, {"heads", 2}, {"shrink", "tanh"}}));
}

TEST_CASE("blob deblurrer with a colour change: identity at initialisation, colours move, gradients reach dc") {
  GsConfig cfg = small_deblurrer(true, false);
  manual_seed(8);
  BlobDeblurrer d(cfg);
  Blobs b = random_blobs(40, 30, 30, 27, 0.5f, 2.f);
  Blobs out = d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30);
  CHECK(max_abs_diff(out.colors, b.colors) == 0.0);
  for (auto& [name, t] : d.named_parameters())
    if (name == "head.bias") t.copy_(from_vector({0.f, 0.f, 0.f, 0.f, 0.1f, -0.2f, 0.3f}, {7}));
  Blobs e = d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30);
  auto c = b.colors.to_vector(), c2 = e.colors.to_vector();
  const float dc[3] = {0.1f, -0.2f, 0.3f};
  for (size_t i = 0; i < c.size(); ++i) CHECK(c2[i] == doctest::Approx(c[i] + dc[i % 3]));
  manual_seed(9);
  BlobDeblurrer fresh(cfg);
  mse_loss(rasterize(fresh.forward(b, Tensor(), Tensor(), Tensor(), 30, 30), 30, 30), rasterize(b, 30, 30) * 1.2f).backward();
  for (auto& [name, t] : fresh.named_parameters())
    if (name == "head.weight") {
      auto g = t.grad().to_vector();  // rows 4..6: dc
      double colour_rows = 0;
      for (int64_t k = 4 * cfg.dim; k < 7 * cfg.dim; ++k) colour_rows += std::fabs(g[k]);
      CHECK(colour_rows > 0);
    }
  // a checkpoint's config without the key (written before the option) reads as the paper's head
  CHECK_FALSE(GsConfig::from_json({{"dim", 32}, {"heads", 2}}).color_change);
  CHECK(GsConfig::from_json(cfg.to_json()).color_change);
  std::map<std::string, Tensor> sd;
  for (auto& [name, t] : fresh.named_parameters()) sd["deblurrer." + name] = t;
  sd["initializer.enc1.0.weight"] = zeros({32, 4, 3, 3});
  CHECK(gs_config_from_state_dict(sd)["color_change"].get<bool>());  // `convert` reads it off the head's shape
}

// blob_context against a direct computation: blobs centred on pixel centres (so bilinear sampling reads one
// pixel), the Gaussian blur as a plain 2-D sum with replicated edges.
TEST_CASE("blob_context: the render minus its Gaussian blurs (octaves, half octaves), at each blob centre") {
  const int64_t h = 20, w = 26;
  Blobs b = random_blobs(30, (float)h, (float)w, 31, 0.6f, 2.5f);
  auto m = b.means.to_vector();
  for (float& v : m) v = std::floor(v) + 0.5f;
  b.means = from_vector(m, {30, 2});
  auto img = rasterize(b, h, w).to_vector();
  auto px = [&](int c, int64_t y, int64_t x) {
    y = std::clamp<int64_t>(y, 0, h - 1);
    x = std::clamp<int64_t>(x, 0, w - 1);
    return (double)img[(size_t)((c * h + y) * w + x)];
  };
  const std::vector<float> half = GsConfig::half_octave_scales(8);
  REQUIRE(half.size() == 8);
  CHECK(half[0] == doctest::Approx(std::sqrt(0.5)));
  CHECK(half[7] == doctest::Approx(8.0));
  for (const std::vector<float>& sigmas : {std::vector<float>{1.f, 2.f, 4.f}, half}) {
    const int64_t ns = (int64_t)sigmas.size(), cols = 3 * ns;
    Tensor ctx = blob_context(b, h, w, sigmas);
    REQUIRE(ctx.shape() == std::vector<int64_t>{30, cols});
    auto got = ctx.to_vector();
    double largest = 0;
    for (int64_t i = 0; i < 30; ++i) {
      const int64_t x = (int64_t)m[2 * i], y = (int64_t)m[2 * i + 1];
      for (int64_t k = 0; k < ns; ++k) {
        const double sigma = sigmas[(size_t)k];
        const int r = (int)std::ceil(3 * sigma);
        for (int c = 0; c < 3; ++c) {
          double sum = 0, norm = 0;
          for (int dy = -r; dy <= r; ++dy)
            for (int dx = -r; dx <= r; ++dx) {
              const double g = std::exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
              sum += g * px(c, y + dy, x + dx);
              norm += g;
            }
          const double expect = 4 * (px(c, y, x) - sum / norm);
          largest = std::max(largest, std::fabs(expect));
          CHECK(got[(size_t)(i * cols + k * 3 + c)] == doctest::Approx(expect).epsilon(1e-4).scale(1));
        }
      }
    }
    CHECK(largest > 0.05);  // the blobs do make contrast to measure
  }
}

TEST_CASE("blob deblurrer with local-contrast tokens: identity at start, the context reaches the weights, crops carry it") {
  GsConfig cfg = small_deblurrer(true, true);
  manual_seed(11);
  BlobDeblurrer d(cfg);
  Blobs b = random_blobs(50, 30, 30, 32, 0.5f, 2.f);
  Blobs out = d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30);
  CHECK(max_abs_diff(out.colors, b.colors) == 0.0);
  // the context's columns of the embedding get gradients (once the head is not zero), and a given context is used
  // instead of the blobs' own
  for (auto& [name, t] : d.named_parameters())
    if (name == "head.weight") t.copy_(uniform_input({cfg.head_outputs(), cfg.dim}, -0.2f, 0.2f, 33));
  mse_loss(rasterize(d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30), 30, 30), rasterize(b, 30, 30) * 1.2f).backward();
  for (auto& [name, t] : d.named_parameters())
    if (name == "embed.weight") {
      REQUIRE(t.size(1) == cfg.token_features());
      auto g = t.grad().to_vector();
      double context_columns = 0;
      const int64_t cols = cfg.token_features(), first = cols - cfg.context_features();  // context comes last
      for (int64_t r = 0; r < cfg.dim; ++r)
        for (int64_t c = first; c < cols; ++c) context_columns += std::fabs(g[(size_t)(r * cols + c)]);
      CHECK(context_columns > 0);
    }
  Tensor own = blob_context(b, 30, 30, cfg.context_scales);
  CHECK(max_abs_diff(d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30, own).colors,
                     d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30).colors) == 0.0);
  CHECK(max_abs_diff(d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30, own * 3.f).colors,
                     d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30).colors) > 1e-4);
  CHECK_THROWS(d.forward(b, Tensor(), Tensor(), Tensor(), 30, 30, zeros({49, 9})));
  // crop_blobs carries each kept blob's context row (the same rows as its d2)
  Tensor d2 = from_vector([] { std::vector<float> v(50); for (int i = 0; i < 50; ++i) v[(size_t)i] = (float)i; return v; }(), {50});
  Tensor d2c, ctxc;
  crop_blobs(b, d2, 4, 6, 16, 1, true, false, 2.f, &d2c, own, &ctxc);
  REQUIRE(ctxc.size(0) == d2c.size(0));
  REQUIRE(d2c.size(0) > 3);
  auto rows = d2c.to_vector();
  std::vector<int64_t> index;
  for (float r : rows) index.push_back((int64_t)r);
  CHECK(max_abs_diff(ctxc, gather_rows(own, index)) == 0.0);
  // config round trip; old configs read as the paper's tokens; `convert` reads it off the embedding's width
  CHECK_FALSE(GsConfig::from_json({{"dim", 32}, {"heads", 2}}).context);
  CHECK(GsConfig::from_json(cfg.to_json()).context);
  std::map<std::string, Tensor> sd;
  for (auto& [name, t] : d.named_parameters()) sd["deblurrer." + name] = t;
  sd["initializer.enc1.0.weight"] = zeros({32, 4, 3, 3});
  auto read = gs_config_from_state_dict(sd);
  CHECK(read["context"].get<bool>());
  CHECK(read["color_change"].get<bool>());
  CHECK(read["context_scales"].get<std::vector<float>>() == std::vector<float>{1.f, 2.f, 4.f});
  // half-octave bands: 24 context features, round trip and `convert`, and a deblurrer that takes them
  GsConfig fine = cfg;
  fine.context_scales = GsConfig::half_octave_scales(8);
  CHECK(fine.token_features() == 31 + 24);
  CHECK(GsConfig::from_json(fine.to_json()).context_scales == fine.context_scales);
  CHECK(GsConfig::from_json({{"context", true}}).context_scales == std::vector<float>{1.f, 2.f, 4.f});  // old configs
  CHECK_THROWS(GsConfig::from_json({{"context_scales", {1.0, 0.0}}}));
  BlobDeblurrer df(fine);
  CHECK(df.forward(b, Tensor(), Tensor(), Tensor(), 30, 30).colors.shape() == b.colors.shape());
  CHECK_THROWS(df.forward(b, Tensor(), Tensor(), Tensor(), 30, 30, own));  // 9 features where 24 are due
  std::map<std::string, Tensor> sdf;
  for (auto& [name, t] : df.named_parameters()) sdf["deblurrer." + name] = t;
  sdf["initializer.enc1.0.weight"] = zeros({32, 4, 3, 3});
  CHECK(gs_config_from_state_dict(sdf)["context_scales"].get<std::vector<float>>() == fine.context_scales);
}

// The local contrast of the input photo rather than of its fit (GsConfig::context_source): the fit is band-limited
// by its 2x2-px blobs, the photo is not, so only the photo tells a sharp image from a slightly blurred one.
TEST_CASE("local contrast of the input image: the same bands taken of the photo, where a sharp photo shows more") {
  const int64_t h = 24, w = 28;
  Blobs b = random_blobs(40, (float)h, (float)w, 41, 0.6f, 2.5f);
  const std::vector<float> bands = GsConfig::half_octave_scales(8);
  // blob_context is local_contrast of the render
  CHECK(max_abs_diff(blob_context(b, h, w, bands), local_contrast(rasterize(b, h, w), b.means, bands)) == 0.0);
  // a sharp photo (a 2-px checker of random colours) and the same photo blurred by 1 px: the finest band sees it
  Tensor sharp = upsample_nearest(uniform_input({1, 3, h / 2, w / 2}, 0.f, 1.f, 42), h, w)[0];
  std::vector<float> taps = gaussian_taps(1.f, 3);
  Tensor soft = separable_filter(pad2d(unsqueeze(sharp, 0), 3, 3, 3, 3, PadMode::Replicate), taps, taps)[0];
  auto finest = [&](const Tensor& image) { return mean(abs(slice(local_contrast(image, b.means, bands), 1, 0, 3))).item(); };
  MESSAGE("finest band |contrast|: sharp " << finest(sharp) << ", blurred by 1 px " << finest(soft));
  CHECK(finest(sharp) > 2.f * finest(soft));
  CHECK_THROWS(local_contrast(unsqueeze(sharp, 0), b.means, bands));  // [3, H, W] only
  // the model's features take the photo with context_source = image, the render without
  GsConfig cfg = small_deblurrer(true, true);
  cfg.context_scales = bands;
  GsModel of_render(cfg);
  cfg.context_source = "image";
  GsModel of_image(cfg);
  CHECK(max_abs_diff(of_image.blob_features(b, sharp), local_contrast(sharp, b.means, bands)) == 0.0);
  CHECK(max_abs_diff(of_render.blob_features(b, sharp), blob_context(b, h, w, bands)) == 0.0);
  cfg.context_source = "both";  // the photo's bands, then the render's
  GsModel of_both(cfg);
  CHECK(cfg.context_features() == 48);
  CHECK(max_abs_diff(of_both.blob_features(b, sharp),
                     concat({local_contrast(sharp, b.means, bands), blob_context(b, h, w, bands)}, 1)) == 0.0);
  CHECK(GsConfig::from_json(cfg.to_json()).context_source == "both");
  cfg.context_source = "image";
  // the deblurrer cannot make up the photo's contrast from the blobs
  CHECK_THROWS(of_image.deblurrer->forward(b, Tensor(), Tensor(), Tensor(), h, w));
  CHECK(of_image.deblurrer->forward(b, Tensor(), Tensor(), Tensor(), h, w, of_image.blob_features(b, sharp))
            .colors.shape() == b.colors.shape());
  // config: round trip, older configs read "render", anything else refused
  CHECK(GsConfig::from_json(cfg.to_json()).context_source == "image");
  CHECK(GsConfig::from_json({{"context", true}}).context_source == "render");
  CHECK_THROWS(GsConfig::from_json({{"context_source", "fit"}}));
}

TEST_CASE("the defocus token: the estimator's CoC at each blob centre, a trainable estimator, convert finds it") {
  GsConfig cfg = small_deblurrer(true, true);
  cfg.defocus = true;
  cfg.defocus_width = 4;
  manual_seed(12);
  GsModel m(cfg);
  REQUIRE(m.estimator);
  CHECK(cfg.token_features() == 31 + 9 + 1);
  // A texture of 4 px blocks, its right half blurred (two 5 x 5 boxes: CoC ~3 px), the true map 0 | 3 px.
  Tensor sharp = upsample_nearest(uniform_input({1, 3, 16, 16}, 0.f, 1.f, 13), 64, 64), blurred = sharp;
  for (int k = 0; k < 2; ++k) blurred = avg_pool2d(pad2d(blurred, 2, 2, 2, 2, PadMode::Replicate), 5, 1);
  Tensor image = concat({slice(sharp, 3, 0, 32), slice(blurred, 3, 32, 64)}, 3);
  Tensor truth = concat({zeros({1, 1, 64, 32}), full({1, 1, 64, 32}, 3.f)}, 3);
  Adam opt(m.estimator->named_parameters(), AdamOptions{3e-3f});
  float first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    Tensor l = mean(abs(log(m.estimator->forward(image) + 1.f) - log(truth + 1.f)));
    l.backward();
    opt.step();
    (step == 0 ? first : last) = l.item();
  }
  Tensor est = m.estimator->forward(image);
  const float left = mean(slice(est, 3, 4, 28)).item(), right = mean(slice(est, 3, 36, 60)).item();
  MESSAGE("defocus estimator, 150 steps on one image: loss " << first << " -> " << last << ", mean CoC left (sharp) "
                                                             << left << " px, right (3 px) " << right << " px");
  CHECK(last < 0.5f * first);
  CHECK(right - left > 1.5f);
  // deblur --save-map's map is the estimator's (a gs without an estimator has none)
  CHECK(max_abs_diff(m.predict_defocus(image), est) == 0.0);
  GsConfig plain = cfg;
  plain.defocus = false;
  CHECK_FALSE(GsModel(plain).predict_defocus(image).defined());
  // blob_features: local contrast, then log(1 + CoC) at each centre
  Blobs b = analytic_init(image[0], 2).blobs();
  Tensor f = m.blob_features(b, image[0]);
  REQUIRE(f.shape() == Shape({b.size(), 10}));
  CHECK(max_abs_diff(slice(f, 1, 0, 9), blob_context(b, 64, 64, cfg.context_scales)) < 1e-6);
  auto coc = f.to_vector(), means = b.means.to_vector();
  double on_left = 0, on_right = 0;
  int64_t n_left = 0, n_right = 0;
  for (int64_t i = 0; i < b.size(); ++i) {
    const float x = means[(size_t)(2 * i)], c = std::expm1(coc[(size_t)(i * 10 + 9)]);
    if (x < 28) on_left += c, n_left++;
    if (x > 36) on_right += c, n_right++;
  }
  CHECK(on_right / (double)n_right - on_left / (double)n_left > 1.5);
  // the deblurrer takes them, and cannot make up the defocus column itself
  Blobs out = m.deblurrer->forward(b, Tensor(), Tensor(), Tensor(), 64, 64, f);
  CHECK(out.size() == b.size());
  CHECK_THROWS_WITH(m.deblurrer->forward(b, Tensor(), Tensor(), Tensor(), 64, 64),
                    doctest::Contains("the defocus feature needs the image"));
  // config round trip (old configs: no estimator) and `convert` reads it off the state dict
  CHECK_FALSE(GsConfig::from_json({{"dim", 32}, {"heads", 2}}).defocus);
  CHECK(GsConfig::from_json(cfg.to_json()).defocus);
  std::map<std::string, Tensor> sd;
  for (auto& [name, t] : m.state_dict()) sd[name] = t;
  auto read = gs_config_from_state_dict(sd);
  CHECK(read["defocus"].get<bool>());
  CHECK(read["defocus_width"].get<int64_t>() == 4);
  CHECK(read["context"].get<bool>());
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
    if (name == "head.weight") t.copy_(uniform_input({cfg.head_outputs(), cfg.dim}, -0.2f, 0.2f, 25));
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
  for (auto& p : init.named_parameters()) CHECK_MESSAGE(p.second.grad().defined(), p.first);
  CHECK_THROWS_WITH_AS(init.forward(img, Tensor()), doctest::Contains("configured with depth"), Error);
}

TEST_CASE("fitting reproduces an image, L_reg follows Eq. 14, blob files round trip") {
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

// The blob lattice's ripple in an image [3, H, W]: with one blob per 2x2 cell, a dot lattice shows at half a cycle
// per pixel along x, y or both. Measured as the energy at those frequencies and the bins next to them, through a
// Hann window so that the image's edges do not leak into them, and given as the amplitude of the sinusoidal ripple
// with that energy (a value range of 1 = 255 grey levels).
double lattice_ripple(const Tensor& img) {
  const int64_t h = img.size(1), w = img.size(2);
  auto v = img.to_vector();
  const double pi = 3.14159265358979;
  double energy = 0;
  std::vector<double> windowed(h * w);
  for (int64_t c = 0; c < 3; ++c) {
    double mean = 0;
    for (int64_t i = 0; i < h * w; ++i) mean += v[c * h * w + i] / (double)(h * w);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        windowed[y * w + x] = (v[(c * h + y) * w + x] - mean) * (0.5 - 0.5 * std::cos(2 * pi * y / (h - 1))) *
                              (0.5 - 0.5 * std::cos(2 * pi * x / (w - 1)));
    for (auto [fy0, fx0] : {std::pair<int64_t, int64_t>{h / 2, 0}, {0, w / 2}, {h / 2, w / 2}})
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          double re = 0, im = 0;
          for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
              double a = -2 * pi * ((double)(fy0 + dy) * y / h + (double)(fx0 + dx) * x / w);
              re += windowed[y * w + x] * std::cos(a);
              im += windowed[y * w + x] * std::sin(a);
            }
          energy += (re * re + im * im) / (double)(h * w);
        }
  }
  // a ripple A cos(pi x) in one channel puts (A h w / 4)^2 / (h w) into its bin (the window's mean is 1/4)
  return std::sqrt(16 * energy / (3.0 * h * w));
}

// A small w/o-depth gs with the default tokens (colour change, local contrast) whose deblurrer really changes the
// blobs: a random head, larger than training leaves it.
std::unique_ptr<GsModel> active_small_gs(uint64_t seed, GsConfig& cfg) {
  cfg.init_width = 8;
  cfg.dim = 16;
  cfg.heads = 2;
  cfg.use_depth = false;
  cfg.color_change = true;
  cfg.context = true;
  manual_seed(seed);
  auto m = std::make_unique<GsModel>(cfg);
  for (auto& [name, t] : m->deblurrer->named_parameters())
    if (name == "head.weight" || name == "head.bias") t.copy_(uniform_input(t.shape(), -0.05f, 0.05f, seed + 31));
  return m;
}

TEST_CASE("gs_deblur on smooth out-of-focus content leaves no dot lattice at the blob grid") {
  // Smooth content (slow sinusoids, no energy near half a cycle per pixel) through a deblurrer that really
  // changes the blobs: a random head, larger than training leaves it (it changes the image by ~0.14 rms), with
  // the default tokens (colour change, local contrast). A dot lattice at the blob grid would show as a ripple at
  // half a cycle per pixel; the tolerance is half a grey level of an 8-bit output.
  GsConfig cfg;
  std::unique_ptr<GsModel> model = active_small_gs(9, cfg);
  GsModel& m = *model;
  const int64_t h = 48, w = 56;
  std::vector<float> px(3 * h * w);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        px[(c * h + y) * w + x] = 0.5f + 0.25f * std::sin(0.11f * x + 0.07f * y + c) + 0.1f * std::cos(0.05f * x - 0.13f * y);
  Tensor img = from_vector(px, {3, h, w});
  const double tolerance = 0.5 / 255;
  GsResult r = gs_deblur(m, img, Tensor(), 60);
  double change = std::sqrt(mean(square(r.sharp - img)).item());
  double before = lattice_ripple(img), after = lattice_ripple(r.sharp);
  MESSAGE("lattice ripple (grey levels): input " << before * 255 << ", output " << after * 255 << "; the deblurrer changed the image by "
          << change << " rms");
  CHECK(change > 0.05);  // the deblurrer is active
  CHECK(after <= before + tolerance);
  // The measure sees a lattice where there is one: the same fit with every blob shrunk to 0.5 px, each keeping
  // its light (colour x s1 s2 / 0.25), renders dots.
  Blobs dots = r.fitted.blobs();
  Tensor area = slice(dots.scales, 1, 0, 1) * slice(dots.scales, 1, 1, 2);  // [N, 1]
  dots.colors = dots.colors * (area / 0.25f);
  dots.scales = full(dots.scales.shape(), 0.5f);
  double dotted = lattice_ripple(clamp(rasterize(dots, h, w), 0.f, 1.f));
  MESSAGE("the fit's blobs shrunk to 0.5 px: ripple " << dotted * 255 << " grey levels");
  CHECK(dotted > before + 10 * tolerance);
}

TEST_CASE("gs_deblur: a photo darker than the exposure floor is deblurred brightened and darkened back") {
  GsConfig cfg;
  std::unique_ptr<GsModel> model = active_small_gs(10, cfg);  // an active deblurrer, not the identity
  GsModel& m = *model;
  const int64_t h = 32, w = 40;
  Tensor img = clamp(rasterize(random_blobs(40, h, w, 33, 1.f, 4.f), h, w) * 0.5f + 0.35f, 0.f, 1.f);
  CHECK(exposure_gain(img, cfg.exposure_floor) == 1.f);  // the synthetic sets' exposures: left as they are
  Tensor dark = img * 0.05f;  // mean level ~0.025, as the linear Pixel 4 photos
  const float gain = exposure_gain(dark, cfg.exposure_floor);
  CHECK(gain == doctest::Approx(cfg.exposure_floor / mean(dark).item()).epsilon(1e-5));
  GsResult r = gs_deblur(m, dark, Tensor(), 30);
  CHECK(r.exposure_gain == gain);
  CHECK(max_abs_diff(r.sharp, dark) > 1e-4);  // the deblurrer changed the dark photo
  // Equivariant: the same as deblurring the photo brightened by hand (floor off), darkened back.
  m.cfg.exposure_floor = 0.f;
  GsResult bright = gs_deblur(m, dark * gain, Tensor(), 30);
  CHECK(bright.exposure_gain == 1.f);
  CHECK(max_abs_diff(r.sharp, bright.sharp * (1.f / gain)) < 1e-6);
  // A lamp in the dark photo (clipped when brightened) comes back as bright as it was: the change is added to the
  // photo, not to the clipped render.
  m.cfg.exposure_floor = cfg.exposure_floor;
  std::vector<float> px = dark.to_vector();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 14; y < 18; ++y)
      for (int64_t x = 18; x < 22; ++x) px[(c * h + y) * w + x] = 1.f;
  Tensor lamp = from_vector(px, {3, h, w});
  GsResult lit = gs_deblur(m, lamp, Tensor(), 30);
  CHECK(lit.exposure_gain > 5.f);
  float lamp_min = 1.f;
  std::vector<float> out = lit.sharp.to_vector();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 15; y < 17; ++y)
      for (int64_t x = 19; x < 21; ++x) lamp_min = std::min(lamp_min, out[(c * h + y) * w + x]);
  CHECK(lamp_min > 0.9f);  // darkening the clipped render back would give ~1 / gain
}

TEST_CASE("gs_deblur: an untrained model returns the input (residual output) or the fitted render (paper)") {
  GsConfig cfg;
  cfg.init_width = 8;
  cfg.dim = 16;
  cfg.heads = 2;
  cfg.use_depth = false;
  cfg.exposure_floor = 0.f;  // the output is compared with the fit's render: no brightening in between
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
