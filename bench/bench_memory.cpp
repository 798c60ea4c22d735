// Peak memory of training workloads, one per process: bench/bench_memory_torch.py runs the same work in
// PyTorch, measured the same way (all but gs, reblur and the fused inverse filter; PyTorch has no fused form of the
// last two, and its inverse_filter_unfused is the released INIKNet's way).
//   bench_memory --case adds|unet|gs|reblur|reblur_unfused|inverse_filter|inverse_filter_unfused [--device cpu|cuda]
//                [--threads N] [--size HxW]
// Prints JSON lines {name, phase, device, peak_mib, alive_mib, rss_growth_mib, ms}, each phase measured from the
// same start (the forward line is printed when the loss exists, before backward):
//   peak_mib        refocus's own count of tensor bytes at the peak, over what was allocated at the start
//                   (host tensors on the CPU, the CUDA allocator's figure on the GPU);
//   alive_mib       tensor bytes alive at the end of the phase, over the start: after the forward, what the tape
//                   keeps for backward (plus the loss);
//   rss_growth_mib  growth of the process's peak resident set (the kernel's VmHWM, reset through
//                   /proc/self/clear_refs) over the resident set at the start, after malloc_trim(0) has handed
//                   every freed heap page back to the kernel: without it a heap that keeps freed blocks (ours
//                   does, see engine/allocator.cpp) reuses the warm-up step's pages and shows no growth at all;
//   ms              wall time from the start to the end of the phase.
//   adds: x (64 MiB, requires grad); y = x; 10 times y = y + x (the way PyTorch keeps memory lowest: only the
//         newest sum is referenced); the forward phase, then sum(y).backward(). A tape that keeps every node's
//         inputs alive holds all ten intermediates.
//   unet: one training step (forward, backward, Adam) of a 3-level U-Net (32/64/128), batch 4, 3x128x128,
//         after one warm-up step (Adam's state and the libraries' buffers exist before the measured step) and
//         zero_grad (which drops the gradients: they are made again in the measured backward).
//   gs:   one training step of gs's blob deblurrer (3 blocks, width 64, windows of 256) on 16,384 blobs
//         rendered at 128x128, MSE, AdamW, after one warm-up step and zero_grad.
//   reblur, reblur_unfused: jdrl's reblurring operator (ops/isotropic_reblur.h) forward and backward on one image
//         (--size, default 1120x1680, DPDD's), fused against the naive composition that materialises every
//         pixel's kernels and taps (its peak grows with the pixel count: run it smaller and scale).
//   inverse_filter, inverse_filter_unfused: inik's inverse filtering (ops/inverse_filter.h) forward and backward
//         of sum(out^2) on one image (--size, default 1120x1680) with inik's shapes (7 groups of 3...15 px, 10
//         atoms, mu over 8 groups, the 240 -> 3 mix), fused against the composition with the (1, 240, H, W)
//         tensor the released code holds. bench_memory_torch.py --case inverse_filter_unfused is that code's way.
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "bench/bench_util.h"
#include "engine/allocator.h"
#include "layers/layers.h"
#include "layers/losses.h"
#include "layers/optim.h"
#include "models/gs.h"
#include "models/inik.h"
#include "ops/inverse_filter.h"
#include "ops/isotropic_reblur.h"
#include "ops/ops.h"

using namespace rf;

namespace {

// Resident set now and its peak (kB), from /proc/self/status.
long status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::strlen(key)));
  return -1;
}

