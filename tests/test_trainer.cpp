// The trainer (train/trainer.h) with a toy network: validation and report, a clear stop on a non-finite
// loss that leaves only finite weights behind, and strict options.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "data/image.h"
#include "engine/fileio.h"
#include "engine/safetensors.h"
#include "layers/layers.h"
#include "layers/losses.h"
#include "tests/harness.h"
#include "train/trainer.h"

using namespace rf;
using namespace rft;
namespace fs = std::filesystem;

namespace {

// out = x + conv(relu(conv(x))); its loss turns NaN from batch `nan_at` on (to test the stop).
class ToyModel : public Model {
 public:
  explicit ToyModel(const nlohmann::json& c) : nan_at_(c.value("nan_at", (int64_t)-1)) {
    ConvOptions same = ConvOptions::make(1, 1);
    body_ = register_module("body", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                        std::make_shared<Conv2d>(3, 8, 3, same), std::make_shared<Activation>(Act::ReLU),
                                        std::make_shared<Conv2d>(8, 3, 3, same)}));
  }
  std::string name() const override { return "toy"; }
  nlohmann::json config() const override { return {{"nan_at", nan_at_}}; }
  Tensor deblur(const Tensor& x, const Tensor&, const Tensor&) override { return x + body_->forward(x); }
  LossTerms loss(const Batch& b, const std::string&) override {
    Tensor l = mse_loss(deblur(b.input, Tensor(), Tensor()), b.target);
    if (nan_at_ >= 0 && b.step >= nan_at_) l = l * std::nanf("");
    return {l, {{"mse", l.item()}}};
  }

 private:
  int64_t nan_at_;
  std::shared_ptr<Sequential> body_;
};

Recipe toy_recipe() {
  Recipe r;
  r.program = "train_toy";
  r.model = "toy";
  r.summary = "a toy network for the trainer's tests";
  r.cpu.iters = 6;
  r.cpu.batch = 2;
  r.cpu.crop = 16;
  r.cpu.lr = 1e-3f;
  r.cpu.val_every = 3;
  r.cpu.val_images = 2;
  r.cpu.checkpoint_every = 2;
  r.gpu = r.cpu;
  r.gpu.sharp_fraction = 0.25;
  r.flags = {{"--nan-at", "nan_at", (int64_t)-1, "make the loss NaN from this step on", -1, 1e9},
             {"--big", "big", false, "a bigger toy: its recipes train fewer steps by default"}};
  r.adjust_defaults = [](TrainOptions& o) {
    if (o.net["big"].get<bool>()) o.iters = 2;
  };
  r.model_config = [](const TrainContext& ctx) { return nlohmann::json{{"nan_at", ctx.opt.net["nan_at"]}}; };
  r.make = [](const std::string&, const nlohmann::json& c) { return std::make_unique<ToyModel>(c); };
  r.stages = [](TrainContext& ctx) {
    return std::vector<Stage>{supervised_stage(ctx, "main", ctx.opt.iters, LRSchedule::constant(ctx.opt.lr))};
  };
  return r;
}

// A "pairs" dataset (blur/NAME + sharp/NAME) of n 24x24 images: sharp = noise, blurry = its 3x3 box mean.
void write_pairs(const std::string& dir, int n) {
  make_dirs(dir + "/blur");
  make_dirs(dir + "/sharp");
  for (int i = 0; i < n; ++i) {
    Tensor sharp = uniform_input({1, 3, 24, 24}, 0.1f, 0.9f, 100 + (uint64_t)i);
    Tensor blurry = avg_pool2d(pad2d(sharp, 1, 1, 1, 1, PadMode::Replicate), 3, 1);
    std::string name = cat("img", i, ".png");
    write_png(dir + "/sharp/" + name, sharp[0]);
    write_png(dir + "/blur/" + name, blurry[0]);
  }
}

