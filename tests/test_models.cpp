// The model interface through the programs: `forward` reproduces a PyTorch twin with the same weights,
// `convert` rebuilds a model from a plain state dict, and run_deblur's tiles equal the whole image.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "data/image.h"
#include "engine/fileio.h"
#include "engine/safetensors.h"
#include "layers/layers.h"
#include "models/gs.h"
#include "models/registry.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;
namespace fs = std::filesystem;

namespace {

std::string run_program(const std::string& args, int* code) {
  std::string cmd = fs::read_symlink("/proc/self/exe").parent_path().string() + "/" + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = pclose(p);
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// tests/golden/<name>_twin.safetensors -> weights file, input file and config file for `forward`; returns
// the expected outputs.
std::map<std::string, Tensor> split_twin(const std::string& name, const TempDir& d) {
  SafeTensors st = load_safetensors(std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/" + name + "_twin.safetensors");
  NamedTensors weights, inputs;
  std::map<std::string, Tensor> expected;
  for (auto& [k, t] : st.tensors) {
    if (k.rfind("w.", 0) == 0)
      weights.emplace_back(k.substr(2), t);
    else if (k.rfind("out", 0) == 0)
      expected[k] = t;
    else
      inputs.emplace_back(k, t);
  }
  save_safetensors(d / "weights.safetensors", weights);
  save_safetensors(d / "in.safetensors", inputs);
  write_file_atomic(d / "config.json", st.metadata["config"]);
  return expected;
}

// Two 3x3 convolutions: each output pixel sees 2 px around it, so 3 px of tile context is enough.
class TwoConvs : public Model {
 public:
  TwoConvs() {
    ConvOptions same = ConvOptions::make(1, 1);
    a_ = register_module("a", std::make_shared<Conv2d>(3, 6, 3, same));
    b_ = register_module("b", std::make_shared<Conv2d>(6, 3, 3, same));
  }
  std::string name() const override { return "two_convs"; }
  nlohmann::json config() const override { return nlohmann::json::object(); }
  Tensor deblur(const Tensor& x, const Tensor&, const Tensor&) override { return x + 0.1f * b_->forward(relu(a_->forward(x))); }
  int64_t tile_context() const override { return 3; }
  int64_t size_multiple() const override { return 4; }

 private:
  std::shared_ptr<Conv2d> a_, b_;
};

}  // namespace

TEST_SUITE("models") {

TEST_CASE("run_deblur in tiles with context equals the whole image, sizes padded to the model's multiple") {
  manual_seed(3);
  TwoConvs m;
  LoadedSample s;
  s.input = uniform_input({3, 37, 53}, 0.f, 1.f, 11);  // not a multiple of the tile or of 4
  Tensor whole = run_deblur(m, s, Device::CPU, InferenceOptions{0});
  Tensor tiled = run_deblur(m, s, Device::CPU, InferenceOptions{16});
  CHECK(whole.shape() == Shape{3, 37, 53});
  CHECK(tiled.shape() == whole.shape());
  CHECK(max_abs_diff(tiled, whole) < 1e-6);
  CHECK(max_abs_diff(whole, clamp(s.input, 0.f, 1.f)) > 1e-3);  // the model did something
}

// An identity model: what run_deblur adds around the network, alone.
class Identity : public Model {
 public:
  std::string name() const override { return "identity"; }
  nlohmann::json config() const override { return nlohmann::json::object(); }
  Tensor deblur(const Tensor& x, const Tensor&, const Tensor&) override { return x; }
};

// Reads a depth map: the image scaled by it, pixel by pixel.
class DepthScaled : public Model {
 public:
  std::string name() const override { return "depth_scaled"; }
  nlohmann::json config() const override { return nlohmann::json::object(); }
  ModelInputs inputs() const override { return {true, false}; }
  Tensor deblur(const Tensor& x, const Tensor& depth, const Tensor&) override { return x * depth; }
};

TEST_CASE("turn_image: the eight symmetries of the square, each undone by unturn_image, and ensemble_turns(4) are the quarter turns") {
  Tensor img = uniform_input({2, 5, 7}, 0.f, 1.f, 5);
  std::vector<Tensor> seen;
  for (int t = 0; t < 8; ++t) {
    Tensor turned = turn_image(img, t);
    CHECK(turned.shape() == ((t & 4) ? Shape{2, 7, 5} : Shape{2, 5, 7}));
    CHECK(max_abs_diff(unturn_image(turned, t), img) == 0.0);
    for (const Tensor& other : seen)
      if (other.shape() == turned.shape()) CHECK(max_abs_diff(other, turned) > 0.0);  // eight different images
    seen.push_back(turned);
  }
  // Against the training augmentation's own rotations (crop_square, k quarter turns) on a square image.
  Tensor square = uniform_input({3, 6, 6}, 0.f, 1.f, 6);
  std::set<int> rotations;
  for (int t : ensemble_turns(4))
    for (int k = 0; k < 4; ++k)
      if (max_abs_diff(turn_image(square, t), crop_square(square, 0, 0, 6, k, false, false)) == 0.0) rotations.insert(k);
  CHECK(rotations == std::set<int>{0, 1, 2, 3});
  CHECK(ensemble_turns(1) == std::vector<int>{0});
  CHECK(ensemble_turns(8).size() == 8);
  CHECK_THROWS_WITH(ensemble_turns(3), doctest::Contains("1, 2, 4 or 8"));
}

TEST_CASE("run_deblur's self-ensemble averages the runs on turned copies, each turned back") {
  manual_seed(5);
  TwoConvs m;  // random convolutions: not symmetric, so each turn gives a different result
  LoadedSample s;
  s.input = uniform_input({3, 37, 53}, 0.f, 1.f, 12);  // not square, and not a multiple of the model's 4
  Tensor plain = run_deblur(m, s, Device::CPU, InferenceOptions{0});
  for (int n : {2, 4, 8}) {
    Tensor expected = zeros({3, 37, 53});
    for (int t : ensemble_turns(n)) {
      LoadedSample turned;
      turned.input = turn_image(s.input, t);
      expected = expected + unturn_image(run_deblur(m, turned, Device::CPU, InferenceOptions{0}), t) * (1.f / (float)n);
    }
    Tensor ensemble = run_deblur(m, s, Device::CPU, InferenceOptions{0, false, n});
    CHECK(ensemble.shape() == plain.shape());
    CHECK(max_abs_diff(ensemble, expected) < 1e-6);
    CHECK(max_abs_diff(ensemble, plain) > 1e-4);
  }
  Identity same;  // a symmetric model's ensemble is its plain run
  CHECK(max_abs_diff(run_deblur(same, s, Device::CPU, InferenceOptions{0, false, 8}), clamp(s.input, 0.f, 1.f)) < 1e-6);
  // The maps turn with the image: a pointwise model of image and depth map gives its plain result in every turn.
  DepthScaled scaled;
  s.depth = uniform_input({1, 37, 53}, 0.2f, 1.f, 13);
  Tensor by_depth = run_deblur(scaled, s, Device::CPU, InferenceOptions{0});
  CHECK(max_abs_diff(by_depth, clamp(s.input * s.depth, 0.f, 1.f)) < 1e-6);
  CHECK(max_abs_diff(run_deblur(scaled, s, Device::CPU, InferenceOptions{0, false, 8}), by_depth) < 1e-6);
}

TEST_CASE("run_deblur with a linear input shows the network the image brightened and sRGB-encoded, and undoes both") {
  manual_seed(4);
  LoadedSample s;
  s.input = uniform_input({3, 19, 23}, 0.f, 0.08f, 12);  // dark linear light, as the Pixel 4 captures
  const float avg = mean(s.input).item(), peak = max(s.input.flatten(), 0).item();
  const float gain = linear_input_gain(s.input);
  CHECK(gain == doctest::Approx(0.2f / avg).epsilon(1e-4));  // the mean brought to 0.2 ...
  CHECK(gain * peak < 0.98f);
  std::vector<float> lamp = s.input.to_vector();
  lamp[7] = 0.5f;  // ... unless the brightest value would pass 0.98 (a lamp in a dark room)
  CHECK(linear_input_gain(from_vector(lamp, s.input.shape())) == doctest::Approx(0.98f / 0.5f).epsilon(1e-4));

  InferenceOptions linear{0, true};
  Identity id;  // the round trip alone returns the input
  CHECK(max_abs_diff(run_deblur(id, s, Device::CPU, linear), s.input) < 1e-6);
  TwoConvs m;  // a network sees the encoded image; its result comes back decoded and darkened
  LoadedSample encoded = s;
  std::vector<float> v = s.input.to_vector();
  for (float& x : v) x = linear_to_srgb(x * gain);
  encoded.input = from_vector(v, s.input.shape());
  CHECK(mean(encoded.input).item() > 0.3f);  // what the network sees is an ordinary sRGB image
  std::vector<float> want = run_deblur(m, encoded, Device::CPU, InferenceOptions{0}).to_vector();
  for (float& x : want) x = srgb_to_linear(x) / gain;
  Tensor got = run_deblur(m, s, Device::CPU, linear);
  CHECK(max_abs_diff(got, from_vector(want, s.input.shape())) < 1e-6);
  CHECK(max_abs_diff(got, s.input) > 1e-4);  // the network did something
  LoadedSample black = s;
  black.input = s.input * 0.f;
  CHECK(linear_input_gain(black.input) == 1.f);  // nothing to brighten
  CHECK(max_abs_diff(run_deblur(id, black, Device::CPU, linear), black.input) == 0.f);
}

// `forward --model NAME` on the weights and inputs of tests/golden/NAME_twin.safetensors reproduces the twin's
// outputs; a missing input is named.
// golden: the file's name when a model has several (tests/golden/GOLDEN_twin.safetensors).
static void check_forward_against_twin(const std::string& model, size_t outputs, const std::string& first_input = "x",
                                       const std::string& golden = "") {
  TempDir d;
  auto expected = split_twin(golden.empty() ? model : golden, d);
  const std::string run = "forward --model " + model + " --device cpu --weights " + (d / "weights.safetensors") +
                          " --config " + (d / "config.json") + " ";
  int code = 0;
  std::string out = run_program(run + (d / "in.safetensors") + " " + (d / "out.safetensors"), &code);
  REQUIRE_MESSAGE(code == 0, out);
  SafeTensors got = load_safetensors(d / "out.safetensors");
  REQUIRE(expected.size() == outputs);
  for (auto& [k_, want] : expected) {
    const std::string& k = k_;  // captured by doctest's message lambda
    REQUIRE_MESSAGE(got.tensors.count(k), k);
    CHECK(got.tensors[k].shape() == want.shape());
    CHECK(max(abs(want).flatten(), 0).item() > 1e-3f);  // the twin computed something
    double e = rel_err(got.tensors[k], want);
    MESSAGE(model, " ", k, ": relative error ", e);
    CHECK(e < 1e-4);
  }
  save_safetensors(d / "bad.safetensors", {{"y", expected["out0"]}});
  out = run_program(run + (d / "bad.safetensors") + " " + (d / "o.safetensors"), &code);
  CHECK(code == 1);
  CHECK(out.find("no input named '" + first_input + "'") != std::string::npos);
}

TEST_CASE("forward on gs's initializer reproduces its PyTorch twin (same weights, non-square input)") {
  check_forward_against_twin("gs_initializer", 5);
}

// Windowed attention over Morton-ordered blobs, depth inputs, half-octave context features and every head output
// (the twin's head is random: the colour change and Eq. 5-8's clamps are exercised), with train_gs's softplus shrink
// keeping the light, and with the paper's ReLU (the config's default).
TEST_CASE("forward on gs's blob deblurrer reproduces its PyTorch twin (windows, depth, half-octave context)") {
  check_forward_against_twin("gs_deblurrer", 5, "means");
  check_forward_against_twin("gs_deblurrer", 5, "means", "gs_deblurrer_relu");
}

TEST_CASE("forward on gs's defocus estimator reproduces its PyTorch twin (same weights, non-square batch of 2)") {
  check_forward_against_twin("gs_defocus", 1);
}

TEST_CASE("forward on gs's photo encoder reproduces its PyTorch twin (dilated convolutions, non-square batch of 2)") {
  check_forward_against_twin("gs_photo_encoder", 1);
}

TEST_CASE("convert rebuilds gs from a plain state dict, its config read off the shapes") {
  TempDir d;
  GsConfig c;
  c.init_width = 8;
  c.dim = 32;
  c.blocks = 2;
  c.use_depth = false;
  c.photo_encoder = 6;
  manual_seed(5);
  GsModel m(c);
  save_safetensors(d / "plain.safetensors", m.state_dict());  // no refocus metadata
  int code = 0;
  std::string out = run_program("convert --model gs --official " + (d / "plain.safetensors") + " " + (d / "gs.safetensors"), &code);
  REQUIRE_MESSAGE(code == 0, out);
  auto back = load_model(d / "gs.safetensors", "gs", Device::CPU);
  GsConfig b = static_cast<GsModel&>(*back).cfg;
  CHECK(b.init_width == 8);
  CHECK(b.dim == 32);
  CHECK(b.blocks == 2);
  CHECK_FALSE(b.use_depth);
  CHECK(b.photo_encoder == 6);
  auto sa = m.state_dict(), sb = back->state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) CHECK(max_abs_diff(sa[i].second, sb[i].second) == 0);
}

}  // TEST_SUITE
