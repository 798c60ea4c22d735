// Engine benchmarks: conv2d, GEMM, GELU and LayerNorm forward+backward. Prints one JSON line per case with the median
// time over repeats after warm-up; bench/bench_engine_torch.py does the same work in PyTorch.
//   bench_engine [--device cpu|cuda] [--repeats N] [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>


#include "bench/bench_util.h"
#include "train/cli.h"
#include "ops/ops.h"

using namespace rf;

int main(int argc, char** argv) {
  return run_main("bench_engine", [&] {
    Args a(argc, argv, "usage: bench_engine [--device cpu|cuda] [--repeats 5] [--threads N]");
    const BenchFlags flags = bench_flags(a, 5);
    const std::string dev_name = flags.device;
    const int repeats = flags.repeats;
    a.check_all_used();
    Device dev = select_device(dev_name);
    Generator g(1);
    {
      Tensor x = randn({4, 64, 256, 256}, dev, &g).set_requires_grad();
      Tensor w = (randn({64, 64, 3, 3}, dev, &g) * 0.05f).detach().set_requires_grad();
      Tensor b = zeros({64}, dev).set_requires_grad();
      Tensor gy = randn({4, 64, 256, 256}, dev, &g);
      double ms = median_ms([&] {
        x.zero_grad(); w.zero_grad(); b.zero_grad();
        conv2d(x, w, b, ConvOptions::make(1, 1)).backward(gy);
      }, repeats);
      std::printf("{\"name\": \"conv2d 3x3 64->64 256x256 batch 4, fwd+bwd\", \"device\": \"%s\", \"ms\": %.2f}\n",
                  dev_name.c_str(), ms);
    }
    {
      Tensor a = randn({1024, 1024}, dev, &g).set_requires_grad();
      Tensor bm = randn({1024, 1024}, dev, &g).set_requires_grad();
      Tensor gc = randn({1024, 1024}, dev, &g);
      double ms = median_ms([&] {
        a.zero_grad(); bm.zero_grad();
        matmul(a, bm).backward(gc);
      }, repeats * 4);
      std::printf("{\"name\": \"GEMM 1024^3, fwd+bwd\", \"device\": \"%s\", \"ms\": %.2f}\n", dev_name.c_str(), ms);
    }
    {  // a transformer MLP's activation (gs's deblurrer uses the exact erf form)
      Tensor x = randn({4096, 1024}, dev, &g).set_requires_grad();
      Tensor gy = randn({4096, 1024}, dev, &g);
      double ms = median_ms([&] {
        x.zero_grad();
        gelu(x).backward(gy);
      }, repeats * 4);
      std::printf("{\"name\": \"GELU (erf) 4096x1024, fwd+bwd\", \"device\": \"%s\", \"ms\": %.2f}\n", dev_name.c_str(), ms);
    }
    {  // LayerNorm over each token's features, as in gs's deblurrer (tokens of 96)
      Tensor x = randn({32768, 96}, dev, &g).set_requires_grad();
      Tensor w = (randn({96}, dev, &g) * 0.1f + 1.f).detach().set_requires_grad();
      Tensor b = (randn({96}, dev, &g) * 0.1f).detach().set_requires_grad();
      Tensor gy = randn({32768, 96}, dev, &g);
      double ms = median_ms([&] {
        x.zero_grad(); w.zero_grad(); b.zero_grad();
        layer_norm(x, -1, w, b).backward(gy);
      }, repeats * 4);
      std::printf("{\"name\": \"LayerNorm last dim, 32768 tokens x 96, fwd+bwd\", \"device\": \"%s\", \"ms\": %.2f}\n",
                  dev_name.c_str(), ms);
    }
    return 0;
  });
}
