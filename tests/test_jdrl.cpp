// jdrl (paper 004): the fused isotropic reblurring op against the naive composition, by finite differences and
// CUDA parity.
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "models/jdrl.h"
#include "models/registry.h"
#include "ops/isotropic_reblur.h"
#include "ops/optical_flow.h"
#include "data/image.h"
#include "data/loader.h"
#include "engine/fileio.h"
#include "train/evaluate.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;
namespace fs = std::filesystem;

TEST_SUITE("jdrl") {

TEST_CASE("fused isotropic reblurring equals the naive per-pixel kernels, forward and gradients") {
  const int64_t b = 2, h = 11, w = 17;
  Tensor sharp = uniform_input({b, 3, h, w}, 0.f, 1.f, 1);
  Tensor seeds = input_away_from_zero({b, kReblurSeeds, h, w}, -2.f, 2.f, 0.05f, 2);  // |seed| has a kink at 0
  Tensor maps = softmax(uniform_input({b, 8, h, w}, -1.f, 1.f, 3), 1);
  std::vector<Tensor> in = {sharp, seeds, maps}, a, u;
  for (auto& t : in) {
    a.push_back(t.clone().set_requires_grad());
    u.push_back(t.clone().set_requires_grad());
  }
  Tensor fused = isotropic_reblur(a[0], a[1], a[2]), naive = isotropic_reblur_unfused(u[0], u[1], u[2]);
  CHECK(rel_err(fused, naive) < 1e-5);
  Tensor g = uniform_input(fused.shape(), -1.f, 1.f, 4);
  fused.backward(g);
  naive.backward(g);
  const char* names[] = {"sharp", "seeds", "maps"};
  for (int i = 0; i < 3; ++i) CHECK_MESSAGE(rel_err(a[i].grad(), u[i].grad()) < 1e-5, "gradient of " << names[i]);
  auto f = [](const std::vector<Tensor>& x) { return isotropic_reblur(x[0], x[1], x[2]); };
  Tensor s_small = uniform_input({1, 3, 6, 7}, 0.f, 1.f, 5);
  Tensor seeds_small = input_away_from_zero({1, kReblurSeeds, 6, 7}, -2.f, 2.f, 0.05f, 6);
  Tensor maps_small = softmax(uniform_input({1, 8, 6, 7}, -1.f, 1.f, 7), 1);
  check_gradients("isotropic_reblur", f, {s_small, seeds_small, maps_small});
  check_cuda_parity("isotropic_reblur", f, in);
  // A worked example of the released code: radius 1, seeds (2, -1): corner taps 0, edges e^1, centre e^2.
  Tensor one = zeros({1, 1, 3, 3});
  one.data()[4] = 1.f;  // an impulse: the output at its neighbours reads the kernel
  Tensor sd = zeros({1, kReblurSeeds, 3, 3});
  for (int p = 0; p < 9; ++p) {
    sd.data()[0 * 9 + p] = 2.f;
    sd.data()[1 * 9 + p] = -1.f;
  }
  Tensor mp = zeros({1, 8, 3, 3});
  for (int p = 0; p < 9; ++p) mp.data()[1 * 9 + p] = 1.f;  // only the 3 x 3 kernel
  auto v = isotropic_reblur(one, sd, mp).to_vector();
  const double e = std::exp(1.0), e2 = std::exp(2.0), z = 4 + 4 * e + e2;
  CHECK(std::fabs(v[4] - e2 / z) < 1e-6);  // centre
  CHECK(std::fabs(v[1] - e / z) < 1e-6);   // edge
  CHECK(std::fabs(v[0] - 1 / z) < 1e-6);   // corner
}

TEST_CASE("forward on jdrl's modules reproduces their PyTorch twins: Reblur_Model, VGG_Deblur, the whole network") {
  auto dir = fs::temp_directory_path() / ("refocus_jdrl_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  run_twin_script("twin_jdrl.py", dir.string());
  // The released modules go through convert --official (DataParallel's "module." prefixes would be removed).
  check_twin_forward("jdrl_reblur", (dir / "jdrl_reblur_twin.safetensors").string(), dir.string(), 1e-4, true);
  check_twin_forward("jdrl_unet", (dir / "jdrl_unet_twin.safetensors").string(), dir.string(), 1e-4, true);
  check_twin_forward("jdrl", (dir / "jdrl_unet_net_twin.safetensors").string(), dir.string());
  check_twin_forward("jdrl", (dir / "jdrl_unet_identity_net_twin.safetensors").string(), dir.string());
  check_twin_forward("jdrl", (dir / "jdrl_restormer_net_twin.safetensors").string(), dir.string());
  fs::remove_all(dir);
}

TEST_CASE("a fresh jdrl with the identity start returns its input (both backbones), the released start does not") {
  Tensor y = uniform_input({1, 3, 32, 48}, 0.05f, 0.95f, 7);
  for (const char* backbone : {"unet", "restormer"}) {
    CAPTURE(backbone);
    JdrlModel net(JdrlConfig::from_json({{"backbone", backbone}, {"width", 8}, {"restormer_blocks", {1, 1, 1, 1}},
                                         {"identity_start", true}}));
    net.eval();
    NoGrad ng;
    CHECK(max_abs_diff(net.deblur(y, {}, {}), y) < 1e-5f);
  }
  JdrlModel released(JdrlConfig::from_json({{"backbone", "unet"}, {"width", 8}}));
  released.eval();
  NoGrad ng;
  CHECK(max_abs_diff(released.deblur(y, {}, {}), y) > 0.05f);
}

TEST_CASE("parameter counts of jdrl's modules and backbones") {
  const int64_t reblur = make_model("jdrl_reblur")->num_parameters(), unet = make_model("jdrl_unet")->num_parameters();
  RestormerConfig rc;
  const int64_t restormer = Restormer(rc).num_parameters();
  JdrlModel with_unet(JdrlConfig::from_json({{"backbone", "unet"}})), with_restormer(JdrlConfig::from_json({{"backbone", "restormer"}}));
  MESSAGE("Reblur_Model " << reblur << " (released: 474,987), VGG_Deblur " << unet << " (31,033,411), stock Restormer "
                          << restormer << " (26,126,644); jdrl without R: U-Net " << with_unet.inference_parameters()
                          << ", Restormer " << with_restormer.inference_parameters() << " (paper's Restormer+: 26.2 M)");
  CHECK(reblur == 474987);
  CHECK(unet == 31033411);
  CHECK(restormer == 26126644);
}

TEST_CASE("optical flow recovers known shifts and zooms within a fraction of a pixel, warp of zero flow is the identity") {
  // A textured image (smooth random blobs) and a copy moved by a known field.
  Tensor base = uniform_input({1, 3, 64, 80}, 0.f, 1.f, 40);
  base = avg_pool2d(pad2d(base, 2, 2, 2, 2, PadMode::Replicate), 5, 1);
  CHECK(max_abs_diff(warp(base, zeros({1, 2, 64, 80})), base) < 1e-6);
  struct Motion {
    float dx, dy, zoom;
  };
  for (Motion m : {Motion{1.5f, -0.75f, 1.f}, Motion{0.f, 0.f, 1.03f}, Motion{-2.f, 1.f, 0.98f}}) {
    std::vector<float> f(2 * 64 * 80);
    for (int64_t y = 0; y < 64; ++y)
      for (int64_t x = 0; x < 80; ++x) {  // to(p + flow) = from(p): to is from moved by -flow
        f[y * 80 + x] = m.dx + (m.zoom - 1.f) * ((float)x - 39.5f);
        f[64 * 80 + y * 80 + x] = m.dy + (m.zoom - 1.f) * ((float)y - 31.5f);
      }
    Tensor truth = from_vector(f, {1, 2, 64, 80});
    Tensor moved = warp(base, truth * -1.f);  // moved(p) = base(p - flow): base = moved sampled at p + flow
    Tensor est = estimate_flow(base, moved);
    auto e = est.to_vector();
    double epe = 0;
    int64_t n = 0;
    for (int64_t y = 8; y < 56; ++y)  // away from the borders, where the moved image repeats its edge
      for (int64_t x = 8; x < 72; ++x) {
        const double ex = e[y * 80 + x] - f[y * 80 + x], ey = e[64 * 80 + y * 80 + x] - f[64 * 80 + y * 80 + x];
        epe += std::sqrt(ex * ex + ey * ey);
        n++;
      }
    epe /= (double)n;
    MESSAGE("flow: shift (" << m.dx << ", " << m.dy << "), zoom " << m.zoom << ": mean end-point error " << epe << " px");
    CHECK(epe < 0.25);
  }
}

TEST_CASE("the pair-alignment flow recovers a zoom and shift between a blurry image and a sharp one") {
  // A sharp image of 6 px blocks; the input is it blurred (two 5 x 5 box filters, sigma ~2 px), the target it moved.
  // The dense field moves sharp edges onto blurred ones; its affine fit cannot.
  Tensor sharp = upsample_nearest(uniform_input({1, 3, 16, 16}, 0.f, 1.f, 91), 96, 96);
  Tensor blurry = sharp;
  for (int k = 0; k < 2; ++k) blurry = avg_pool2d(pad2d(blurry, 2, 2, 2, 2, PadMode::Replicate), 5, 1);
  const float dx = 0.7f, dy = -0.4f, zoom = 1.008f;
  std::vector<float> f(2 * 96 * 96);
  for (int64_t y = 0; y < 96; ++y)
    for (int64_t x = 0; x < 96; ++x) {
      f[y * 96 + x] = dx + (zoom - 1.f) * ((float)x - 47.5f);
      f[96 * 96 + y * 96 + x] = dy + (zoom - 1.f) * ((float)y - 47.5f);
    }
  Tensor truth = from_vector(f, {1, 2, 96, 96});
  Tensor target = warp_bicubic(sharp, truth * -1.f);  // target sampled at p + flow ~ sharp(p), aligned with blurry
  auto epe = [&](const Tensor& est) {
    auto e = est.to_vector();
    double total = 0;
    int64_t n = 0;
    for (int64_t y = 8; y < 88; ++y)
      for (int64_t x = 8; x < 88; ++x, ++n)
        total += std::hypot(e[y * 96 + x] - f[y * 96 + x], e[96 * 96 + y * 96 + x] - f[96 * 96 + y * 96 + x]);
    return total / (double)n;
  };
  const double dense = epe(estimate_flow(blurry, target)), fitted = epe(estimate_flow(blurry, target, pair_alignment_flow()));
  MESSAGE("blurry vs sharp, shift (0.7, -0.4), zoom 1.008: end-point error " << dense << " px dense (defaults), "
                                                                            << fitted << " px pair_alignment_flow");
  CHECK(fitted < 0.1);
  CHECK(fitted < 0.5 * dense);
}

TEST_CASE("the bicubic warp keeps a sub-pixel shift's detail that the bilinear one averages away") {
  // White noise (the hardest case: a half-pixel shift removes the Nyquist frequency whatever the filter) moved by
  // half a pixel and back: bilinear averages neighbours twice and keeps ~5% of the detail, bicubic ~24%.
  Tensor tex = uniform_input({1, 3, 48, 64}, 0.f, 1.f, 61);
  Tensor half = full({1, 2, 48, 64}, 0.5f), back = full({1, 2, 48, 64}, -0.5f);
  auto detail = [](const Tensor& t) {  // energy of pixel differences away from the border
    Tensor c = slice(slice(t, 2, 4, 44), 3, 4, 60);
    Tensor dx = slice(c, 3, 1, 56) - slice(c, 3, 0, 55);
    return sum(dx * dx).item();
  };
  const float kept_bilinear = detail(warp(warp(tex, half), back)) / detail(tex);
  const float kept_bicubic = detail(warp_bicubic(warp_bicubic(tex, half), back)) / detail(tex);
  MESSAGE("detail kept by a half-pixel shift and back: bilinear " << kept_bilinear << ", bicubic " << kept_bicubic);
  CHECK(kept_bilinear < 0.1f);
  CHECK(kept_bicubic > 4.f * kept_bilinear);
  CHECK(max_abs_diff(warp_bicubic(tex, zeros({1, 2, 48, 64})), tex) < 1e-5);
}

TEST_CASE("the fusion's sampling offsets learn: points start apart and warp passes a gradient to the flow") {
  manual_seed(3);
  DeformableFusion f(kReblurSeeds, 5, 4);
  std::vector<float> start = f.offsets->bias.to_vector();
  CHECK(start[0] == doctest::Approx(1.f));  // head 0, point 0: one pixel to the right
  CHECK(start[2] == doctest::Approx(2.f));  // head 0, point 1: two pixels
  f.output->weight.fill_(0.1f);             // a trained projection, so that the sampled values matter
  Tensor img = uniform_input({1, 3, 16, 16}, 0.f, 1.f, 62), map = uniform_input({1, kReblurSeeds, 16, 16}, -1.f, 1.f, 63);
  sum(f.forward(img, map) * uniform_input({1, kReblurSeeds, 16, 16}, -1.f, 1.f, 64)).backward();
  REQUIRE(f.offsets->bias.grad().defined());
  std::vector<float> g = f.offsets->bias.grad().to_vector();
  double norm = 0;
  for (float v : g) norm += (double)v * v;
  CHECK(norm > 1e-8);
}

TEST_CASE("--reblur detached: L_R still trains R the same, but no longer reaches the backbone") {
  // The bare backbone (no estimator, so L_P does not exist and the backbone's only other loss is L_D).
  Batch b;
  b.input = uniform_input({1, 3, 32, 32}, 0.1f, 0.9f, 71);
  b.target = uniform_input({1, 3, 32, 32}, 0.1f, 0.9f, 72);
  auto grads = [&](bool guides, const std::string& prefix) {
    JdrlConfig c = JdrlConfig::from_json({{"width", 4}, {"estimator", false}, {"reblur_guides", guides}});
    manual_seed(73);
    JdrlModel m(c);
    m.loss(b, "main").total.backward();
    std::vector<float> g;
    for (auto& [name, t] : m.named_parameters())
      if (name.rfind(prefix, 0) == 0) {
        auto v = t.grad().to_vector();
        g.insert(g.end(), v.begin(), v.end());
      }
    return from_vector(g, {(int64_t)g.size()});
  };
  CHECK(max_abs_diff(grads(true, "reblur."), grads(false, "reblur.")) < 1e-6);
  const double backbone_change = max_abs_diff(grads(true, "backbone."), grads(false, "backbone."));
  MESSAGE("backbone gradients with and without L_R's share: largest difference " << backbone_change);
  CHECK(backbone_change > 1e-5);
  CHECK(JdrlConfig().reblur_guides);  // the paper's coupling unless asked
}

TEST_CASE("--reblur-width narrows R only: the deblurring network is untouched and the main losses still train R") {
  auto reblur_params = [](int64_t w) {  // two seed networks: conv_first, three residual blocks, out (8 maps, 35 seeds)
    auto seednet = [w](int64_t outputs) { return 6 * w * 9 + w + 6 * (w * w * 9 + w) + w * outputs * 9 + outputs; };
    return seednet(8) + seednet(35);
  };
  CHECK(reblur_params(64) == 474987);  // the released Reblur_Model
  JdrlConfig narrow = JdrlConfig::from_json({{"width", 4}, {"reblur_width", 16}});
  CHECK(JdrlConfig::from_json(narrow.to_json()).reblur_width == 16);
  CHECK(JdrlConfig().reblur_width == 64);
  CHECK_THROWS(JdrlConfig::from_json({{"reblur_width", 0}}));
  manual_seed(81);
  JdrlModel m(narrow), released(JdrlConfig::from_json({{"width", 4}}));
  CHECK(m.inference_parameters() == released.inference_parameters());
  CHECK(m.num_parameters() - m.inference_parameters() == reblur_params(16));
  Batch b;
  b.input = uniform_input({1, 3, 32, 32}, 0.1f, 0.9f, 82);
  b.target = uniform_input({1, 3, 32, 32}, 0.1f, 0.9f, 83);
  m.loss(b, "main").total.backward();
  double r_grad = 0;
  for (auto& [name, t] : m.named_parameters())
    if (name.rfind("reblur.", 0) == 0)
      for (float v : t.grad().to_vector()) r_grad += (double)v * v;
  CHECK(r_grad > 1e-10);
}

TEST_CASE("evaluate --warp-gt scores a shifted prediction against the ground truth moved onto it") {
  auto dir = fs::temp_directory_path() / ("refocus_warpgt_" + std::to_string(::getpid()));
  make_dirs((dir / "blur").string());
  make_dirs((dir / "sharp").string());
  for (int i = 0; i < 2; ++i) {
    Tensor sharp = avg_pool2d(pad2d(uniform_input({1, 3, 48, 64}, 0.f, 1.f, 50 + i), 2, 2, 2, 2, PadMode::Replicate), 5, 1);
    Tensor shifted = warp(sharp, full({1, 2, 48, 64}, 1.3f));  // the "prediction": the sharp image, misaligned
    write_png((dir / ("blur/" + std::to_string(i) + ".png")).string(), shifted[0]);
    write_png((dir / ("sharp/" + std::to_string(i) + ".png")).string(), sharp[0]);
  }
  EvalOptions o;
  o.data = dir.string();
  o.out = (dir / "eval").string();
  o.quiet = true;
  double plain = evaluate(o).mean.psnr;
  o.warp_gt = true;
  double warped = evaluate(o).mean.psnr;
  MESSAGE("a 1.3 px shift of a sharp image: plain " << plain << " dB, --warp-gt " << warped << " dB");
  CHECK(warped > plain + 8);
  fs::remove_all(dir);
}

}  // TEST_SUITE
