// Every network at its paper configuration: parameters, MACs of one forward at 1280x720, inference time at a given
// size, peak tensor memory of inference at 1680x1120 (optional: slow on 2 cores), and one training step (batch 4,
// forward + L1 + backward + Adam) — beside bench/bench_networks_torch.py (the PyTorch twins of tests/golden doing
// the same work). One JSON line per case.
//   bench_networks [--device cpu|cuda] [--models gkm,ggkm,sft,inik,jdrl,jdrl_restormer] [--size 720x1280] [--crop 128]
//                  [--repeats 1] [--threads N] [--peak] [--training-only]
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>


#include "bench/bench_util.h"
#include "train/cli.h"
#include "engine/allocator.h"
#include "layers/losses.h"
#include "layers/optim.h"
#include "models/ggkm.h"
#include "models/jdrl.h"
#include "models/registry.h"
#include "ops/macs.h"
#include "ops/ops.h"

using namespace rf;

int main(int argc, char** argv) {
  return run_main("bench_networks", [&] {
    Args a(argc, argv, "usage: bench_networks [--device cpu|cuda] [--repeats 1] [--threads N] [--models gkm,ggkm,sft,inik,jdrl] [--size 720x1280]\n"
      "                      [--crop 128] [--peak] [--training-only]", {"--peak", "--training-only"});
    const BenchFlags flags = bench_flags(a, 1);
    const std::string dev_name = flags.device;
    const int repeats = flags.repeats;
    const std::string models = a.str("--models", "gkm,ggkm,sft,inik,jdrl"), size = a.str("--size", "720x1280");
    const int64_t crop = a.integer("--crop", 128, 16, 4096);
    const bool peak = a.flag("--peak");
    const bool training_only = a.flag("--training-only");  // the step alone: no MAC count, inference or peak
    a.check_all_used();
    Device dev = select_device(dev_name, false);
    int64_t ih = 0, iw = 0;
    char rest = 0;
    RF_CHECK(std::sscanf(size.c_str(), "%ldx%ld%c", &ih, &iw, &rest) == 2 && ih >= 16 && iw >= 16 && ih % 16 == 0 &&
                 iw % 16 == 0 && ih <= 16384 && iw <= 16384,
             "--size must be HxW, each side a multiple of 16, got ", size);
    std::stringstream list(models);
    std::string name;
    while (std::getline(list, name, ',')) {
      manual_seed(1);
      Generator g(1);
      // jdrl_restormer: jdrl with the stock Restormer backbone (the paper's best).
      auto m = name == "jdrl_restormer" ? make_model("jdrl", {{"backbone", "restormer"}}) : make_model(name);
      m->to(dev);
      m->eval();
      int64_t params = m->num_parameters();
      if (auto* gg = dynamic_cast<GgkmModel*>(m.get())) params = gg->inference_parameters();
      if (auto* jd = dynamic_cast<JdrlModel*>(m.get())) params = jd->inference_parameters();
      if (!training_only) {
        int64_t macs = 0;
        {
          NoGrad ng;
          MacCounter counter;
          m->deblur(rand({1, 3, 720, 1280}, dev, &g), Tensor(), Tensor());
          macs = counter.total();
        }
        Tensor x = rand({1, 3, ih, iw}, dev, &g);
        double ms = median_ms([&] {
          NoGrad ng;
          m->deblur(x, Tensor(), Tensor());
        }, repeats);
        std::printf("{\"name\": \"%s inference %lldx%lld\", \"device\": \"%s\", \"ms\": %.1f, \"parameters\": %lld, \"gmacs_1280x720\": %.1f}\n",
                    name.c_str(), (long long)iw, (long long)ih, dev_name.c_str(), ms, (long long)params, macs / 1e9);
        std::fflush(stdout);
        if (peak) {
          host_reset_peak();
          cuda_reset_peak();
          const size_t before = dev == Device::CUDA ? cuda_alloc_stats().allocated_bytes : host_alloc_stats().allocated_bytes;
          {
            NoGrad ng;
            m->deblur(rand({1, 3, 1120, 1680}, dev, &g), Tensor(), Tensor());
          }
          const size_t p = dev == Device::CUDA ? cuda_alloc_stats().peak_allocated_bytes : host_alloc_stats().peak_allocated_bytes;
          std::printf("{\"name\": \"%s peak memory 1680x1120\", \"device\": \"%s\", \"peak_mib\": %.0f}\n", name.c_str(),
                      dev_name.c_str(), (double)(p - before) / 1048576.0);
          std::fflush(stdout);
        }
      }
      m->train();
      Adam opt(m->named_parameters(), AdamOptions{1e-4f});
      Tensor xb = rand({4, 3, crop, crop}, dev, &g), tb = rand({4, 3, crop, crop}, dev, &g);
      const double ms = median_ms([&] {
        opt.zero_grad();
        l1_loss(m->deblur(xb, Tensor(), Tensor()), tb).backward();
        opt.step();
      }, repeats);
      std::printf("{\"name\": \"%s training step batch 4 %lldx%lld\", \"device\": \"%s\", \"ms\": %.1f}\n", name.c_str(),
                  (long long)crop, (long long)crop, dev_name.c_str(), ms);
      std::fflush(stdout);
    }
    return 0;
  });
}
