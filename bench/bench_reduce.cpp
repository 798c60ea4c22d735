// Reductions: sum and mean over 5.6 M elements (gs_fit's loss at 1680x1120), [N, C, H, W] -> [C] (bias and
// BatchNorm gradients; also with 8x8 maps), rows [N, C] -> [N] (long and short) and columns [N, C] -> [C]. One JSON line per case, median of
// repeats; bench/bench_reduce_torch.py does the same work in PyTorch.
//   bench_reduce [--device cpu|cuda] [--repeats N] [--threads N]
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>


#include "bench/bench_util.h"
#include "train/cli.h"
#include "ops/ops.h"

using namespace rf;

int main(int argc, char** argv) {
  return run_main("bench_reduce", [&] {
    Args a(argc, argv, "usage: bench_reduce [--device cpu|cuda] [--repeats 20] [--threads N]");
    const BenchFlags flags = bench_flags(a, 20);
    const std::string dev_name = flags.device;
    const int repeats = flags.repeats;
    a.check_all_used();
    Device dev = select_device(dev_name, false);
    Generator g(1);
    auto report = [&](const char* name, double ms) {
      std::printf("{\"name\": \"%s\", \"device\": \"%s\", \"ms\": %.4f}\n", name, dev_name.c_str(), ms);
      std::fflush(stdout);
    };
    // Each sample times kCalls back-to-back calls (one synchronize around them), so a ~10 us GPU reduction is
    // not drowned by the synchronize; the figure is per call.
    constexpr int kCalls = 10;
    auto time = [&](const char* name, const std::function<void()>& f) {
      report(name, median_ms([&] { for (int i = 0; i < kCalls; ++i) f(); }, repeats) / kCalls);
    };
    Tensor flat = rand({3 * 1120 * 1680}, dev, &g);
    time("sum 5.6M -> 1", [&] { sum(flat); });
    time("mean 5.6M -> 1", [&] { mean(flat); });
    Tensor nchw = rand({4, 64, 128, 128}, dev, &g);
    time("sum [4,64,128,128] -> [64]", [&] { sum(nchw, {0, 2, 3}); });
    time("mean [4,64,128,128] -> [64]", [&] { mean(nchw, {0, 2, 3}); });
    Tensor deep = rand({256, 64, 8, 8}, dev, &g);  // short runs of 64: the warp path on CUDA
    time("sum [256,64,8,8] -> [64]", [&] { sum(deep, {0, 2, 3}); });
    Tensor rows = rand({4096, 1368}, dev, &g);
    time("sum rows [4096,1368] -> [4096]", [&] { sum(rows, {1}); });
    time("mean rows [4096,1368] -> [4096]", [&] { mean(rows, {1}); });
    time("sum columns [4096,1368] -> [1368]", [&] { sum(rows, {0}); });
    Tensor short_rows = rand({1 << 20, 16}, dev, &g);  // rows of 16: the thread path on CUDA
    time("sum rows [1048576,16] -> [1048576]", [&] { sum(short_rows, {1}); });
    return 0;
  });
}
