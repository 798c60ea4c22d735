// gkm / ggkm / ggkm+ (paper 001): the separable kernel-bank op (dense oracle, PyTorch's dense conv2d,
// finite differences, CUDA parity), the GKMNet PyTorch twin through `forward` (both bank orders), parameter
// counts, GGKMNet's identity start and gradients, and ggkm+'s growth from ggkm's depth (its cpu recipe).
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "engine/fileio.h"
#include "engine/safetensors.h"
#include "models/ggkm.h"
#include "models/registry.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;
namespace fs = std::filesystem;

namespace {

void run_twin(const TempDir& d) { run_twin_script("twin_ggkm.py", d.path.string()); }

BankPlan gkm_plan(bool official) {
  BankPlan p;
  for (int32_t j = 0; j < 66; ++j) {
    p.channel.push_back(j / 22);
    p.kernel.push_back(official ? j / 3 : j % 22);
  }
  return p;
}

// A small grouped bank: a delta and 2 groups of 3 Gaussians, on 2 channels, with random mixing weights.
KernelBank small_grouped_bank() { return ggkm_bank(2, 3); }
BankPlan small_grouped_plan() {
  BankPlan p;
  p.q = 3;
  for (int32_t c = 0; c < 2; ++c)
    for (int32_t g = 0; g < 3; ++g) {
      p.channel.push_back(c);
      for (int32_t q = 0; q < 3; ++q) p.kernel.push_back(g == 0 ? 0 : 1 + (g - 1) * 3 + q);
    }
  return p;
}

}  // namespace