struct Peak {
  Device dev = Device::CPU;
  long base_kb = 0;
  size_t base_bytes = 0;
  std::chrono::steady_clock::time_point t0;
  size_t tensor_bytes_now() const {
    return dev == Device::CUDA ? cuda_alloc_stats().allocated_bytes : host_alloc_stats().allocated_bytes;
  }
  void start() {
    synchronize();
    malloc_trim(0);                                   // freed heap pages back to the kernel
    std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current resident set
    base_kb = status_kb("VmRSS:");
    host_reset_peak();
    cuda_reset_peak();
    base_bytes = tensor_bytes_now();
    t0 = std::chrono::steady_clock::now();
  }
  double ms() const {
    synchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  double rss_mib() const { return (status_kb("VmHWM:") - base_kb) / 1024.0; }
  double alive_mib() const { return (double(tensor_bytes_now()) - double(base_bytes)) / 1048576.0; }
  double tensors_mib() const {
    size_t peak = dev == Device::CUDA ? cuda_alloc_stats().peak_allocated_bytes : host_alloc_stats().peak_allocated_bytes;
    return (double(peak) - double(base_bytes)) / 1048576.0;
  }
};

void print(const char* name, const char* phase, const Peak& p) {
  double ms = p.ms();
  std::printf("{\"name\": \"%s\", \"phase\": \"%s\", \"device\": \"%s\", \"peak_mib\": %.1f, "
              "\"alive_mib\": %.1f, \"rss_growth_mib\": %.1f, \"ms\": %.1f}\n",
              name, phase, device_name(p.dev), p.tensors_mib(), p.alive_mib(), p.rss_mib(), ms);
  std::fflush(stdout);
}

struct UNet : Module {
  std::shared_ptr<Sequential> enc1, down1, down2, up2, dec1, head;
  std::shared_ptr<ConvTranspose2d> up1;
  static std::shared_ptr<Sequential> convs(std::vector<std::array<int64_t, 3>> l) {  // {in, out, stride}
    auto s = std::make_shared<Sequential>();
    for (auto [in, out, st] : l) {
      s->push_back(std::make_shared<Conv2d>(in, out, 3, ConvOptions::make(st, 1)));
      s->push_back(std::make_shared<Activation>(Act::ReLU));
    }
    return s;
  }
  UNet() {
    enc1 = register_module("enc1", convs({{3, 32, 1}, {32, 32, 1}}));
    down1 = register_module("down1", convs({{32, 64, 2}, {64, 64, 1}}));
    down2 = register_module("down2", convs({{64, 128, 2}, {128, 128, 1}}));
    up2 = register_module("up2", std::make_shared<Sequential>());
    up2->push_back(std::make_shared<ConvTranspose2d>(128, 64, 4, ConvOptions::make(2, 1)));
    up1 = register_module("up1", std::make_shared<ConvTranspose2d>(128, 32, 4, ConvOptions::make(2, 1)));
    dec1 = register_module("dec1", convs({{64, 32, 1}}));
    head = register_module("head", std::make_shared<Sequential>());
    head->push_back(std::make_shared<Conv2d>(32, 3, 3, ConvOptions::make(1, 1)));
  }
  Tensor forward(const Tensor& x) {
    Tensor e1 = enc1->forward(x), d1 = down1->forward(e1), d2 = down2->forward(d1);
    Tensor u2 = relu(up2->forward(d2));
    Tensor u1 = relu(up1->forward(concat({u2, d1}, 1)));
    return x + head->forward(dec1->forward(concat({u1, e1}, 1)));
  }
};

}  // namespace

