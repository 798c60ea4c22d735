// jdrl (paper 004): the fused isotropic reblurring op against the naive composition, by finite differences and
// CUDA parity.
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "ops/isotropic_reblur.h"
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

}  // TEST_SUITE
