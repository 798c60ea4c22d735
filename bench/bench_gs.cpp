// gs benchmarks: the blob rasterizer (forward + backward), a 600-iteration fit, and fused attention.
// One JSON line per case (median time); bench/bench_gs_torch.py does the same work in straightforward PyTorch.
//   bench_gs [--device cpu|cuda] [--repeats N] [--fit-iters 600] [--threads N] [--image PNG]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>


#include "data/image.h"
#include "data/synth.h"
#include "models/gs.h"
#include "ops/attention.h"
#include "bench/bench_util.h"
#include "train/cli.h"
#include "ops/ops.h"

using namespace rf;

// The same random blobs as bench_gs_torch.py draws them (uniform ranges; the values need not match).
static Blobs random_blobs(int64_t n, int64_t h, int64_t w, Device d) {
  Generator g(7);
  Tensor u = rand({n, 2}, d, &g) * from_vector({(float)w, (float)h}, {1, 2}, d);
  Blobs b{u.detach(), uniform({n}, 0.f, 3.14159f, d, &g), uniform({n, 2}, 0.5f, 3.f, d, &g),
          uniform({n, 3}, 0.f, 0.5f, d, &g), uniform({n}, 0.2f, 1.f, d, &g)};
  for (Tensor* t : {&b.means, &b.theta, &b.scales, &b.colors, &b.opacity}) t->set_requires_grad(true);
  return b;
}

int main(int argc, char** argv) {
  return run_main("bench_gs", [&] {
    Args a(argc, argv, "usage: bench_gs [--device cpu|cuda] [--repeats 5] [--threads N] [--fit-iters 600] [--image FILE]");
    const BenchFlags flags = bench_flags(a, 5);
    const std::string dev_name = flags.device;
    const int repeats = flags.repeats;
    const int fit_iters = (int)a.integer("--fit-iters", 600, 1, 1000000);
    const std::string image = a.str("--image", "");
    a.check_all_used();
    Device dev = select_device(dev_name);
    const bool gpu = dev == Device::CUDA;
    struct RasterCase { int64_t n, h, w; };
    std::vector<RasterCase> raster = gpu ? std::vector<RasterCase>{{70000, 512, 768}, {470400, 1120, 1680}}
                                         : std::vector<RasterCase>{{16384, 256, 256}};
    for (auto c : raster) {
      Blobs b = random_blobs(c.n, c.h, c.w, dev);
      Tensor gimg = randn({3, c.h, c.w}, dev);
      double ms = median_ms([&] {
        for (Tensor* t : {&b.means, &b.theta, &b.scales, &b.colors, &b.opacity}) t->zero_grad();
        rasterize(b, c.h, c.w).backward(gimg);
      }, repeats);
      std::printf("{\"name\": \"rasterize fwd+bwd %lld blobs %lldx%lld\", \"device\": \"%s\", \"ms\": %.2f}\n",
                  (long long)c.n, (long long)c.w, (long long)c.h, dev_name.c_str(), ms);
    }
    {
      int64_t s = gpu ? 1120 : 256, sw = gpu ? 1680 : 256;
      SynthOptions so;
      so.height = s;
      so.width = sw;
      Tensor img = image.empty() ? make_synth_sample(so, 0).source
                                 : slice(slice(read_image(image), 1, 0, s), 2, 0, sw);
      img = img.to(dev);
      FitOptions fo;
      fo.iters = fit_iters;
      FitResult r;
      double ms = median_ms([&] { r = fit_blobs(img, Tensor(), analytic_init(img, 2), fo); }, 1);
      std::printf("{\"name\": \"gs fit %d iterations %lldx%lld, 1 blob per 2x2\", \"device\": \"%s\", \"ms\": %.1f, "
                  "\"psnr\": %.2f}\n", fit_iters, (long long)sw, (long long)s, dev_name.c_str(), ms, r.psnr);
    }
    {
      int64_t n = gpu ? 65536 : 4096;
      Generator g(3);
      Tensor q = randn({1, 4, n, 16}, dev, &g).set_requires_grad(), k = randn({1, 4, n, 16}, dev, &g).set_requires_grad(),
             v = randn({1, 4, n, 16}, dev, &g).set_requires_grad(), go = randn({1, 4, n, 16}, dev, &g);
      double ms = median_ms([&] {
        q.zero_grad(); k.zero_grad(); v.zero_grad();
        attention(q, k, v).backward(go);
      }, repeats);
      std::printf("{\"name\": \"attention fwd+bwd N=%lld, 4 heads x 16\", \"device\": \"%s\", \"ms\": %.2f}\n",
                  (long long)n, dev_name.c_str(), ms);
    }
    return 0;
  });
}
