// Data: image files, dataset layouts and their error messages, the training loader, the metrics (against
// scikit-image) and the synthetic generator (measured on its output).
#include <stb/stb_image_write.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/synth.h"
#include "engine/fileio.h"
#include "engine/safetensors.h"
#include "ops/shape.h"
#include "tests/harness.h"
#include "data/metrics.h"

using namespace rf;
using namespace rft;
namespace fs = std::filesystem;

namespace {

// A small random image, written as PNG at `rel` (folders created).
Tensor put_image(const TempDir& d, const std::string& rel, int64_t h = 12, int64_t w = 10, int channels = 3,
                 uint64_t seed = 1, int bits = 8) {
  fs::create_directories(fs::path(d / rel).parent_path());
  Tensor img = quantize(uniform_input({channels, h, w}, 0, 1, seed), bits);
  write_png(d / rel, img, bits);
  return img;
}

}  // namespace

TEST_SUITE("data") {

TEST_CASE("PNG 8/16-bit round trips, gray and RGBA become RGB, JPEG reads") {
  TempDir d;
  Tensor a = put_image(d, "a8.png", 9, 7, 3, 1, 8);
  CHECK(read_image(d / "a8.png").to_vector() == a.to_vector());
  Tensor b = put_image(d, "b16.png", 9, 7, 3, 2, 16);
  ImageInfo info = image_info(d / "b16.png");
  CHECK(info.bits == 16);
  CHECK(info.width == 7);
  CHECK(max_abs_diff(read_image(d / "b16.png"), b) < 1e-7);
  Tensor g = put_image(d, "g16.png", 5, 6, 1, 3, 16);
  Tensor g3 = read_image(d / "g16.png");
  CHECK(g3.shape() == Shape{3, 5, 6});
  CHECK(max_abs_diff(g3[2].reshape({1, 5, 6}), g) < 1e-7);
  CHECK(max_abs_diff(read_image(d / "g16.png", 1), g) < 1e-7);
  unsigned char rgba[2 * 2 * 4] = {255, 0, 0, 10, 0, 255, 0, 20, 0, 0, 255, 30, 9, 9, 9, 40};
  stbi_write_png((d / "rgba.png").c_str(), 2, 2, 4, rgba, 8);
  auto v = read_image(d / "rgba.png").to_vector();  // alpha dropped
  CHECK(v[0] == 1.f);
  CHECK(v[4 + 1] == 1.f);
  CHECK(v[8 + 2] == 1.f);
  std::vector<unsigned char> flat(16 * 16 * 3, 128);
  stbi_write_jpg((d / "x.jpg").c_str(), 16, 16, 3, flat.data(), 95);
  CHECK(std::fabs(mean(read_image(d / "x.jpg")).item() - 128.f / 255.f) < 2.f / 255.f);
  CHECK_THROWS_WITH_AS(read_image(d / "rgba.png", 1), doctest::Contains("expected a single-channel map"), Error);
}

TEST_CASE("unreadable and truncated images: one sentence naming the file") {
  TempDir d;
  put_image(d, "ok.png", 32, 32);
  std::string bytes = read_file(d / "ok.png");
  write_file_atomic(d / "trunc.png", bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_WITH_AS(read_image(d / "trunc.png"), doctest::Contains("trunc.png: a damaged or truncated PNG file"), Error);
  write_file_atomic(d / "text.png", "hello, not an image");
  CHECK_THROWS_WITH_AS(read_image(d / "text.png"), doctest::Contains("text.png: not an image refocus can read"), Error);
  CHECK_THROWS_WITH_AS(read_image(d / "none.png"), doctest::Contains("none.png: no such file"), Error);
}

TEST_CASE("DPDD pairs by sorted order (names differ), with splits") {
  TempDir d;
  put_image(d, "test_c/source/1P0A0917.png", 12, 10, 3, 1);
  put_image(d, "test_c/target/1P0A0916.png", 12, 10, 3, 2);
  put_image(d, "test_c/source/1P0A0933.png", 12, 10, 3, 3);
  put_image(d, "test_c/target/1P0A0932.png", 12, 10, 3, 4);
  put_image(d, "train_c/source/a.png", 12, 10, 3, 5);
  put_image(d, "train_c/target/b.png", 12, 10, 3, 6);
  Dataset ds = open_dataset(d.path.string(), "test");
  CHECK(ds.layout == "dpdd");
  REQUIRE(ds.samples.size() == 2);
  CHECK(fs::path(ds.samples[0].input).filename() == "1P0A0917.png");
  CHECK(fs::path(ds.samples[0].target).filename() == "1P0A0916.png");
  CHECK(fs::path(ds.samples[1].target).filename() == "1P0A0932.png");
  CHECK(open_dataset(d.path.string(), "train").samples.size() == 1);
  CHECK(open_dataset(d / "test_c", "train").samples.size() == 2);  // a split folder given directly
  put_image(d, "test_c/source/extra.png");
  CHECK_THROWS_WITH_AS(open_dataset(d.path.string(), "test"), doctest::Contains("holds 3 images but"), Error);
}

TEST_CASE("LFDOF, RealDOF, RTF, DED, SDD, blur/sharp pairs and CUHK layouts pair correctly") {
  TempDir d;
  put_image(d, "lfdof/test_data/input/IMG_1/IMG_1_a.png");
  put_image(d, "lfdof/test_data/input/IMG_1/IMG_1_b.png");
  put_image(d, "lfdof/test_data/input/IMG_2/IMG_2_a.png");
  put_image(d, "lfdof/test_data/ground_truth/IMG_1.png");
  put_image(d, "lfdof/test_data/ground_truth/IMG_2.png");
  Dataset lf = open_dataset(d / "lfdof");
  CHECK(lf.layout == "lfdof");
  REQUIRE(lf.samples.size() == 3);
  CHECK(fs::path(lf.samples[1].target).filename() == "IMG_1.png");
  CHECK(fs::path(lf.samples[2].target).filename() == "IMG_2.png");

  put_image(d, "realdof/source/01.png");
  put_image(d, "realdof/target/01.png");
  CHECK(open_dataset(d / "realdof").layout == "realdof");

  put_image(d, "rtf/image/0/image_07.png");
  put_image(d, "rtf/GT/sharp_07.png");
  Dataset rtf = open_dataset(d / "rtf");
  CHECK(rtf.layout == "rtf");
  CHECK(fs::path(rtf.samples[0].target).filename() == "sharp_07.png");

  put_image(d, "ded/image/s1/image_3.png");
  put_image(d, "ded/sharp/s1/12_3.png");
  put_image(d, "ded/filtered/s1/defocus_filterd_3.png", 12, 10, 1, 9, 16);
  Dataset ded = open_dataset(d / "ded");
  CHECK(ded.layout == "ded");
  CHECK(fs::path(ded.samples[0].target).filename() == "12_3.png");
  CHECK(ded.has_defocus());

  put_image(d, "sdd/train_patches/blur/p1.png");
  put_image(d, "sdd/train_patches/gt/p1.png");
  CHECK(open_dataset(d / "sdd", "train").layout == "sdd");

  put_image(d, "pix/blur/001.png", 12, 10, 1);
  put_image(d, "pix/sharp/001.png", 12, 10, 1);
  CHECK(open_dataset(d / "pix").layout == "pairs");

  put_image(d, "cuhk/blur/out_of_focus0001.png");
  put_image(d, "cuhk/mask/out_of_focus0001.png");
  Dataset cu = open_dataset(d / "cuhk");
  CHECK(cu.layout == "cuhk");
  CHECK_FALSE(cu.has_target());
}

TEST_CASE("bad dataset folders: no layout, size mismatch, missing ground truth") {
  TempDir d;
  fs::create_directories(d / "empty/sub");
  CHECK_THROWS_WITH_AS(open_dataset(d / "empty"), doctest::Contains("matches no dataset layout"), Error);
  CHECK_THROWS_WITH_AS(open_dataset(d / "nothere"), doctest::Contains("not a folder"), Error);
  put_image(d, "m/test_c/source/a.png", 12, 10);
  put_image(d, "m/test_c/target/a.png", 12, 11);
  CHECK_THROWS_WITH_AS(open_dataset(d / "m"), doctest::Contains("size mismatch"), Error);
  put_image(d, "p/blur/x.png");
  fs::create_directories(d / "p/sharp");
  CHECK_THROWS_WITH_AS(open_dataset(d / "p"), doctest::Contains("x.png has no ground truth"), Error);
  CHECK_THROWS_WITH_AS(open_dataset(d / "p", "test", "lfdof"), doctest::Contains("needs the folder"), Error);
}

TEST_CASE("training loader: deterministic batches, same transform on input and target, resumable") {
  TempDir d;
  for (int i = 0; i < 5; ++i) {
    Tensor src = quantize(uniform_input({3, 20, 24}, 0, 1, 100 + i), 8);
    fs::create_directories(d / "test_c/source");
    fs::create_directories(d / "test_c/target");
    write_png(d / ("test_c/source/" + std::to_string(i) + ".png"), src);
    write_png(d / ("test_c/target/" + std::to_string(i) + ".png"), 1.f - src);  // target = 1 - input
  }
  Dataset ds = open_dataset(d.path.string(), "test");
  LoaderOptions o;
  o.batch = 3;
  o.crop = 8;
  o.seed = 5;
  o.workers = 3;
  TrainLoader a(ds, o), b(ds, o);
  std::vector<std::vector<float>> first;
  for (int s = 0; s < 6; ++s) {
    Batch x = a.next(), y = b.next();
    CHECK(x.step == s);
    CHECK(x.input.shape() == Shape{3, 3, 8, 8});
    CHECK(x.input.to_vector() == y.input.to_vector());
    CHECK(max_abs_diff(x.target, 1.f - x.input) < 1e-6);  // the pair saw the same crop, flip and rotation
    first.push_back(x.input.to_vector());
  }
  o.seed = 6;
  TrainLoader c(ds, o);
  CHECK(c.next().input.to_vector() != first[0]);
  o.seed = 5;
  TrainLoader r(ds, o);
  r.seek(4);
  CHECK(r.next().input.to_vector() == first[4]);
  o.crop = 64;
  TrainLoader big(ds, o);
  CHECK_THROWS_WITH_AS(big.next(), doctest::Contains("smaller than --crop 64"), Error);
}

TEST_CASE("training loader: sharp pairs show the target as the input, in focus, and leave the other crops as they were") {
  TempDir d;
  Run made = run_program("make_synth --out " + (d / "s") + " --n 6 --size 40x40 --seed 3");
  REQUIRE(made.code == 0);
  Dataset ds = open_dataset(d / "s", "train");
  LoaderOptions o;
  o.batch = 4;
  o.crop = 16;
  o.seed = 9;
  o.with_defocus = true;
  TrainLoader plain(ds, o);
  o.sharp_fraction = 0.3;
  TrainLoader mixed(ds, o);
  int sharp = 0, blurred = 0, with_blur = 0;
  for (int s = 0; s < 10; ++s) {
    Batch p = plain.next(), m = mixed.next();
    CHECK(max_abs_diff(m.target, p.target) == 0);  // the same crops, flips and turns
    for (int64_t b = 0; b < o.batch; ++b) {
      auto at = [b](const Tensor& t) { return slice(t, 0, b, b + 1); };
      const double blur = max_abs_diff(at(m.defocus), zeros(at(m.defocus).shape()));
      if (max_abs_diff(at(m.input), at(m.target)) == 0) {
        ++sharp;
        CHECK(blur == 0);  // in focus everywhere
      } else {
        ++blurred;
        CHECK(max_abs_diff(at(m.input), at(p.input)) == 0);
        CHECK(max_abs_diff(at(m.defocus), at(p.defocus)) == 0);
        with_blur += blur > 0;
      }
    }
  }
  // 40 crops at 0.3: a share near it (the binomial's 99.9% range is 4..22).
  CHECK(sharp >= 4);
  CHECK(sharp <= 22);
  CHECK(sharp + blurred == 40);
  CHECK(with_blur > 0);
}

TEST_CASE("PSNR and both SSIM forms agree with scikit-image") {
  SafeTensors st = load_safetensors(std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/metrics.safetensors");
  for (int k = 0; k < 3; ++k) {
    std::string p = "pair" + std::to_string(k) + ".";
    Tensor ref = st.tensors[p + "ref"], pred = st.tensors[p + "pred"];
    CHECK(psnr(pred, ref) == doctest::Approx(st.tensors[p + "psnr"].item()).epsilon(1e-5));
    CHECK(psnr(pred, ref) == doctest::Approx(st.tensors[p + "psnr_numpy"].item()).epsilon(1e-5));
    CHECK(std::fabs(ssim(pred, ref) - st.tensors[p + "ssim"].item()) < 1e-4);
    CHECK(std::fabs(ssim_gaussian(pred, ref) - st.tensors[p + "ssim_gaussian"].item()) < 1e-4);
    CHECK(mae(pred, ref) == doctest::Approx(st.tensors[p + "mae"].item()).epsilon(1e-5));
  }
}

}  // TEST_SUITE

TEST_SUITE("synth") {

// Blur of each depth plane measured on the output: the Gaussian sigma that best maps target to source in
// the interior of the plane's visible regions.
static std::vector<std::pair<float, float>> measured_blur(const SynthSample& s, const SynthOptions& o) {
  const int64_t h = o.height, w = o.width;
  auto depth = s.depth.to_vector();
  auto src = s.source.to_vector(), tgt = s.target.to_vector();
  for (auto* v : {&src, &tgt})  // the generator blurs in linear light
    for (float& f : *v) f = f <= 0.04045f ? f / 12.92f : std::pow((f + 0.055f) / 1.055f, 2.4f);
  std::vector<float> planes = s.meta["plane_depths_m"].get<std::vector<float>>();
  std::vector<float> cocs = s.meta["plane_coc_px"].get<std::vector<float>>();
  std::vector<std::pair<float, float>> out;  // (true CoC radius, measured sigma)
  const int margin = (int)std::ceil(3.f * o.max_coc_hi * (float)o.width / 1680.f / 2.f) + 1;  // PSF support
  std::vector<std::vector<float>> blurred;
  std::vector<float> sigmas;
  for (float sg = 0.f; sg <= 8.f; sg += 0.25f) {
    std::vector<float> b(3 * h * w);
    for (int c = 0; c < 3; ++c) blur_gaussian(&tgt[c * h * w], &b[c * h * w], h, w, sg);
    blurred.push_back(b);
    sigmas.push_back(sg);
  }
  for (size_t k = 0; k < planes.size(); ++k) {
    std::vector<int64_t> interior;
    for (int64_t y = margin; y < h - margin; ++y)
      for (int64_t x = margin; x < w - margin; ++x) {
        bool same = true;
        for (int64_t dy = -margin; dy <= margin && same; dy += 2)
          for (int64_t dx = -margin; dx <= margin && same; dx += 2) same = depth[(y + dy) * w + x + dx] == planes[k];
        if (same) interior.push_back(y * w + x);
      }
    if (interior.size() < 200) continue;
    double best = 1e30, worst = 0;
    float best_sigma = 0;
    for (size_t j = 0; j < blurred.size(); ++j) {
      double e = 0;
      for (int64_t i : interior)
        for (int c = 0; c < 3; ++c) e += std::pow(blurred[j][c * h * w + i] - src[c * h * w + i], 2);
      worst = std::max(worst, e);
      if (e < best) {
        best = e;
        best_sigma = sigmas[j];
      }
    }
    // A flat or smoothly shaded region looks the same under any blur: nothing to measure there.
    if ((worst - best) / (3.0 * interior.size()) < 5e-5) continue;
    out.push_back({cocs[k], best_sigma});
  }
  return out;
}

TEST_CASE("synthetic blur grows with |1 - z_f/z|, in-focus regions stay sharp") {
  SynthOptions o;
  o.height = o.width = 256;
  o.noise = 0;
  o.gaussian_psf_share = 1.f;  // Gaussian PSFs: the measured sigma should be CoC/2
  o.focus_on_plane_share = 1.f;
  o.max_coc_lo = o.max_coc_hi = 40.f;  // 6 px at this width
  o.min_leaf_radius = 16.f;  // large leaves leave wide regions of one depth to measure in
  o.coverage = 1.5f;
  int checked = 0, in_focus = 0;
  for (int64_t idx = 0; idx < 8; ++idx) {
    SynthSample s = make_synth_sample(o, idx);
    float zf = s.meta["focus_depth_m"].get<float>();
    auto planes = s.meta["plane_depths_m"].get<std::vector<float>>();
    auto cocs = s.meta["plane_coc_px"].get<std::vector<float>>();
    for (size_t k = 0; k < planes.size(); ++k)  // the CoC is proportional to |1 - z_f / z|
      CHECK(cocs[k] == doctest::Approx(s.meta["coc_per_inverse_depth_px"].get<float>() *
                                       std::fabs(1.f - zf / planes[k]) / zf)
                           .epsilon(1e-3));
    for (auto [coc_, sigma_] : measured_blur(s, o)) {
      const float coc = coc_, sigma = sigma_;  // doctest messages capture them: no structured bindings (clang)
      CHECK_MESSAGE(std::fabs(sigma - coc / 2.f) <= 0.26f + 0.05f * coc,
                    "image " << idx << ": CoC " << coc << " px, measured sigma " << sigma);
      if (coc < 0.25f) {
        CHECK(sigma <= 0.25f);
        in_focus++;
      }
      checked++;
    }
  }
  MESSAGE("planes measured: " << checked << ", of which in focus: " << in_focus);
  CHECK(checked >= 6);
  CHECK(in_focus >= 1);
}

TEST_CASE("synthetic disk blur: the measured blur rises with the CoC") {
  SynthOptions o;
  o.height = o.width = 256;
  o.noise = 0;
  o.gaussian_psf_share = 0.f;
  o.max_coc_lo = o.max_coc_hi = 40.f;
  o.min_leaf_radius = 16.f;
  o.coverage = 1.5f;
  SynthSample s = make_synth_sample(o, 7);
  auto m = measured_blur(s, o);
  std::sort(m.begin(), m.end());
  REQUIRE(m.size() >= 3);
  for (size_t i = 1; i < m.size(); ++i)
    if (m[i].first > m[i - 1].first + 0.5f) CHECK(m[i].second >= m[i - 1].second - 0.25f);
  CHECK(m.back().second > m.front().second + 1.f);
}

TEST_CASE("no halo of the wrong layer at depth edges: sharp foreground pixels are untouched") {
  SynthOptions o;
  o.height = o.width = 192;
  o.noise = 0;
  o.focus_on_plane_share = 1.f;
  o.max_coc_lo = o.max_coc_hi = 60.f;
  int64_t edge_pixels = 0;
  for (int64_t idx = 0; idx < 4; ++idx) {
    SynthSample s = make_synth_sample(o, idx);
    const int64_t h = o.height, w = o.width;
    auto depth = s.depth.to_vector(), coc = s.defocus.to_vector();
    auto src = s.source.to_vector(), tgt = s.target.to_vector();
    double worst = 0;
    for (int64_t y = 3; y < h - 3; ++y)
      for (int64_t x = 3; x < w - 3; ++x) {
        int64_t i = y * w + x;
        if (coc[i] > 0.01f) continue;  // in-focus visible surface only
        bool inner_same = true, outer_differs = false;
        for (int64_t dy = -3; dy <= 3; ++dy)
          for (int64_t dx = -3; dx <= 3; ++dx) {
            bool same = depth[(y + dy) * w + x + dx] == depth[i];
            if (std::abs(dy) <= 2 && std::abs(dx) <= 2) inner_same = inner_same && same;
            else outer_differs = outer_differs || !same;
          }
        if (!inner_same || !outer_differs) continue;
        // a fully covered in-focus pixel next to another depth: everything it shows is its own plane's
        // sharp colour, unless a nearer blurred plane spreads over it (which is physical)
        bool nearer_nearby = false;
        for (int64_t dy = -8; dy <= 8; ++dy)
          for (int64_t dx = -8; dx <= 8; ++dx) {
            int64_t yy = std::clamp<int64_t>(y + dy, 0, h - 1), xx = std::clamp<int64_t>(x + dx, 0, w - 1);
            nearer_nearby = nearer_nearby || depth[yy * w + xx] < depth[i];
          }
        if (nearer_nearby) continue;
        for (int c = 0; c < 3; ++c) worst = std::max(worst, (double)std::fabs(src[c * h * w + i] - tgt[c * h * w + i]));
        edge_pixels++;
      }
    CHECK_MESSAGE(worst < 1e-5, "image " << idx << ": an in-focus pixel at a depth edge changed by " << worst);
  }
  MESSAGE("in-focus pixels beside depth edges checked: " << edge_pixels);
  CHECK(edge_pixels > 50);
}

TEST_CASE("synthetic samples are a pure function of (seed, index)") {
  SynthOptions o;
  o.height = o.width = 64;
  o.seed = 3;
  SynthSample a = make_synth_sample(o, 5), b = make_synth_sample(o, 5), c = make_synth_sample(o, 6);
  CHECK(a.source.to_vector() == b.source.to_vector());
  CHECK(a.depth.to_vector() == b.depth.to_vector());
  CHECK(a.source.to_vector() != c.source.to_vector());
  o.misalign = true;
  SynthSample m = make_synth_sample(o, 5);
  CHECK(m.source.to_vector() == make_synth_sample(o, 5).source.to_vector());
  CHECK(m.meta["misalign"]["zoom"].get<float>() != 1.f);
}

TEST_CASE("a misaligned target keeps the sharp image's detail: Lanczos resampling, not bilinear") {
  // The same scene aligned and misaligned (noise off): the moved target must keep nearly all the fine-detail
  // energy of the aligned one (bilinear resampling keeps 40-93% of it on the judging set's targets).
  SynthOptions o;
  o.height = o.width = 96;
  o.seed = 4;
  o.noise = 0.f;
  auto detail = [](const Tensor& t) {  // energy of horizontal and vertical pixel differences
    auto v = t.to_vector();
    const int64_t h = t.size(1), w = t.size(2);
    double e = 0;
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 1; y < h - 1; ++y)
        for (int64_t x = 1; x < w - 1; ++x) {
          const float* p = &v[(c * h + y) * w + x];
          e += (p[1] - p[0]) * (p[1] - p[0]) + (p[w] - p[0]) * (p[w] - p[0]);
        }
    return e;
  };
  double worst = 1e9;
  for (int64_t i = 0; i < 6; ++i) {
    o.misalign = false;
    const double aligned = detail(make_synth_sample(o, i).target);
    o.misalign = true;
    SynthSample m = make_synth_sample(o, i);
    const double moved = detail(m.target);
    CAPTURE(m.meta["misalign"].dump());
    CHECK(moved > 0.9 * aligned);
    worst = std::min(worst, moved / aligned);
  }
  MESSAGE("fine-detail energy kept by the misaligned targets: at least " << worst * 100 << "%");
}

}  // TEST_SUITE
