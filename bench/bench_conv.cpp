// The CPU's two paths for a 3x3 stride-1 convolution, pass by pass: the im2col GEMM and Winograd F(2x2, 3x3)
// (ops/winograd.cpp), on the shapes the networks use. One JSON line per shape, pass and path (median after warm-up);
// bench/bench_conv_torch.py times the same passes in PyTorch. CPU only: the GPU runs cuDNN.
//   bench_conv [--repeats N] [--threads N] [--shapes NxCxH[xW],...]
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "ops/conv_impl.h"
#include "ops/ops.h"

using namespace rf;

int main(int argc, char** argv) {
  return run_main("bench_conv", [&] {
    Args a(argc, argv, "usage: bench_conv [--repeats 5] [--threads N] [--shapes 4x32x128,4x64x256,4x256x32,4x512x16,1x64x368x640]");
    const BenchFlags flags = bench_flags(a, 5);
    const std::string shapes = a.str("--shapes", "4x32x128,4x64x256,4x256x32,4x512x16,1x64x368x640");
    a.check_all_used();
    if (flags.device != "cpu") throw Error("bench_conv: --device must be cpu (the GPU path is cuDNN's)");
    std::stringstream list(shapes);
    std::string item;
    while (std::getline(list, item, ',')) {
      int64_t n = 0, c = 0, h = 0, w = 0;
      const int got = std::sscanf(item.c_str(), "%ldx%ldx%ldx%ld", &n, &c, &h, &w);
      if (got < 3 || n < 1 || c < 1 || h < 1) throw Error(cat("bench_conv: --shapes: '", item, "' is not NxCxH[xW]"));
      if (got == 3) w = h;
      Generator gen(1);
      Tensor x = randn({n, c, h, w}, Device::CPU, &gen), k = randn({c, c, 3, 3}, Device::CPU, &gen) * 0.05f;
      Tensor gy = randn({n, c, h, w}, Device::CPU, &gen), y = zeros({n, c, h, w}), gx = zeros({n, c, h, w});
      Tensor gk = zeros({c, c, 3, 3});
      const ConvGeometry g{n, c, h, w, c, h, w, 3, 3, 1, 1, 1, 1, 1, 1, 1};
      const std::string name = cat("conv 3x3 ", c, "->", c, " ", h, "x", w, " batch ", n);
      // The path conv2d takes (Winograd) under the name the PyTorch twin also prints; the im2col path beside it.
      auto report = [&](const char* pass, const char* path, double ms) {
        const bool im2col = std::string(path) == "im2col";
        std::printf("{\"name\": \"%s %s%s\", \"path\": \"%s\", \"device\": \"cpu\", \"ms\": %.2f}\n", name.c_str(), pass,
                    im2col ? ", im2col" : "", path, ms);
        std::fflush(stdout);
      };
      report("forward", "im2col", median_ms([&] { cpu::conv2d_forward_im2col(g, x.data(), k.data(), nullptr, y.data()); }, flags.repeats));
      report("forward", "winograd", median_ms([&] { cpu::winograd_forward(g, x.data(), k.data(), nullptr, y.data()); }, flags.repeats));
      report("data gradient", "im2col", median_ms([&] { cpu::conv2d_backward_data_im2col(g, gy.data(), k.data(), gx.data()); }, flags.repeats));
      report("data gradient", "winograd", median_ms([&] { cpu::winograd_backward_data(g, gy.data(), k.data(), gx.data()); }, flags.repeats));
      report("weight gradient", "im2col", median_ms([&] { cpu::conv2d_backward_weight_im2col(g, x.data(), gy.data(), gk.data()); }, flags.repeats));
      report("weight gradient", "winograd", median_ms([&] { cpu::winograd_backward_weight(g, x.data(), gy.data(), gk.data()); }, flags.repeats));
    }
    return 0;
  });
}
