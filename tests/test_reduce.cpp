// Sums of every shape class against a float64 sum, on the CPU (bitwise the same whatever the thread count)
// and on CUDA (every path of the two-pass kernels, bitwise the same run to run; skipped without a GPU).
#ifdef _OPENMP
#include <omp.h>
#endif

#include <cmath>

#include "tests/harness.h"

using namespace rf;
using namespace rft;

namespace {

struct ReduceCase {
  const char* name;
  Shape shape;
  std::vector<int64_t> dims;  // empty: everything
};

// Every class the dispatch distinguishes (ops/reduce.cu names its paths after the innermost input dim, merged
// with its neighbours: reduced in a run >= 1024 -> block per part, 32..1023 -> warp per part, < 32 or kept ->
// thread per output), with single- and multi-part splits, tiny sizes and sizes that are not multiples of a block.
const std::vector<ReduceCase> kCases = {
    {"full 5.6M (block path, 1024 parts)", {5644800}, {}},
    {"full [4, 3, 700, 667]", {4, 3, 700, 667}, {}},
    {"NCHW -> C [4, 64, 96, 96] (block, inner split)", {4, 64, 96, 96}, {0, 2, 3}},
    {"[64, 4, 2048] -> [4] (block, rows and inner split)", {64, 4, 2048}, {0, 2}},
    {"rows [4096, 1368] -> [4096] (block, one part)", {4096, 1368}, {1}},
    {"rows [3, 100000] -> [3]", {3, 100000}, {1}},
    {"rows [5000, 100] -> [5000] (warp, one part)", {5000, 100}, {1}},
    {"NCHW -> C [256, 16, 8, 8] (warp, 16 parts)", {256, 16, 8, 8}, {0, 2, 3}},
    {"[300, 7, 33] -> [7] (warp, odd run)", {300, 7, 33}, {0, 2}},
    {"NCHW -> C [2000, 24, 2, 2] (thread, run 4)", {2000, 24, 2, 2}, {0, 2, 3}},
    {"rows [100000, 3] -> [100000] (thread)", {100000, 3}, {1}},
    {"columns [1368, 4096] -> [4096] (thread)", {1368, 4096}, {0}},
    {"columns [70000, 5] -> [5] (thread, 1024 parts)", {70000, 5}, {0}},
    {"columns [3, 9000] -> [9000]", {3, 9000}, {0}},
    {"middle [7, 9000, 11] -> [7, 11]", {7, 9000, 11}, {1}},
    {"NCHW -> NCW [2, 3, 500, 37] (kept inner, strided run)", {2, 3, 500, 37}, {2}},
    {"tiny [3, 1, 2] -> [3]", {3, 1, 2}, {1, 2}},
    {"tiny full [5]", {5}, {}},
    {"size-1 dim [5, 1] -> [5] (nothing summed)", {5, 1}, {1}},
    {"odd [33, 65, 129] -> [65]", {33, 65, 129}, {0, 2}},
};

// float64 sum over dims (all when dims is empty), in the order of the kept dims.
std::vector<double> reference(const Tensor& x, const std::vector<int64_t>& dims) {
  const Shape& shape = x.shape();
  std::vector<bool> red(shape.size(), dims.empty());
  for (int64_t d : dims) red[d] = true;
  Shape os;
  for (size_t d = 0; d < shape.size(); ++d)
    if (!red[d]) os.push_back(shape[d]);
  std::vector<double> out(shape_numel(os), 0.0);
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

// Worst |got - want| / (1 + |want|) over the outputs.
double worst_error(const Tensor& got, const std::vector<double>& want) {
  auto g = got.to_vector();
  REQUIRE(g.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(g[i] - want[i]) / (1.0 + std::fabs(want[i])));
  return worst;
}

}  // namespace

TEST_SUITE("reduce") {

TEST_CASE("CPU sums of every shape class equal a float64 sum, bitwise the same with 1, 2 or 3 threads") {
  uint64_t seed = 100;
  for (const auto& c : kCases) {
    Tensor x = uniform_input(c.shape, -1.f, 2.f, seed++);  // mean 0.5: sums do not cancel
    std::vector<double> want = reference(x, c.dims);
    Tensor got = reduce(x, c.dims);
    CHECK_MESSAGE(worst_error(got, want) < 1e-5, c.name << ": worst relative error " << worst_error(got, want));
    // mean = sum / count, on the same split
    const double count = (double)x.numel() / (double)want.size();
    Tensor m = c.dims.empty() ? mean(x) : mean(x, c.dims);
    std::vector<double> want_mean = want;
    for (double& w : want_mean) w /= count;
    CHECK_MESSAGE(worst_error(m, want_mean) < 1e-5, c.name << ": mean");
#ifdef _OPENMP
    // Threads only pick up fixed tasks: the bits may not depend on how many there are.
    int threads = omp_get_max_threads();
    std::vector<std::vector<float>> runs;
    for (int t : {1, 2, 3}) {
      omp_set_num_threads(t);
      runs.push_back(reduce(x, c.dims).to_vector());
    }
    omp_set_num_threads(threads);
    CHECK_MESSAGE(runs[0] == runs[1], c.name << ": 1 and 2 threads differ");
    CHECK_MESSAGE(runs[0] == runs[2], c.name << ": 1 and 3 threads differ");
    CHECK_MESSAGE(runs[0] == got.to_vector(), c.name << ": differs from the default thread count");
#endif
  }
  // A sum over an empty dim is zero (not left uninitialised).
  Tensor e = sum(zeros({0, 5}), {0});
  CHECK(e.to_vector() == std::vector<float>(5, 0.f));
}

TEST_CASE("CUDA sums of every shape class equal a float64 sum, and repeat bitwise") {
  if (!cuda_available()) {
    MESSAGE("reduce: CUDA checks skipped (" << cuda_description() << ")");
    return;
  }
  std::vector<ReduceCase> cases = kCases;
  // Outputs past the grid caps (65535 blocks in y for the block path, 65535 x 8 warps, 65535 x 256 threads):
  // the grid-stride loops must cover the rest.
  cases.push_back({"rows [70000, 1024] -> [70000] (block, > 65535 outputs)", {70000, 1024}, {1}});
  cases.push_back({"rows [600000, 40] -> [600000] (warp, > 524280 items)", {600000, 40}, {1}});
  cases.push_back({"rows [16800000, 2] -> [16800000] (thread, > 65535 x 256)", {16800000, 2}, {1}});
  uint64_t seed = 200;
  for (const auto& c : cases) {
    Tensor x = uniform_input(c.shape, -1.f, 2.f, seed++);
    std::vector<double> want = reference(x, c.dims);
    Tensor xg = x.cuda();
    Tensor a = reduce(xg, c.dims).cpu(), b = reduce(xg, c.dims).cpu();
    CHECK_MESSAGE(a.to_vector() == b.to_vector(), c.name << ": two CUDA runs differ");
    CHECK_MESSAGE(worst_error(a, want) < 1e-5, c.name << ": CUDA worst relative error " << worst_error(a, want));
    const double count = (double)x.numel() / (double)want.size();
    Tensor m = (c.dims.empty() ? mean(xg) : mean(xg, c.dims)).cpu();
    std::vector<double> want_mean = want;
    for (double& w : want_mean) w /= count;
    CHECK_MESSAGE(worst_error(m, want_mean) < 1e-5, c.name << ": CUDA mean");
  }
  Tensor e = sum(zeros({0, 5}, Device::CUDA), {0}).cpu();
  CHECK(e.to_vector() == std::vector<float>(5, 0.f));
  // Gradients still flow through the CUDA sum (backward is an expand).
  Tensor x = uniform_input({6, 40, 37}, -1.f, 2.f, 7);
  check_cuda_parity("sum over dims {0, 2}", [](const std::vector<Tensor>& in) { return sum(in[0], {0, 2}); }, {x});
  check_cuda_parity("mean over dim 1", [](const std::vector<Tensor>& in) { return mean(in[0], {1}); }, {x});
}

}  // TEST_SUITE
