// Reductions of every shape class against a float64 sum, bitwise the same whatever the CPU thread count,
// and the CUDA path (two-pass, deterministic) against the CPU (skipped without a GPU).
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tests/harness.h"

using namespace rf;
using namespace rft;

namespace {

struct ReduceCase {
  const char* name;
  Shape shape;
  std::vector<int64_t> dims;  // empty: everything
};

// Every class the GPU dispatch distinguishes: full, rows (innermost reduced), columns (innermost kept),
// [N, C, H, W] -> [C], tiny, sizes that are not multiples of a block.
const std::vector<ReduceCase> kCases = {
    {"full 5.6M", {5600000}, {}},
    {"full [4, 3, 700, 667]", {4, 3, 700, 667}, {}},
    {"NCHW -> C", {4, 64, 96, 96}, {0, 2, 3}},
    {"rows [4096, 1368] -> [4096]", {4096, 1368}, {1}},
    {"rows [3, 100000] -> [3]", {3, 100000}, {1}},
    {"columns [1368, 4096] -> [4096]", {1368, 4096}, {0}},
    {"columns [70000, 5] -> [5]", {70000, 5}, {0}},
    {"middle [7, 9000, 11] -> [7, 11]", {7, 9000, 11}, {1}},
    {"tiny [3, 1, 2]", {3, 1, 2}, {1, 2}},
    {"odd [33, 65, 129] -> [65]", {33, 65, 129}, {0, 2}},
};

// float64 reference of sum over dims.
std::vector<double> reference(const Tensor& x, const Shape& shape, const std::vector<int64_t>& dims, Shape* out_shape) {
  std::vector<bool> red(shape.size(), dims.empty());
  for (int64_t d : dims) red[d] = true;
  Shape os;
  for (size_t d = 0; d < shape.size(); ++d)
    if (!red[d]) os.push_back(shape[d]);
  *out_shape = os;
  std::vector<double> out(std::max<int64_t>(1, shape_numel(os)), 0.0);
  auto v = x.to_vector();
  auto st = contiguous_strides(shape);
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t o = 0, rem = (int64_t)i;
    for (size_t d = 0; d < shape.size(); ++d) {
      int64_t c = rem / st[d];
      rem %= st[d];
      if (!red[d]) o = o * shape[d] + c;
    }
    out[o] += v[i];
  }
  return out;
}

Tensor reduce(const Tensor& x, const std::vector<int64_t>& dims) { return dims.empty() ? sum(x) : sum(x, dims); }

}  // namespace

TEST_SUITE("reduce") {

TEST_CASE("sums of every shape class equal a float64 sum, bitwise the same with 1 or 2 threads") {
  uint64_t seed = 100;
  for (const auto& c : kCases) {
    Tensor x = uniform_input(c.shape, -1.f, 2.f, seed++);
    Shape os;
    std::vector<double> want = reference(x, c.shape, c.dims, &os);
    Tensor got = reduce(x, c.dims);
    REQUIRE_MESSAGE(got.numel() == (int64_t)want.size(), c.name);
    auto g = got.to_vector();
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(g[i] - want[i]) / (1.0 + std::fabs(want[i])));
    CHECK_MESSAGE(worst < 1e-5, c.name << ": worst relative error " << worst);
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    Tensor one = reduce(x, c.dims);
    omp_set_num_threads(2);
    Tensor two = reduce(x, c.dims);
    omp_set_num_threads(threads);
    CHECK_MESSAGE(one.to_vector() == two.to_vector(), c.name << ": depends on the thread count");
#endif
    // mean = sum / count
    if (c.dims.empty()) CHECK(std::fabs(mean(x).item() - want[0] / (double)x.numel()) < 1e-5 * (1 + std::fabs(want[0])));
  }
}

TEST_CASE("CUDA sums of every shape class equal the CPU's, and repeat bitwise") {
  if (!cuda_available()) {
    MESSAGE("reduce: CUDA checks skipped (" << cuda_description() << ")");
    return;
  }
  uint64_t seed = 200;
  for (const auto& c : kCases) {
    Tensor x = uniform_input(c.shape, -1.f, 2.f, seed++);
    Tensor cpu_sum = reduce(x, c.dims), xg = x.cuda();
    Tensor a = reduce(xg, c.dims).cpu(), b = reduce(xg, c.dims).cpu();
    CHECK_MESSAGE(a.to_vector() == b.to_vector(), c.name << ": two CUDA runs differ");
    auto av = a.to_vector(), cv = cpu_sum.to_vector();
    double worst = 0;
    for (size_t i = 0; i < av.size(); ++i) worst = std::max(worst, std::fabs((double)av[i] - cv[i]) / (1.0 + std::fabs(cv[i])));
    CHECK_MESSAGE(worst < 1e-4, c.name << ": CUDA vs CPU worst relative error " << worst);
  }
  // Reductions over an empty dim give zeros.
  Tensor e = sum(zeros({0, 5}, Device::CUDA), {0}).cpu();
  CHECK(e.to_vector() == std::vector<float>(5, 0.f));
}

}  // TEST_SUITE
