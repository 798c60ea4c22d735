// Reductions: sum and mean over 5.6 M elements (gs_fit's loss at 1680x1120), [N, C, H, W] -> [C] (bias and
// BatchNorm gradients), rows [N, C] -> [N] and columns [N, C] -> [C]. One JSON line per case, median of
// repeats; bench/bench_reduce_torch.py does the same work in PyTorch.
//   bench_reduce [--device cpu|cuda] [--repeats N] [--threads N]
#include <cstdio>
#include <cstring>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench/bench_util.h"
#include "ops/ops.h"

using namespace rf;

int main(int argc, char** argv) {
  std::string dev_name = "cpu";
  int repeats = 20;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--device") && i + 1 < argc) dev_name = argv[++i];
    else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::atoi(argv[++i]);
#ifdef _OPENMP
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) omp_set_num_threads(std::atoi(argv[++i]));
#endif
  }
  try {
    Device dev = select_device(dev_name, false);
    Generator g(1);
    auto report = [&](const char* name, double ms) {
      std::printf("{\"name\": \"%s\", \"device\": \"%s\", \"ms\": %.4f}\n", name, dev_name.c_str(), ms);
      std::fflush(stdout);
    };
    Tensor flat = rand({3 * 1120 * 1680}, dev, &g);
    report("sum 5.6M -> 1", median_ms([&] { sum(flat); }, repeats));
    report("mean 5.6M -> 1", median_ms([&] { mean(flat); }, repeats));
    Tensor nchw = rand({4, 64, 128, 128}, dev, &g);
    report("sum [4,64,128,128] -> [64]", median_ms([&] { sum(nchw, {0, 2, 3}); }, repeats));
    Tensor rows = rand({4096, 1368}, dev, &g);
    report("sum rows [4096,1368] -> [4096]", median_ms([&] { sum(rows, {1}); }, repeats));
    report("sum columns [4096,1368] -> [1368]", median_ms([&] { sum(rows, {0}); }, repeats));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_reduce: %s\n", e.what());
    return 1;
  }
  return 0;
}
