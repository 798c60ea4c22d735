// End to end on the CPU: a small conv net learns a toy deblurring task, and stopping at a checkpoint and
// resuming gives exactly the step that not stopping gives.
#include <unistd.h>

#include <filesystem>

#include "layers/layers.h"
#include "tests/harness.h"
#include "layers/checkpoint.h"
#include "layers/optim.h"

using namespace rf;
using namespace rft;

namespace {

// Sharp = random image smoothed a little; blurry = sharp convolved with an invertible 3x3 blur.
struct ToyTask {
  Tensor blur_kernel = from_vector({0.05f, 0.1f, 0.05f, 0.1f, 0.4f, 0.1f, 0.05f, 0.1f, 0.05f}, {1, 1, 3, 3});
  std::pair<Tensor, Tensor> batch(int64_t step) const {
    NoGrad ng;
    Generator g(1000 + (uint64_t)step);
    Tensor sharp = conv2d(rand({8, 1, 20, 20}, Device::CPU, &g), full({1, 1, 2, 2}, 0.25f), Tensor());
    Tensor blurry = conv2d(pad2d(sharp, 1, 1, 1, 1, PadMode::Replicate), blur_kernel, Tensor());
    return {blurry, sharp};
  }
};

struct ToyNet : UnaryModule {
  std::shared_ptr<Sequential> body;
  ToyNet() {
    ConvOptions same = ConvOptions::make(1, 1);
    body = register_module("body", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                       std::make_shared<Conv2d>(1, 16, 3, same), std::make_shared<Activation>(Act::ReLU),
                                       std::make_shared<Conv2d>(16, 16, 3, same), std::make_shared<Activation>(Act::ReLU),
                                       std::make_shared<Conv2d>(16, 1, 3, same)}));
  }
  Tensor forward(const Tensor& x) override { return x + body->forward(x); }
};

float train_step(ToyNet& net, Optimizer& opt, const ToyTask& task, int64_t step) {
  auto [blurry, sharp] = task.batch(step);
  opt.zero_grad();
  Tensor loss = mean(square(net.forward(blurry) - sharp));
  loss.backward();
  opt.step();
  return loss.item();
}

}  // namespace

TEST_SUITE("train") {

TEST_CASE("a small conv net learns a toy deblurring task: loss falls 10x within 300 steps") {
  manual_seed(1);
  ToyTask task;
  ToyNet net;
  AdamOptions o;
  o.lr = 3e-3f;
  Adam opt(net.named_parameters(), o);
  float first = 0, last = 0;
  for (int64_t s = 0; s < 300; ++s) {
    float l = train_step(net, opt, task, s);
    if (s < 10) first += l / 10;
    if (s >= 290) last += l / 10;
  }
  MESSAGE("toy task: mean loss of the first 10 steps " << first << ", of the last 10 " << last);
  CHECK(last * 10 < first);
}

TEST_CASE("checkpoint save -> load -> continue gives the same next step as not stopping") {
  ToyTask task;
  auto dir = std::filesystem::temp_directory_path() / ("refocus_resume_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  AdamOptions o;
  o.lr = 3e-3f;
  manual_seed(2);
  ToyNet a;
  Adam opt_a(a.named_parameters(), o);
  for (int64_t s = 0; s < 5; ++s) train_step(a, opt_a, task, s);
  save_checkpoint((dir / "model.safetensors").string(), a, CheckpointInfo{"toy", {}, 5});
  opt_a.save((dir / "optim.safetensors").string());
  float uninterrupted = train_step(a, opt_a, task, 5);
  float after = train_step(a, opt_a, task, 6);

  manual_seed(99);  // a different initialisation, overwritten by the checkpoint
  ToyNet b;
  Adam opt_b(b.named_parameters(), o);
  CheckpointInfo info = load_checkpoint((dir / "model.safetensors").string(), b);
  opt_b.load((dir / "optim.safetensors").string());
  CHECK(info.step == 5);
  float resumed = train_step(b, opt_b, task, 5);
  float resumed_after = train_step(b, opt_b, task, 6);
  CHECK(resumed == uninterrupted);  // bit-identical on the CPU
  CHECK(resumed_after == after);
  std::filesystem::remove_all(dir);
}

}  // TEST_SUITE
