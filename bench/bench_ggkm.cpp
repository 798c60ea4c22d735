// gkm and ggkm: inference at 1280x720 and one training step (batch 4, 256x256, the paper's loss) — the same
// work as bench/bench_ggkm_torch.py (PyTorch twin). One JSON line per case: median ms, peak memory.
//   bench_ggkm [--device cpu|cuda] [--repeats N] [--threads N] [--size small]
#include <cstdio>
#include <cstring>
#include <string>


#include "bench/bench_util.h"
#include "train/cli.h"
#include "engine/allocator.h"
#include "layers/optim.h"
#include "models/ggkm.h"
#include "ops/ops.h"

using namespace rf;

int main(int argc, char** argv) {
  return run_main("bench_ggkm", [&] {
    Args a(argc, argv, "usage: bench_ggkm [--device cpu|cuda] [--repeats 3] [--threads N] [--size small|full]");
    const BenchFlags flags = bench_flags(a, 3);
    const std::string dev_name = flags.device;
    const int repeats = flags.repeats;
    const std::string size_name = a.str("--size", "full");
    RF_CHECK(size_name == "small" || size_name == "full", "--size must be small or full, got ", size_name);
    const bool small = size_name == "small";
    a.check_all_used();
    Device dev = select_device(dev_name, false);
    Generator g(1);
    const int64_t ih = small ? 368 : 720, iw = small ? 640 : 1280, crop = small ? 128 : 256;
    for (const char* variant : {"gkm", "ggkm"}) {
      manual_seed(1);
      GgkmModel m(GgkmConfig::variant_defaults(variant));
      m.to(dev);
      Tensor x = rand({1, 3, ih, iw}, dev, &g);
      m.eval();
      host_reset_peak();
      cuda_reset_peak();
      double ms = median_ms([&] {
        NoGrad ng;
        m.deblur(x, Tensor(), Tensor());
      }, repeats);
      double peak = (dev == Device::CUDA ? cuda_alloc_stats().peak_allocated_bytes : host_alloc_stats().peak_allocated_bytes) / 1048576.0;
      std::printf("{\"name\": \"%s inference %lldx%lld\", \"device\": \"%s\", \"ms\": %.1f, \"peak_mib\": %.0f}\n", variant,
                  (long long)iw, (long long)ih, dev_name.c_str(), ms, peak);
      std::fflush(stdout);
      m.train();
      Adam opt(m.named_parameters(), AdamOptions{1e-4f});
      Batch b;
      b.input = rand({4, 3, crop, crop}, dev, &g);
      b.target = rand({4, 3, crop, crop}, dev, &g);
      ms = median_ms([&] {
        opt.zero_grad();
        m.loss(b, "main").total.backward();
        opt.step();
      }, repeats);
      std::printf("{\"name\": \"%s training step batch 4 %lldx%lld\", \"device\": \"%s\", \"ms\": %.1f}\n", variant,
                  (long long)crop, (long long)crop, dev_name.c_str(), ms);
      std::fflush(stdout);
    }
    return 0;
  });
}
