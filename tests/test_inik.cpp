// inik (paper 003): the fused inverse-filtering op (against the unfused composition, finite differences, CUDA
// parity, peak memory), the INR atoms, the PyTorch twin of INIKNet through `forward` and `convert`.
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "engine/allocator.h"
#include "models/registry.h"
#include "ops/inverse_filter.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;
namespace fs = std::filesystem;

namespace {

struct Case {
  InverseFilterShape shape;
  std::vector<Tensor> inputs;  // x, kernels, mu, omega, weight, bias
};

Case small_case(int64_t b, int64_t h, int64_t w, uint64_t seed) {
  Case c;
  c.shape.sizes = {3, 5};
  c.shape.bases = 2;
  const int64_t groups = 2, ch = 3, n = 2;
  c.inputs = {uniform_input({b, ch, h, w}, 0.f, 1.f, seed),
              uniform_input({c.shape.kernel_floats()}, -0.5f, 0.5f, seed + 1),
              uniform_input({b, groups + 1, h, w}, 0.f, 1.f, seed + 2),
              uniform_input({b, n, h, w}, -1.f, 1.f, seed + 3),
              uniform_input({3, (groups + 1) * ch * n}, -0.5f, 0.5f, seed + 4),
              uniform_input({3}, -0.2f, 0.2f, seed + 5)};
  return c;
}

OpFn fused(const InverseFilterShape& s) {
  return [s](const std::vector<Tensor>& x) { return inverse_filter(x[0], x[1], s, x[2], x[3], x[4], x[5]); };
}

}  // namespace

TEST_SUITE("inik") {

TEST_CASE("fused inverse filtering equals the unfused composition, forward and every gradient") {
  Case c = small_case(2, 9, 13, 10);
  std::vector<Tensor> a, b;
  for (auto& t : c.inputs) {
    a.push_back(t.clone().set_requires_grad());
    b.push_back(t.clone().set_requires_grad());
  }
  Tensor f = inverse_filter(a[0], a[1], c.shape, a[2], a[3], a[4], a[5]);
  Tensor u = inverse_filter_unfused(b[0], b[1], c.shape, b[2], b[3], b[4], b[5]);
  CHECK(f.shape() == Shape{2, 3, 9, 13});
  CHECK(rel_err(f, u) < 1e-5);
  Tensor g = uniform_input(f.shape(), -1.f, 1.f, 20);
  f.backward(g);
  u.backward(g);
  const char* names[] = {"x", "kernels", "mu", "omega", "weight", "bias"};
  for (int i = 0; i < 6; ++i) CHECK_MESSAGE(rel_err(a[i].grad(), b[i].grad()) < 1e-5, "gradient of " << names[i]);
  check_gradients("inverse_filter", fused(c.shape), c.inputs);
  check_cuda_parity("inverse_filter", fused(c.shape), c.inputs, 1e-4);
  Case d = small_case(1, 16, 7, 30);  // a kernel wider than the image
  check_cuda_parity("inverse_filter (narrow)", fused(d.shape), d.inputs, 1e-4);
  // 1,517 pixels: the CUDA backward sums over two pixel chunks, the last one short.
  Case e = small_case(1, 37, 41, 40);
  check_cuda_parity("inverse_filter (two chunks)", fused(e.shape), e.inputs, 1e-4);
}

TEST_CASE("forward on inik reproduces the PyTorch twin of INIKNet at all three scales, convert --official too") {
  auto dir = fs::temp_directory_path() / ("refocus_inik_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  run_twin_script("twin_inik.py", dir.string());
  check_twin_forward("inik", (dir / "inik_twin.safetensors").string(), dir.string());
  // A released checkpoint: the same names, the shared frequency under both keys, BGR colours.
  check_twin_forward("inik", (dir / "inik_official_twin.safetensors").string(), dir.string(), 1e-4, true);
  fs::remove_all(dir);
}

TEST_CASE("inik has the released parameter count, the shared frequencies counted once") {
  auto m = make_model("inik");
  MESSAGE("inik: " << m->num_parameters() << " parameters (released INIKNet: 1,976,847; paper: 1.98 M)");
  CHECK(m->num_parameters() == 1976847);
  int64_t names = 0;
  for (auto& [n, t] : m->state_dict()) names += n.find(".w0") != std::string::npos;
  CHECK(names == 20);  // 10 atoms x 2 names each, as the released state dict
}

}  // TEST_SUITE