int main(int argc, char** argv) {
  return run_main("bench_memory", [&] {
    Args a(argc, argv, "usage: bench_memory [--device cpu|cuda] [--threads N] [--case NAME]");
    const BenchFlags flags = bench_flags(a, 1);
    const std::string dev_name = flags.device;
    const std::string which = a.str("--case", "adds");
    const std::string size = a.str("--size", "1120x1680");
    a.check_all_used();
    Device dev = select_device(dev_name, false);
    Generator g(1);
    Peak p;
    p.dev = dev;
    if (which == "adds") {
      Tensor x = randn({16 << 20}, dev, &g).set_requires_grad();  // 64 MiB
      p.start();
      Tensor y = x;
      for (int i = 0; i < 10; ++i) y = y + x;
      print("10 chained adds of 64 MiB", "forward", p);
      sum(y).backward();
      print("10 chained adds of 64 MiB", "forward+backward", p);
    } else if (which == "unet") {
      manual_seed(1);
      UNet net;
      net.to(dev);
      Adam opt(net.named_parameters(), AdamOptions{1e-4f});
      Tensor x = rand({4, 3, 128, 128}, dev, &g), t = rand({4, 3, 128, 128}, dev, &g);
      const char* name = "U-Net training step, batch 4, 128x128";
      auto step = [&](bool report) {
        Tensor loss = mse_loss(net.forward(x), t);
        if (report) print(name, "forward", p);
        loss.backward();
        loss = Tensor();
        opt.step();
        if (report) print(name, "step", p);
      };
      step(false);  // Adam's state exists from here on
      opt.zero_grad();
      p.start();
      step(true);
    } else if (which == "gs") {
      manual_seed(1);
      GsConfig c;
      c.window = 256;
      BlobDeblurrer deblurrer(c);
      deblurrer.to(dev);
      AdamOptions ao;
      ao.weight_decay = 1e-2f;
      AdamW opt(deblurrer.named_parameters(), ao);
      const int64_t n = 16384, side = 128;
      Blobs b{rand({n, 2}, dev, &g) * (float)side, rand({n}, dev, &g) * 3.f, rand({n, 2}, dev, &g) * 2.f + 0.5f,
              rand({n, 3}, dev, &g) * 0.3f, rand({n}, dev, &g)};
      Tensor target = rand({3, side, side}, dev, &g), d2 = rand({n}, dev, &g);
      Tensor d1 = full({1}, 0.5f, dev), log_k = full({1}, -3.f, dev);
      const char* name = "gs deblurrer training step, 16384 blobs, 128x128";
      auto step = [&](bool report) {
        Tensor loss = mse_loss(rasterize(deblurrer.forward(b, d2, d1, log_k, side, side), side, side), target);
        if (report) print(name, "forward", p);
        loss.backward();
        loss = Tensor();
        opt.step();
        if (report) print(name, "step", p);
      };
      step(false);
      opt.zero_grad();
      p.start();
      step(true);
    } else if (which == "reblur" || which == "reblur_unfused") {
      int64_t h = 0, w = 0;
      RF_CHECK(std::sscanf(size.c_str(), "%ldx%ld", &h, &w) == 2 && h > 0 && w > 0, "--size must be HxW, got '", size, "'");
      Tensor sharp = rand({1, 3, h, w}, dev, &g).set_requires_grad();
      Tensor seeds = randn({1, kReblurSeeds, h, w}, dev, &g).set_requires_grad();
      Tensor maps = randn({1, kReblurSizes + 1, h, w}, dev, &g).set_requires_grad();
      const bool fused = which == "reblur";
      const std::string name = cat("jdrl reblur ", fused ? "fused" : "unfused", ", 3x", h, "x", w);
      p.start();
      Tensor m = softmax(maps, 1);
      Tensor out = fused ? isotropic_reblur(sharp, seeds, m) : isotropic_reblur_unfused(sharp, seeds, m);
      Tensor loss = sum(out * out);
      print(name.c_str(), "forward", p);
      loss.backward();
      print(name.c_str(), "forward+backward", p);
    } else if (which == "inverse_filter" || which == "inverse_filter_unfused") {
      int64_t h = 0, w = 0;
      RF_CHECK(std::sscanf(size.c_str(), "%ldx%ld", &h, &w) == 2 && h > 0 && w > 0, "--size must be HxW, got '", size, "'");
      const InverseFilterShape shape = InikConfig().filter_shape();  // inik's default network
      const int64_t groups = (int64_t)shape.sizes.size();
      Tensor x = rand({1, 3, h, w}, dev, &g).set_requires_grad();
      Tensor kernels = (randn({shape.kernel_floats()}, dev, &g) * 0.1f).detach().set_requires_grad();
      Tensor logits = randn({1, groups + 1, h, w}, dev, &g).set_requires_grad();
      Tensor omega = randn({1, shape.bases, h, w}, dev, &g).set_requires_grad();
      Tensor weight = (randn({3, (groups + 1) * 3 * shape.bases}, dev, &g) * 0.05f).detach().set_requires_grad();
      Tensor bias = zeros({3}, dev).set_requires_grad();
      const bool fused = which == "inverse_filter";
      const std::string name = cat("inik inverse filter ", fused ? "fused" : "unfused", ", 3x", h, "x", w);
      p.start();
      Tensor mu = softmax(logits, 1);
      Tensor out = fused ? inverse_filter(x, kernels, shape, mu, omega, weight, bias)
                         : inverse_filter_unfused(x, kernels, shape, mu, omega, weight, bias);
      Tensor loss = sum(out * out);
      print(name.c_str(), "forward", p);
      loss.backward();
      print(name.c_str(), "forward+backward", p);
    } else {
      throw Error(cat("unknown --case ", which,
                      " (adds, unet, gs, reblur, reblur_unfused, inverse_filter, inverse_filter_unfused)"));
    }
    return 0;
  });
}
