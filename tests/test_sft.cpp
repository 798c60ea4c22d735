// sft (paper 002): the PyTorch twin (three modulations) through `forward`, SFT layers starting at the identity,
// the stages' losses (the L_wd guard on blur-free crops), and train_sft refusing data without defocus maps.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/image.h"
#include "engine/fileio.h"
#include "models/ggkm.h"
#include "models/registry.h"
#include "models/sft.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;
namespace fs = std::filesystem;

namespace {
SftConfig small() {
  SftConfig c;
  c.map_width = 8;
  c.map_blocks = 2;
  c.cond_width = 8;
  c.width = 12;
  c.blocks = 5;
  c.map_unit_px = 2.56f;
  return c;
}
}  // namespace

TEST_SUITE("sft") {

TEST_CASE("forward on sft reproduces its PyTorch twin: SFT-Dec, plain SFT and concatenation") {
  TempDir d;
  run_twin_script("twin_sft.py", d.path.string());
  for (const char* m : {"sft_dec", "sft", "concat"}) check_twin_forward("sft", d / (std::string("sft_") + m + "_twin.safetensors"), d.path.string());
}

TEST_CASE("fresh SFT layers pass features through (gamma 1, beta 0), in both forms") {
  manual_seed(1);
  Tensor f = uniform_input({2, 12, 7, 9}, -1.f, 1.f, 2), cond = uniform_input({2, 8, 7, 9}, -1.f, 1.f, 3);
  for (bool dec : {true, false}) {
    SftLayer layer(8, 12, dec);
    CHECK(max_abs_diff(layer.forward(f, cond), f) < 1e-6);
  }
}

TEST_CASE("a fresh sft is the identity (zero output conv) and its output conv learns first") {
  for (const char* mod : {"sft_dec", "sft", "concat"}) {
    manual_seed(3);
    SftConfig c = small();
    c.modulation = mod;
    SftModel m(c);
    Tensor x = uniform_input({2, 3, 16, 20}, 0.f, 1.f, 8), map = uniform_input({2, 1, 16, 20}, 0.f, 3.f, 9);
    Tensor out = m.deblur_with_map(x, map);
    CHECK_MESSAGE(max_abs_diff(out, x) < 1e-6, mod);
    // The output conv's gradient is what moves the net off the identity: it must not be zero.
    Tensor target = uniform_input({2, 3, 16, 20}, 0.f, 1.f, 10);
    mean(square(out - target)).backward();
    double g = 0;
    for (auto& [n, p] : m.named_parameters())
      if (n.rfind("conv03b.", 0) == 0) g += sum(abs(p.grad())).item();
    CHECK_MESSAGE(g > 0, mod);
  }
}

TEST_CASE("sft losses of every stage are finite, reach the weights, and the L_wd guard holds on blur-free crops") {
  manual_seed(4);
  SftModel m(small());
  Batch b;
  b.input = uniform_input({2, 3, 24, 20}, 0.f, 1.f, 5);
  b.target = uniform_input({2, 3, 24, 20}, 0.f, 1.f, 6);
  b.defocus = uniform_input({2, 1, 24, 20}, 0.f, 3.f, 7);
  for (const char* stage : {"gt_map", "pred_map", "finetune", "end_to_end"}) {
    m.zero_grad();
    LossTerms l = m.loss(b, stage);
    REQUIRE(std::isfinite(l.total.item()));
    l.total.backward();
    int missing = 0;
    for (auto& [n, p] : m.named_parameters())
      if (!p.grad().defined()) missing++;
    // gt_map: the map net learns from L_dme only; every stage reaches every parameter.
    CHECK_MESSAGE(missing == 0, stage << ": " << missing << " parameters without a gradient");
  }
  b.defocus = zeros({2, 1, 24, 20});  // an in-focus crop: W = map / mean(map) would be 0 / 0
  LossTerms l = m.loss(b, "finetune");
  CHECK(std::isfinite(l.total.item()));
  CHECK_THROWS_WITH_AS(m.loss(b, "stage4"), doctest::Contains("unknown stage"), Error);
}

TEST_CASE("deblur --save-map writes sft's own defocus map in make_synth's units, and refuses a network without one") {
  TempDir d;
  manual_seed(5);
  SftModel m(small());
  // A map around 2 units that still varies over the image, so the clamp at 0 px hides nothing.
  for (auto& [n, p] : m.named_parameters()) {
    if (n == "conv03a.bias") p.fill_(2.f);
    if (n == "conv03a.weight") p.copy_(p * 0.02f);
  }
  save_model(d / "sft.safetensors", m);
  Tensor img = uniform_input({3, 20, 28}, 0.f, 1.f, 11);
  write_png(d / "in.png", img, 16);
  int code = 0;
  std::string log = run_command(binary_dir() + "/deblur --model sft --device cpu --weights " + (d / "sft.safetensors") +
                                    " --save-map " + (d / "map.png") + " " + (d / "in.png") + " " + (d / "out.png"),
                                &code);
  REQUIRE_MESSAGE(code == 0, log);
  Tensor expected_px;
  {
    NoGrad ng;
    m.eval();
    expected_px = m.predict_map(unsqueeze(read_image(d / "in.png", 3), 0))[0] * m.cfg.map_unit_px;
  }
  Tensor written_px = read_image(d / "map.png", 1) * (65535.f / 256.f);
  std::vector<float> e = expected_px.to_vector();
  CHECK(*std::min_element(e.begin(), e.end()) > 0.5f);
  CHECK(*std::max_element(e.begin(), e.end()) - *std::min_element(e.begin(), e.end()) > 0.05f);
  CHECK(max_abs_diff(written_px, expected_px) < 1.f / 256.f);

  // The map and the deblurred image at one path: refused before anything is written (file and folder forms).
  auto refused_at_out = [&](const std::string& in, const std::string& out) {
    log = run_command(binary_dir() + "/deblur --model sft --device cpu --weights " + (d / "sft.safetensors") +
                          " --save-map " + out + " " + in + " " + out,
                      &code);
    CHECK(code != 0);
    CHECK_MESSAGE(log.find("--save-map is OUT") != std::string::npos, log);
    CHECK_FALSE(fs::exists(out));
  };
  refused_at_out(d / "in.png", d / "same.png");
  make_dirs(d / "inputs");
  write_png(d / "inputs/a.png", img, 16);
  refused_at_out(d / "inputs", d / "outs");

  GgkmConfig c = GgkmConfig::variant_defaults("ggkm");
  c.groups = 4;
  GgkmModel g(c);
  save_model(d / "ggkm.safetensors", g);
  log = run_command(binary_dir() + "/deblur --model ggkm --device cpu --weights " + (d / "ggkm.safetensors") + " --save-map " +
                        (d / "map2.png") + " " + (d / "in.png") + " " + (d / "out2.png"),
                    &code);
  CHECK(code != 0);
  CHECK_MESSAGE(log.find("predicts no defocus map") != std::string::npos, log);
  CHECK_FALSE(fs::exists(d / "out2.png"));
}

TEST_CASE("train_sft refuses, by name, a dataset without defocus maps") {
  TempDir d;
  make_dirs(d / "data/blur");
  make_dirs(d / "data/sharp");
  for (int i = 0; i < 3; ++i) {
    write_png(d / ("data/blur/" + std::to_string(i) + ".png"), uniform_input({3, 32, 32}, 0.f, 1.f, 10 + i));
    write_png(d / ("data/sharp/" + std::to_string(i) + ".png"), uniform_input({3, 32, 32}, 0.f, 1.f, 20 + i));
  }
  int code = 0;
  std::string out = run_command(binary_dir() + "/train_sft " + (d / "data") + " --out " + (d / "run") + " --device cpu", &code);
  CHECK(code == 1);
  CHECK_MESSAGE(out.find("sft trains on ground-truth defocus maps, and this pairs dataset has none") != std::string::npos, out);
}

}  // TEST_SUITE
