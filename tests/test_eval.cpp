// Evaluation: LPIPS against its PyTorch form, the evaluate pipeline's figures, files and errors.
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "data/image.h"
#include "data/synth.h"
#include "engine/fileio.h"
#include "engine/safetensors.h"
#include "tests/harness.h"
#include "train/evaluate.h"
#include "models/lpips.h"
#include "data/metrics.h"

using namespace rf;
using namespace rft;
namespace fs = std::filesystem;

namespace {
fs::path temp_dir(const char* tag) {
  static int counter = 0;
  auto d = fs::temp_directory_path() / (std::string("refocus_") + tag + "_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(counter++));
  fs::create_directories(d);
  return d;
}

// The formula weights of tests/golden/make_golden.py::lpips_formula_weights.
void fill_formula_weights(Lpips& m) {
  auto params = m.named_parameters();
  int t = 0;
  for (int i = 0; i < 5; ++i, ++t) {
    std::vector<float> w(m.conv[i]->weight.numel()), b(m.conv[i]->bias.numel());
    for (size_t k = 0; k < w.size(); ++k) w[k] = (float)(0.05 * std::sin(0.37 * (double)k + 1.3 * t));
    for (size_t k = 0; k < b.size(); ++k) b[k] = (float)(0.01 * std::cos(0.5 * (double)k + t));
    m.conv[i]->weight.copy_(from_vector(w, m.conv[i]->weight.shape()));
    m.conv[i]->bias.copy_(from_vector(b, m.conv[i]->bias.shape()));
  }
  for (int j = 0; j < 5; ++j) {
    std::vector<float> w(m.lin[j]->weight.numel());
    for (size_t k = 0; k < w.size(); ++k) w[k] = (float)(0.1 * (1.2 + std::sin(0.11 * (double)k + j)));
    m.lin[j]->weight.copy_(from_vector(w, m.lin[j]->weight.shape()));
  }
}
}  // namespace

TEST_SUITE("eval") {

TEST_CASE("LPIPS (AlexNet) matches the lpips package's computation") {
  Lpips m;
  fill_formula_weights(m);
  SafeTensors st = load_safetensors(std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/lpips.safetensors");
  Tensor d = m.forward(st.tensors["a"], st.tensors["b"]);
  CHECK(rel_err(d, st.tensors["distance"]) < 1e-4);
  // the lpips package's parameter names, so its state dict loads as it is
  auto names = m.named_parameters();
  CHECK(names[0].first == "net.slice1.0.weight");
  CHECK(names[2].first == "net.slice2.3.weight");
  CHECK(names.back().first == "lin4.model.1.weight");
  fs::path dir = temp_dir("lpips");
  save_safetensors((dir / "w.safetensors").string(), m.state_dict());
  auto loaded = load_lpips((dir / "w.safetensors").string(), Device::CPU);
  CHECK(rel_err(loaded->forward(st.tensors["a"], st.tensors["b"]), d) < 1e-6);
  fs::remove_all(dir);
}

TEST_CASE("evaluate: identity and prediction folders, files written, figures match the metrics") {
  fs::path dir = temp_dir("eval");
  SynthOptions so;
  so.height = so.width = 64;
  for (int i = 0; i < 3; ++i) {
    SynthSample s = make_synth_sample(so, i);
    for (const char* d : {"test_c/source", "test_c/target", "test_c/depth", "test_c/defocus", "pred"})
      fs::create_directories(dir / d);
    std::string name = "s" + std::to_string(i) + ".png";
    write_png((dir / "test_c/source" / name).string(), s.source);
    write_png((dir / "test_c/target" / name).string(), s.target);
    write_png((dir / "test_c/depth" / name).string(), s.depth / 65.535f, 16);
    write_png((dir / "test_c/defocus" / name).string(), s.defocus / 256.f, 16);
    write_png((dir / "pred" / name).string(), s.target * 0.98f + 0.01f);
  }
  write_file_atomic((dir / "test_c/meta.json").string(), "{\"depth_unit_m\": 0.001, \"defocus_unit_px\": 0.00390625}");
  EvalOptions o;
  o.data = dir.string();
  o.out = (dir / "out").string();
  o.quiet = true;
  EvalResult id = evaluate(o);
  REQUIRE(id.rows.size() == 3);
  Tensor in0 = read_image((dir / "test_c/source/s0.png").string()), gt0 = read_image((dir / "test_c/target/s0.png").string());
  CHECK(id.rows[0].psnr == doctest::Approx(psnr(in0, gt0)).epsilon(1e-9));
  CHECK(id.rows[0].ssim == doctest::Approx(ssim(in0, gt0)).epsilon(1e-9));
  CHECK(id.mean.lpips < 0);
  for (const char* f : {"per_image.csv", "summary.json", "results.md"}) CHECK(fs::exists(dir / "out" / f));
  CHECK(read_file((dir / "out/results.md").string()).find("Scored at 8-bit, full image") != std::string::npos);
  CHECK(read_file((dir / "out/summary.json").string()).find("unavailable") != std::string::npos);

  o.mode = "pred";
  o.pred_dir = (dir / "pred").string();
  EvalResult pr = evaluate(o);
  CHECK(pr.mean.psnr > id.mean.psnr);  // the near-perfect predictions score higher than the blurry inputs
  CHECK(pr.mean.psnr > 35.0);

  fs::remove(dir / "pred/s1.png");
  CHECK_THROWS_WITH_AS(evaluate(o), doctest::Contains("no prediction for s1"), Error);
  write_png((dir / "pred/s1.png").string(), zeros({3, 10, 10}));
  CHECK_THROWS_WITH_AS(evaluate(o), doctest::Contains("s1.png is 10x10 but the ground truth"), Error);
  o.mode = "model";
  o.model = "nonesuch";
  CHECK_THROWS_WITH_AS(evaluate(o), doctest::Contains("unknown model 'nonesuch'"), Error);
  fs::remove_all(dir);
}

TEST_CASE("evaluate --align recovers a gain and a shift") {
  fs::path dir = temp_dir("align");
  fs::create_directories(dir / "blur");
  fs::create_directories(dir / "sharp");
  SynthOptions so;
  so.height = so.width = 64;
  SynthSample s = make_synth_sample(so, 0);
  Tensor sharp = s.target * 0.8f;
  // the "blurry" input is the sharp image at half the gain, moved: input[y, x] = sharp[y - 1, x + 2]
  Tensor moved = pad2d(slice(slice(sharp, 1, 0, 63), 2, 2, 64), 0, 2, 1, 0, PadMode::Replicate) * 0.5f;
  write_png((dir / "blur/a.png").string(), moved, 16);
  write_png((dir / "sharp/a.png").string(), sharp, 16);
  EvalOptions o;
  o.data = dir.string();
  o.out = (dir / "out").string();
  o.align = true;
  o.bits = 16;
  o.quiet = true;
  EvalResult r = evaluate(o);
  CHECK(r.rows[0].gain == doctest::Approx(2.0).epsilon(1e-3));
  CHECK(r.rows[0].shift_y == 1);  // input[y + 1, x - 2] = sharp[y, x]
  CHECK(r.rows[0].shift_x == -2);
  CHECK(r.rows[0].psnr > 60);
  o.linear_input = true;  // a model option: the blurry input is scored as it is
  CHECK_THROWS_WITH_AS(evaluate(o), doctest::Contains("goes with --model only"), Error);
  o.linear_input = false;
  o.self_ensemble = 2;  // so is the self-ensemble
  CHECK_THROWS_WITH_AS(evaluate(o), doctest::Contains("goes with --model only"), Error);
  fs::remove_all(dir);
}

}  // TEST_SUITE

#include "layers/losses.h"

TEST_SUITE("losses") {

TEST_CASE("the differentiable SSIM equals the Gaussian SSIM metric and has correct gradients") {
  SafeTensors st = load_safetensors(std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/metrics.safetensors");
  for (int k = 0; k < 3; ++k) {
    Tensor ref = st.tensors["pair" + std::to_string(k) + ".ref"], pred = st.tensors["pair" + std::to_string(k) + ".pred"];
    CHECK(std::fabs(ssim_index(pred, ref).item() - st.tensors["pair" + std::to_string(k) + ".ssim_gaussian"].item()) < 1e-5);
  }
  Tensor a = uniform_input({2, 16, 18}, 0, 1, 1), b = uniform_input({2, 16, 18}, 0, 1, 2);
  check_gradients("ssim_index", [](auto& x) { return ssim_index(x[0], x[1]); }, {a, b});
  check_cuda_parity("ssim_index", [](auto& x) { return ssim_index(x[0], x[1]); }, {a, b});
}

TEST_CASE("pixel and frequency losses") {
  Tensor a = uniform_input({2, 3, 8, 8}, 0, 1, 3), b = uniform_input({2, 3, 8, 8}, 0, 1, 4);
  CHECK(mse_loss(a, b).item() == doctest::Approx(mean(square(a - b)).item()));
  CHECK(charbonnier_loss(a, a).item() == doctest::Approx(1e-3));
  // eps = 0.1: with 1e-3 the loss curves too sharply near zero for a 1e-2 finite-difference step
  check_gradients("charbonnier", [](auto& x) { return charbonnier_loss(x[0], x[1], 0.1f); }, {a, b});
  check_gradients("fft_l1", [](auto& x) { return fft_l1_loss(x[0], x[1]); }, {a, b});
}

}  // TEST_SUITE