// train_main on the toy recipe with stderr captured.
struct Result {
  int code;
  std::string err;
};
Result train(const std::vector<std::string>& args, const std::string& capture) {
  std::vector<std::string> all = {"train_toy"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(const_cast<char*>(a.c_str()));
  std::fflush(stderr);
  int saved = dup(2);
  FILE* f = std::fopen(capture.c_str(), "w");
  dup2(fileno(f), 2);
  int code = train_main(toy_recipe(), (int)argv.size(), argv.data());
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::fclose(f);
  return {code, read_file(capture)};
}

}  // namespace

TEST_SUITE("trainer") {

TEST_CASE("the trainer validates on held-out pairs, logs, reports and writes the final weights") {
  TempDir d;
  write_pairs(d / "data", 10);
  Result r = train({d / "data", "--out", d / "run", "--device", "cpu"}, d / "err.txt");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(r.err.find("8 training pairs and 2 validation pairs") != std::string::npos);
  CHECK(r.err.find("validation PSNR") != std::string::npos);
  for (const char* f : {"toy.safetensors", "config.json", "log.jsonl", "report.html", "train_state.safetensors", "samples/1.png"})
    CHECK_MESSAGE(file_exists(d / ("run/" + std::string(f))), f);
  auto config = nlohmann::json::parse(read_file(d / "run/config.json"));
  CHECK(config["train"]["recipe"] == "cpu");
  CHECK(config["wall_seconds"].get<double>() > 0);
  CHECK(config["machine"].get<std::string>().find("CPU threads") != std::string::npos);
  std::string log = read_file(d / "run/log.jsonl");
  CHECK(log.find("\"val_psnr\"") != std::string::npos);
  CHECK(log.find("\"mse\"") != std::string::npos);
  CHECK(read_file(d / "run/report.html").find("main/val_psnr") != std::string::npos);
}

TEST_CASE("--sharp-fraction is recorded, kept on resume, and off for runs saved before it existed") {
  TempDir d;
  write_pairs(d / "data", 6);
  auto weights = [&](const std::string& run) {
    std::vector<float> all;
    for (auto& [name, t] : load_safetensors(d / (run + "/toy.safetensors")).tensors) {
      auto v = t.to_vector();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const std::vector<std::string> base = {d / "data", "--device", "cpu", "--val-images", "0"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  auto resume = [&](const std::string& run, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {d / "data", "--out", d / run, "--resume"};
    a.insert(a.end(), extra.begin(), extra.end());
    return train(a, d / "err.txt");
  };
  // The toy's gpu recipe shows a quarter of its crops sharp by default.
  REQUIRE(train(with({"--out", d / "whole", "--recipe", "gpu"}), d / "err.txt").code == 0);
  REQUIRE(train(with({"--out", d / "none", "--recipe", "gpu", "--sharp-fraction", "0"}), d / "err.txt").code == 0);
  CHECK(nlohmann::json::parse(read_file(d / "whole/config.json"))["train"]["sharp_fraction"].get<double>() == 0.25);
  CHECK(weights("whole") != weights("none"));  // the sharp crops changed what was learnt

  // Stopped and resumed: the same weights as the uninterrupted run; a different fraction on resume is refused.
  Result r = train(with({"--out", d / "parts", "--recipe", "gpu", "--stop-after", "3"}), d / "err.txt");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  r = resume("parts", {"--sharp-fraction", "0.1"});
  CHECK(r.code == 1);
  CHECK(r.err.find("sharp_fraction = 0.1 differs from the run's 0.25") != std::string::npos);
  r = resume("parts");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(weights("parts") == weights("whole"));

  // A run saved before the flag existed (no sharp_fraction in its config) resumes without sharp crops, whatever the
  // recipe's default is now, and refuses a fraction asked for on resume.
  r = train(with({"--out", d / "old", "--recipe", "gpu", "--sharp-fraction", "0", "--stop-after", "3"}), d / "err.txt");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  auto config = nlohmann::json::parse(read_file(d / "old/config.json"));
  config["train"].erase("sharp_fraction");
  write_file_atomic(d / "old/config.json", config.dump());
  r = resume("old", {"--sharp-fraction", "0.25"});
  CHECK(r.code == 1);
  CHECK(r.err.find("sharp_fraction = 0.25 differs from the run's 0.0") != std::string::npos);
  r = resume("old");
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(weights("old") == weights("none"));
}

TEST_CASE("a recipe's defaults follow the network flags, and explicit options still win") {
  TempDir d;
  write_pairs(d / "data", 4);
  auto iters = [&](const std::string& run, std::vector<std::string> extra) {
    std::vector<std::string> a = {d / "data", "--out", d / run, "--device", "cpu", "--val-images", "0"};
    a.insert(a.end(), extra.begin(), extra.end());
    Result r = train(a, d / "err.txt");
    REQUIRE_MESSAGE(r.code == 0, r.err);
    return nlohmann::json::parse(read_file(d / (run + "/config.json")))["train"]["iters"].get<int64_t>();
  };
  CHECK(iters("plain", {}) == 6);
  CHECK(iters("big", {"--big"}) == 2);
  CHECK(iters("big_iters", {"--big", "--iters", "3"}) == 3);
  write_file_atomic(d / "big.json", R"({"train": {"net": {"big": true}}})");
  CHECK(iters("big_file", {"--config", d / "big.json"}) == 2);
  write_file_atomic(d / "iters.json", R"({"train": {"iters": 4}})");
  CHECK(iters("big_file_iters", {"--big", "--config", d / "iters.json"}) == 4);
}

TEST_CASE("a NaN loss stops training with the stage and step, and no non-finite weight is written") {
  TempDir d;
  write_pairs(d / "data", 6);
  Result r = train({d / "data", "--out", d / "run", "--device", "cpu", "--nan-at", "3", "--val-images", "0"}, d / "err.txt");
  CHECK(r.code == 1);
  CHECK_MESSAGE(r.err.find("stage main, step 3: the loss is nan") != std::string::npos, r.err);
  CHECK_FALSE(file_exists(d / "run/toy.safetensors"));
  SafeTensors st = load_safetensors(d / "run/train_state.safetensors");  // the checkpoint of step 2
  CHECK(st.metadata["stage_step"] == "2");
  for (auto& entry : st.tensors)
    for (float v : entry.second.to_vector()) REQUIRE_MESSAGE(std::isfinite(v), entry.first);
}

TEST_CASE("trainer options are parsed strictly") {
  TempDir d;
  write_pairs(d / "data", 4);
  Result r = train({d / "data", "--out", d / "run", "--iters", "-1"}, d / "err.txt");
  CHECK(r.code == 1);
  CHECK(r.err.find("option --iters must be between 0 and") != std::string::npos);
  r = train({d / "data", "--out", d / "run2", "--lr", "nan"}, d / "err.txt");
  CHECK(r.code == 1);
  CHECK(r.err.find("option --lr must be between") != std::string::npos);
  r = train({d / "data", "--out", d / "run3", "--recipe", "tpu"}, d / "err.txt");
  CHECK(r.code == 1);
  CHECK(r.err.find("--recipe must be cpu or gpu") != std::string::npos);
  r = train({d / "data", "--out", d / "run4", "--iters", "4294967297"}, d / "err.txt");
  CHECK(r.code == 1);
  r = train({d / "data", "--out", d / "run6", "--sharp-fraction", "0.9"}, d / "err.txt");
  CHECK(r.code == 1);
  CHECK(r.err.find("option --sharp-fraction must be between 0 and 0.5") != std::string::npos);
  r = train({d / "data", "--out", d / "run5", "--resume"}, d / "err.txt");
  CHECK(r.code == 1);
  CHECK(r.err.find("holds no training run") != std::string::npos);
}

}  // TEST_SUITE