TEST_SUITE("ggkm") {

TEST_CASE("kernel bank: separable passes equal the dense kernels, gradients, CUDA parity") {
  // GKMNet's 22 kernels on every colour (no weights).
  KernelBank bank = gkm_bank();
  CHECK(bank.taps.size() == 22);
  CHECK(bank.taps[1].size() == 3);
  CHECK(bank.taps[21].size() == 21);
  Tensor x = uniform_input({2, 3, 12, 17}, 0.f, 1.f, 1);
  for (bool official : {false, true}) {
    BankPlan plan = gkm_plan(official);
    Tensor sep = kernel_bank(x, bank, plan), dense = kernel_bank_dense_reference(x, bank, plan, Tensor());
    CHECK(sep.shape() == Shape{2, 66, 12, 17});
    CHECK(rel_err(sep, dense) < 1e-5);
  }
  // Mixed kernels with per-image weights: output, and gradients in x and the weights.
  KernelBank gb = small_grouped_bank();
  BankPlan gp = small_grouped_plan();
  Tensor xs = uniform_input({2, 2, 9, 14}, -1.f, 1.f, 2), ws = uniform_input({2, 6, 3}, 0.f, 1.f, 3);
  CHECK(rel_err(kernel_bank(xs, gb, gp, ws), kernel_bank_dense_reference(xs, gb, gp, ws)) < 1e-5);
  auto mixed = [&](const std::vector<Tensor>& in) { return kernel_bank(in[0], gb, gp, in[1]); };
  check_gradients("kernel_bank (mixed)", mixed, {xs, ws});
  check_cuda_parity("kernel_bank (mixed)", mixed, {xs, ws});
  // 70 x 65 = 4,550 pixels a plane: the CUDA weight gradient's reduction sums in more than one part.
  Tensor xl = uniform_input({1, 2, 70, 65}, -1.f, 1.f, 5), wl = uniform_input({1, 6, 3}, 0.f, 1.f, 6);
  check_cuda_parity("kernel_bank (mixed, large planes)", mixed, {xl, wl});
  // An asymmetric kernel: the adjoint runs with flipped taps.
  KernelBank odd;
  odd.taps = {{0.1f, 0.6f, 0.3f}, {0.2f, -0.1f, 0.5f, 0.3f, 0.1f}};
  BankPlan op;
  op.channel = {0, 1, 0};
  op.kernel = {0, 1, 1};
  auto plain = [&](const std::vector<Tensor>& in) { return kernel_bank(in[0], odd, op); };
  Tensor xo = uniform_input({1, 2, 7, 8}, -1.f, 1.f, 4);
  CHECK(rel_err(plain({xo}), kernel_bank_dense_reference(xo, odd, op, Tensor())) < 1e-5);
  check_gradients("kernel_bank (asymmetric)", plain, {xo});
  check_cuda_parity("kernel_bank (asymmetric)", plain, {xo});
}

TEST_CASE("kernel bank equals PyTorch's dense 21x21 depthwise conv of the released GKMNet bank, with gradients") {
  TempDir d;
  run_twin(d);
  SafeTensors st = load_safetensors(d / "gkm_bank_twin.safetensors");
  Tensor x = st.tensors["x"].clone().set_requires_grad();
  Tensor out = kernel_bank(x, gkm_bank(), gkm_plan(false));
  double e = rel_err(out, st.tensors["out"]);
  MESSAGE("kernel bank vs PyTorch dense conv2d: forward relative error " << e);
  CHECK(e < 1e-5);
  out.backward(st.tensors["gout"]);
  CHECK(rel_err(x.grad(), st.tensors["grad_x"]) < 1e-5);
}

TEST_CASE("forward on gkm reproduces the PyTorch twin of GKMNet at all three scales, both bank orders") {
  TempDir d;
  run_twin(d);
  check_twin_forward("gkm", d / "gkm_intended_twin.safetensors", d.path.string());
  // The official route: a state dict under the released names -> convert --official -> forward.
  check_twin_forward("gkm", d / "gkm_official_twin.safetensors", d.path.string(), 1e-4, true);
}

TEST_CASE("forward on ggkm reproduces its PyTorch twin (group mixtures computed densely there) at all three scales") {
  TempDir d;
  run_twin(d);
  check_twin_forward("ggkm", d / "ggkm_twin.safetensors", d.path.string());
}

TEST_CASE("forward on ggkm+ reproduces its PyTorch twin (7 residual blocks in every backbone block)") {
  TempDir d;
  run_twin(d);
  check_twin_forward("ggkm+", d / "ggkm+_twin.safetensors", d.path.string());
}

TEST_CASE("parameter counts of gkm, ggkm and ggkm+") {
  auto count = [](const char* n) { return static_cast<GgkmModel&>(*make_model(n)).inference_parameters(); };
  int64_t gkm = count("gkm"), ggkm = count("ggkm"), plus = count("ggkm+");
  MESSAGE("parameters: gkm " << gkm << " (released GKMNet: 1,409,131), ggkm " << ggkm << " (paper: 1.68 M), ggkm+ " << plus
                             << " (paper: 5.93 M); the SRM (training only) is not counted");
  CHECK(gkm == 1409131);
  CHECK(ggkm > gkm);
  CHECK(plus > 5000000);
}

TEST_CASE("ggkm starts as the identity, and its loss reaches every parameter") {
  manual_seed(7);
  GgkmConfig c = GgkmConfig::variant_defaults("ggkm");
  c.groups = 4;  // a small bank keeps the test fast
  GgkmModel m(c);
  m.eval();
  Tensor x = uniform_input({1, 3, 32, 48}, 0.f, 1.f, 5);
  {
    NoGrad ng;
    CHECK(max_abs_diff(m.deblur(x, Tensor(), Tensor()), x) < 1e-6);
  }
  m.train();
  Batch b;
  b.input = x;
  b.target = clamp(x + 0.1f * uniform_input(x.shape(), -1.f, 1.f, 6), 0.f, 1.f);
  // One step away from the zero start, then every parameter gets a gradient.
  LossTerms l = m.loss(b, "main");
  l.total.backward();
  Tensor w = m.named_parameters().back().second;
  for (auto& [n, p] : m.named_parameters()) {
    Tensor t = p;
    if (n == "SumLayer.conv.weight") t.copy_(uniform_input(t.shape(), -0.1f, 0.1f, 8));
    t.zero_grad();
  }
  m.loss(b, "main").total.backward();
  int missing = 0;
  for (auto& [n, p] : m.named_parameters())
    if (!p.grad().defined() || max_abs_diff(p.grad(), zeros_like(p.grad())) == 0) {
      missing++;
      MESSAGE("no gradient: " << n);
    }
  CHECK(missing == 0);
  CHECK(std::isfinite(l.total.item()));
}

TEST_CASE("ggkm+ grown from ggkm's depth: the extra blocks join near the identity, then learn") {
  manual_seed(11);
  GgkmConfig c = GgkmConfig::variant_defaults("ggkm+");
  c.groups = 4;      // a small bank and
  c.res_blocks = 3;  // two extra blocks per BFE block keep the test fast
  GgkmModel m(c);
  for (auto& [n, p] : m.named_parameters())  // away from the identity start, so the output shows the BFE
    if (n == "SumLayer.conv.weight") Tensor(p).copy_(uniform_input(p.shape(), -0.1f, 0.1f, 8));
  Tensor x = uniform_input({1, 3, 32, 48}, 0.f, 1.f, 5);
  auto output = [&] {
    NoGrad ng;
    m.eval();
    Tensor y = m.deblur(x, Tensor(), Tensor());
    m.train();
    return y;
  };
  auto gradients_of_extra_blocks = [&](bool extra) {
    Batch b;
    b.input = x;
    b.target = clamp(x + 0.1f * uniform_input(x.shape(), -1.f, 1.f, 6), 0.f, 1.f);
    for (auto& [n, p] : m.named_parameters()) Tensor(p).zero_grad();
    m.loss(b, "main").total.backward();
    int with = 0, without = 0;
    for (auto& [n, p] : m.named_parameters()) {
      if (GgkmModel::extra_block_parameter(n) != extra) continue;
      const bool has = p.grad().defined() && max_abs_diff(p.grad(), zeros_like(p.grad())) > 0;
      (has ? with : without)++;
    }
    return std::pair<int, int>{with, without};
  };

  m.run_extra_blocks(false);
  Tensor shallow = output();
  m.run_extra_blocks(true);
  const float with_random_blocks = max_abs_diff(output(), shallow);
  m.start_extra_blocks_near_identity();
  const float grown = max_abs_diff(output(), shallow);
  MESSAGE("the shallow network's output moves by " << grown << " when the extra blocks join near the identity, by "
                                                   << with_random_blocks << " with their initial weights");
  CHECK(with_random_blocks > 1e-2f);
  CHECK(grown < 0.05f * with_random_blocks);
  CHECK(grown > 0.f);
  // (the losses below update BatchNorm's running statistics, so they come after the outputs are compared)
  m.run_extra_blocks(false);
  CHECK(gradients_of_extra_blocks(true).first == 0);    // idle blocks are out of the graph
  CHECK(gradients_of_extra_blocks(false).second == 0);  // the rest all learn
  m.run_extra_blocks(true);
  auto [with, without] = gradients_of_extra_blocks(true);
  CHECK(without == 0);  // every parameter of the joined blocks learns from the first step
  CHECK(with > 0);
}

}  // TEST_SUITE
