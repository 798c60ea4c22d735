// Every op x several shapes x every device, in one table (ggml's habit): each row is an op and the input
// shapes it is tried on (odd sizes, batch > 1, non-square, size-1 dims); each case runs a finite-difference
// check of the CPU path and a CPU<->CUDA parity check of forward and backward (skipped, with a message,
// without a GPU). The custom ops (rasterizer, attention) are also compared with naive oracles here.
// PyTorch golden comparisons stay in test_ops.cpp. Cases whose every gradient is zero (a softmax over one
// element, attention windows of one token) are left out: parity compares by relative error, which needs a
// non-zero reference, and finite differences of a constant prove nothing.
#include <cmath>

#include "ops/attention.h"
#include "ops/attention_impl.h"
#include "ops/vector_math.h"
#include "ops/gauss_raster.h"
#include "ops/kernel_bank.h"
#include "ops/separable.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;

namespace {

struct Row {
  std::string op;
  OpFn f;
  std::vector<std::vector<Shape>> cases;  // the input shapes of each case
  float lo = -1.f, hi = 1.f;             // input values
  bool kinked = false;                    // piecewise-linear: inputs kept away from 0 and a small FD step
  std::vector<int> skip = {};             // inputs without gradients
  double parity_tol = 1e-4;
  double fd_tol = 1e-2;
  double fd_eps = 1e-2;
};

int g_cases = 0;  // for the seeds

void run(const std::vector<Row>& rows) {
  for (const Row& r : rows) {
    int k = 0;
    for (const auto& shapes : r.cases) {
      g_cases++;
      std::vector<Tensor> in;
      uint64_t seed = 1000 + 17 * (uint64_t)g_cases;
      for (const Shape& s : shapes)
        in.push_back(r.kinked ? input_away_from_zero(s, r.lo, r.hi, 0.05f, seed++) : uniform_input(s, r.lo, r.hi, seed++));
      std::string name = r.op + " case " + std::to_string(k++);
      GradCheck gc;
      gc.skip = r.skip;
      gc.tol = r.fd_tol;
      gc.eps = r.fd_eps;
      if (r.kinked) {
        gc.eps = 1e-3;
        gc.tol = std::max(r.fd_tol, 2e-2);
      }
      check_gradients(name, r.f, in, gc);
      check_cuda_parity(name, r.f, in, r.parity_tol, r.skip);
    }
  }
}

using S = std::vector<Shape>;

// --- the rasterizer's oracle: Eq. 4 pixel by pixel over every blob, Sigma inverted explicitly --------------

Tensor naive_render(const Blobs& b, int64_t h, int64_t w, double sigmas) {
  auto m = b.means.to_vector(), th = b.theta.to_vector(), s = b.scales.to_vector(), c = b.colors.to_vector(),
       o = b.opacity.to_vector();
  std::vector<double> img(3 * h * w, 0.0);
  for (int64_t i = 0; i < b.size(); ++i) {
    double ct = std::cos(th[i]), st = std::sin(th[i]), s1 = s[2 * i], s2 = s[2 * i + 1];
    double sxx = s1 * s1 * ct * ct + s2 * s2 * st * st, syy = s1 * s1 * st * st + s2 * s2 * ct * ct;
    double sxy = (s1 * s1 - s2 * s2) * ct * st, det = sxx * syy - sxy * sxy;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        double dx = x + 0.5 - m[2 * i], dy = y + 0.5 - m[2 * i + 1];
        double q = (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det;
        if (q > sigmas * sigmas) continue;
        for (int k = 0; k < 3; ++k) img[k * h * w + y * w + x] += c[3 * i + k] * o[i] * std::exp(-0.5 * q);
      }
  }
  return from_vector(std::vector<float>(img.begin(), img.end()), {3, h, w});
}

OpFn raster_fn(int64_t h, int64_t w, float sigmas) {
  return [=](const std::vector<Tensor>& x) { return rasterize(Blobs{x[0], x[1], x[2], x[3], x[4]}, h, w, sigmas); };
}

std::vector<Tensor> as_inputs(const Blobs& b) { return {b.means, b.theta, b.scales, b.colors, b.opacity}; }

// --- attention's oracle: softmax(Q K^T / sqrt(D)) V with every score stored, window by window ---------------
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3);
  if (window == 0 || window > n) window = n;
  std::vector<Tensor> parts;
  for (int64_t s = 0; s < n; s += window) {
    int64_t e = std::min(n, s + window);
    Tensor qs = slice(q, 2, s, e).reshape({b * h, e - s, d}), ks = slice(k, 2, s, e).reshape({b * h, e - s, d});
    Tensor vs = slice(v, 2, s, e).reshape({b * h, e - s, d});
    Tensor p = softmax(matmul(qs, ks, false, true) * (1.f / std::sqrt((float)d)), -1);
    parts.push_back(matmul(p, vs).reshape({b, h, e - s, d}));
  }
  return concat(parts, 2);
}

// --- kernel bank: two mixed kernels per output plane, an asymmetric and a one-tap kernel among them --------
KernelBank table_bank() {
  KernelBank b;
  b.taps = {{0.1f, 0.6f, 0.3f}, {0.2f, -0.1f, 0.5f, 0.3f, 0.1f}, {0.9f}};
  return b;
}
BankPlan table_plan(int64_t q) {
  BankPlan p;
  p.q = q;
  p.channel = {0, 1, 1};
  const std::vector<int32_t> all = {0, 1, 1, 2, 2, 0};
  for (int64_t j = 0; j < 3; ++j)
    for (int64_t i = 0; i < q; ++i) p.kernel.push_back(all[j * 2 + i]);
  return p;
}

}  // namespace

std::vector<Row> elementwise_rows() {
  return std::vector<Row>{
      {"add", [](auto& x) { return x[0] + x[1]; }, {S{{2, 3, 5}, {2, 3, 5}}, S{{2, 3, 4, 5}, {3, 1, 5}}, S{{1}, {7, 1}}}},
      {"sub", [](auto& x) { return x[0] - x[1]; }, {S{{3, 7}, {7}}, S{{1, 4, 1}, {5, 1, 6}}}},
      {"mul", [](auto& x) { return x[0] * x[1]; }, {S{{2, 9, 3}, {2, 9, 3}}, S{{4, 1, 3, 3}, {2, 1, 1}}}},
      {"div", [](auto& x) { return x[0] / x[1]; }, {S{{5, 3}, {5, 3}}, S{{2, 3, 4}, {4}}}, 0.5f, 2.f},
      {"maximum", [](auto& x) { return maximum(x[0], x[1]); }, {S{{3, 5}, {3, 5}}, S{{2, 3, 1}, {1, 4}}}, -1, 1, true},
      {"minimum", [](auto& x) { return minimum(x[0], x[1]); }, {S{{3, 5}, {1, 5}}}, -1, 1, true},
      {"neg", [](auto& x) { return neg(x[0]); }, {S{{4, 1, 3}}}},
      {"exp", [](auto& x) { return exp(x[0]); }, {S{{3, 5, 7}}, S{{1}}}},
      {"log", [](auto& x) { return log(x[0]); }, {S{{4, 9}}, S{{2, 1, 3}}}, 0.3f, 3.f},
      {"sqrt", [](auto& x) { return sqrt(x[0]); }, {S{{4, 9}}}, 0.3f, 3.f},
      {"pow", [](auto& x) { return pow(x[0], 1.7f); }, {S{{6, 5}}, S{{1, 1, 3}}}, 0.3f, 3.f},
      {"square", [](auto& x) { return square(x[0]); }, {S{{2, 3, 5}}}},
      {"abs", [](auto& x) { return abs(x[0]); }, {S{{5, 7}}}, -1, 1, true},
      {"clamp", [](auto& x) { return clamp(x[0], -0.4f, 0.6f); }, {S{{5, 7}}, S{{2, 2, 3, 3}}}, -1, 1, true},
      {"relu", [](auto& x) { return relu(x[0]); }, {S{{5, 7}}, S{{2, 3, 4, 5}}}, -1, 1, true},
      {"leaky_relu", [](auto& x) { return leaky_relu(x[0], 0.2f); }, {S{{5, 7}}}, -1, 1, true},
      {"sigmoid", [](auto& x) { return sigmoid(x[0]); }, {S{{3, 11}}}, -4, 4},
      {"tanh", [](auto& x) { return tanh(x[0]); }, {S{{3, 11}}}, -3, 3},
      {"sin", [](auto& x) { return sin(x[0]); }, {S{{3, 11}}}, -4, 4},
      {"cos", [](auto& x) { return cos(x[0]); }, {S{{3, 11}}}, -4, 4},
      {"gelu", [](auto& x) { return gelu(x[0]); }, {S{{3, 11}}}, -3, 3},
      {"softplus", [](auto& x) { return softplus(x[0]); }, {S{{3, 11}}}, -3, 3},
      {"affine", [](auto& x) { return affine(x[0], -1.5f, 0.25f); }, {S{{2, 7, 3}}}},
  };
}

std::vector<Row> reduction_rows() {
  return std::vector<Row>{
      {"sum all", [](auto& x) { return sum(x[0]); }, {S{{3, 4, 5}}, S{{1, 1}}, S{{1001}}}},
      {"sum dims", [](auto& x) { return sum(x[0], {0, 2}); }, {S{{3, 4, 5}}, S{{2, 1, 7, 3}}}},
      {"sum last dim keepdim", [](auto& x) { return sum(x[0], {-1}, true); }, {S{{2, 3, 5}}, S{{4, 1}}}},
      {"mean all", [](auto& x) { return mean(x[0]); }, {S{{3, 5, 2}}, S{{1}}}},
      {"mean keepdim", [](auto& x) { return mean(x[0], {1, 3}, true); }, {S{{2, 3, 4, 5}}, S{{1, 9, 1, 2}}}},
      // A reduced dim of size 1: the maximum is the element itself.
      {"max dim", [](auto& x) { return max(x[0], 1); }, {S{{3, 6, 4}}, S{{2, 5}}, S{{4, 1, 3}}}, -1, 1, true},
      {"sum_to", [](auto& x) { return sum_to(x[0], {3, 1}); }, {S{{2, 3, 5}}}},
      {"expand", [](auto& x) { return expand(x[0], {4, 3, 5}); }, {S{{3, 1}}, S{{1, 5}}}},
      {"softmax", [](auto& x) { return softmax(x[0], 1); }, {S{{3, 7, 2}}, S{{1, 6, 1}}}, -2, 2},
      {"log_softmax", [](auto& x) { return log_softmax(x[0], -1); }, {S{{4, 9}}, S{{2, 3, 5}}}, -2, 2},
  };
}

std::vector<Row> matmul_rows() {
  return std::vector<Row>{
      {"matmul", [](auto& x) { return matmul(x[0], x[1]); }, {S{{5, 7}, {7, 3}}, S{{2, 4, 3}, {2, 3, 6}}, S{{1, 1}, {1, 5}}}},
      {"matmul shared", [](auto& x) { return matmul(x[0], x[1]); }, {S{{3, 5, 4}, {4, 2}}}},
      {"matmul transposed", [](auto& x) { return matmul(x[0], x[1], true, true); }, {S{{7, 5}, {3, 7}}, S{{2, 4, 3}, {2, 6, 4}}}},
      {"linear", [](auto& x) { return linear(x[0], x[1], x[2]); }, {S{{5, 7}, {3, 7}, {3}}, S{{2, 3, 4}, {6, 4}, {6}}}},
  };
}

std::vector<Row> conv_rows() {
  auto conv = [](ConvOptions o) { return [o](const std::vector<Tensor>& x) { return conv2d(x[0], x[1], x[2], o); }; };
  auto convt = [](ConvOptions o) {
    return [o](const std::vector<Tensor>& x) { return conv_transpose2d(x[0], x[1], x[2], o); };
  };
  ConvOptions strided = ConvOptions::make(2, 1), dilated = ConvOptions::make(1, 2, 2), grouped = ConvOptions::make(1, 1, 1, 2);
  ConvOptions asym;
  asym.stride_h = 2;
  asym.pad_w = 2;
  ConvOptions up_out = ConvOptions::make(2, 1);
  up_out.output_pad_h = up_out.output_pad_w = 1;
  return std::vector<Row>{
      // The 1x1 image with padding 1: only the centre tap meets the image.
      {"conv2d 3x3 same", conv(ConvOptions::make(1, 1)),
       {S{{2, 3, 7, 9}, {4, 3, 3, 3}, {4}}, S{{1, 1, 5, 5}, {2, 1, 3, 3}, {2}}, S{{3, 2, 1, 1}, {2, 2, 3, 3}, {2}}}},
      {"conv2d stride 2", conv(strided), {S{{2, 2, 9, 8}, {3, 2, 3, 3}, {3}}, S{{1, 3, 1, 6}, {2, 3, 3, 3}, {2}}}},
      {"conv2d dilation 2", conv(dilated), {S{{1, 2, 10, 7}, {2, 2, 3, 3}, {2}}, S{{3, 1, 5, 6}, {2, 1, 3, 3}, {2}}}},
      {"conv2d groups 2", conv(grouped), {S{{2, 4, 6, 5}, {6, 2, 3, 3}, {6}}}},
      {"conv2d depthwise", conv(ConvOptions::make(1, 1, 1, 3)), {S{{2, 3, 5, 7}, {3, 1, 3, 3}, {3}}}},
      {"conv2d 1x5 asymmetric stride and padding", conv(asym), {S{{2, 3, 7, 5}, {2, 3, 1, 5}, {2}}}},
      {"conv2d no bias", [](auto& x) { return conv2d(x[0], x[1], Tensor(), ConvOptions::make(1, 2)); }, {S{{1, 2, 6, 7}, {3, 2, 5, 5}}}},
      {"conv_transpose2d k4 s2", convt(ConvOptions::make(2, 1)), {S{{2, 3, 4, 5}, {3, 2, 4, 4}, {2}}}},
      {"conv_transpose2d output padding", convt(up_out), {S{{1, 2, 3, 4}, {2, 3, 3, 3}, {3}}}},
      // conv_transpose2d weights are [Cin, Cout/groups, kh, kw].
      {"conv_transpose2d groups 2", convt(ConvOptions::make(2, 0, 1, 2)), {S{{2, 4, 3, 5}, {4, 3, 3, 3}, {6}}}},
      {"conv_transpose2d dilation 2", convt(ConvOptions::make(1, 1, 2)),
       {S{{1, 2, 4, 3}, {2, 3, 3, 3}, {3}}, S{{2, 1, 1, 1}, {1, 2, 3, 3}, {2}}}},
  };
}

std::vector<Row> misc_rows() {
  KernelBank bank = table_bank();
  BankPlan plan1 = table_plan(1), plan2 = table_plan(2);
  return std::vector<Row>{
      {"max_pool2d", [](auto& x) { return max_pool2d(x[0], 2, 2); }, {S{{2, 3, 6, 8}}, S{{1, 1, 5, 7}}, S{{3, 1, 2, 2}}}, -1, 1, true},
      {"max_pool2d padded", [](auto& x) { return max_pool2d(x[0], 3, 2, 1); }, {S{{1, 2, 7, 6}}}, -1, 1, true},
      {"avg_pool2d", [](auto& x) { return avg_pool2d(x[0], 2, 2); }, {S{{2, 3, 6, 8}}, S{{3, 1, 4, 2}}}},
      {"avg_pool2d 3 stride 1", [](auto& x) { return avg_pool2d(x[0], 3, 1, 1); }, {S{{1, 2, 5, 7}}}},
      {"global_avg_pool", [](auto& x) { return global_avg_pool(x[0]); }, {S{{2, 3, 5, 4}}, S{{1, 1, 3, 1}}}},
      {"layer_norm channels", [](auto& x) { return layer_norm(x[0], 1, x[1], x[2]); },
       {S{{2, 5, 3, 4}, {5}, {5}}, S{{1, 3, 1, 5}, {3}, {3}}}},
      // Rows of 6 (all tail), 9 (one block of eight lanes and a tail), 20 (two blocks and a tail).
      {"layer_norm last", [](auto& x) { return layer_norm(x[0], -1, x[1], x[2]); },
       {S{{3, 7, 6}, {6}, {6}}, S{{1, 9}, {9}, {9}}, S{{2, 3, 20}, {20}, {20}}}},
      {"layer_norm last, no affine", [](auto& x) { return layer_norm(x[0], -1, Tensor(), Tensor()); }, {S{{4, 17}}}},
      {"batch_norm training",
       [](auto& x) {
         Tensor rm = zeros({x[0].size(1)}, x[0].device()), rv = ones({x[0].size(1)}, x[0].device());
         return batch_norm(x[0], rm, rv, x[1], x[2], true);
       },
       {S{{4, 3, 5, 6}, {3}, {3}}, S{{2, 2, 1, 3}, {2}, {2}}}},
      // From a 1x1 image every output pixel is the one input pixel.
      {"resize_bilinear", [](auto& x) { return resize_bilinear(x[0], 11, 7); }, {S{{2, 3, 5, 4}}, S{{1, 1, 9, 12}}, S{{1, 2, 1, 1}}}},
      {"resize_bilinear corners", [](auto& x) { return resize_bilinear(x[0], 9, 13, true); }, {S{{1, 2, 5, 7}}}},
      {"upsample_nearest", [](auto& x) { return upsample_nearest(x[0], 10, 9); }, {S{{2, 2, 5, 3}}, S{{1, 1, 1, 4}}}},
      // Bilinear sampling is piecewise in the grid (kinks at pixel boundaries): a small step.
      {"grid_sample", [](auto& x) { return grid_sample(x[0], x[1]); }, {S{{2, 3, 6, 7}, {2, 4, 5, 2}}, S{{2, 1, 4, 3}, {2, 1, 1, 2}}},
       -0.9f, 0.9f, false, {}, 1e-4, 2e-2, 1e-3},
      {"grid_sample border corners", [](auto& x) { return grid_sample(x[0], x[1], true, GridPadding::Border); },
       {S{{1, 2, 5, 8}, {1, 3, 3, 2}}}, -0.9f, 0.9f, false, {}, 1e-4, 2e-2, 1e-3},
      {"pad2d zeros", [](auto& x) { return pad2d(x[0], 1, 2, 3, 0, PadMode::Zeros); }, {S{{2, 3, 4, 5}}, S{{1, 1, 1, 1}}}},
      {"pad2d reflect", [](auto& x) { return pad2d(x[0], 2, 1, 1, 3, PadMode::Reflect); }, {S{{1, 2, 5, 4}}}},
      {"pad2d replicate", [](auto& x) { return pad2d(x[0], 3, 0, 2, 2, PadMode::Replicate); }, {S{{2, 1, 3, 4}}, S{{1, 2, 1, 1}}}},
      {"separable_filter", [](auto& x) { return separable_filter(x[0], {0.2f, 0.5f, 0.3f}, {0.1f, 0.2f, 0.4f, 0.2f, 0.1f}); },
       {S{{2, 3, 9, 11}}, S{{1, 5, 7}}}},
      {"separable_filter one row", [](auto& x) { return separable_filter(x[0], {0.8f}, {0.3f, 0.5f, 0.2f}); }, {S{{2, 1, 1, 6}}}},
      {"kernel_bank", [bank, plan1](auto& x) { return kernel_bank(x[0], bank, plan1); },
       {S{{2, 2, 7, 9}}, S{{1, 2, 1, 6}}}},
      {"kernel_bank mixed", [bank, plan2](auto& x) { return kernel_bank(x[0], bank, plan2, x[1]); },
       {S{{2, 2, 6, 5}, {2, 3, 2}}, S{{1, 3, 3, 8}, {1, 3, 2}}}},
      {"fft2", [](auto& x) { return fft2(x[0]); }, {S{{2, 5, 6}}, S{{1, 3, 7, 4}}}},
      {"dropout (same mask both ways)",
       [](auto& x) {
         Generator g(3);
         return dropout(x[0], 0.3f, true, &g);
       },
       {S{{4, 50}}}},
  };
}

std::vector<Row> shape_rows() {
  return std::vector<Row>{
      {"permute", [](auto& x) { return permute(x[0], {2, 0, 1}); }, {S{{2, 3, 4}}, S{{1, 5, 1}}}},
      {"transpose", [](auto& x) { return transpose(x[0], 0, 2); }, {S{{3, 2, 4}}}},
      {"slice", [](auto& x) { return slice(x[0], 1, 1, 6, 2); }, {S{{2, 7, 3}}}},
      {"slice from the end", [](auto& x) { return slice(x[0], -1, -4, -1); }, {S{{3, 6}}, S{{1, 1, 5}}}},
      {"concat", [](auto& x) { return concat({x[0], x[1], x[2]}, 1); }, {S{{2, 3, 4}, {2, 1, 4}, {2, 5, 4}}}},
      // The pieces are scaled differently and reordered, so a mixed-up gradient shows.
      {"split",
       [](auto& x) {
         auto p = split(x[0], {1, 3, 2}, 1);
         return concat({p[2] * 2.f, p[0], p[1] * -1.f}, 1);
       },
       {S{{2, 6, 3}}}},
      {"chunk",
       [](auto& x) {
         auto p = chunk(x[0], 2, -1);
         return p[1] * 3.f - p[0];
       },
       {S{{3, 4}}, S{{1, 2, 1, 6}}}},
      {"unsqueeze/squeeze", [](auto& x) { return squeeze(unsqueeze(x[0], 1) * 2.f, 1); }, {S{{3, 4}}}},
      {"unsqueeze last", [](auto& x) { return unsqueeze(x[0], 2) * 2.f; }, {S{{2, 3}}}},
      {"gather_rows", [](auto& x) { return gather_rows(x[0], {4, 0, 0, 2, 3}); }, {S{{5, 3}}, S{{6, 2, 2}}}},
      {"gather_rows of one row", [](auto& x) { return gather_rows(x[0], {0, 0, 0}); }, {S{{1, 4}}}},
      {"reshape + narrow0", [](auto& x) { return x[0].reshape({6, 4}).narrow0(1, 3) * 3.f; }, {S{{2, 3, 4}}}},
  };
}

struct Geo {
  int64_t b, h, n, d, window;
};
// Head dims 1 to 64 (the CUDA kernels' 16-, 32- and 64-wide instances, with unused lanes at 1, 4, 8, 24 and
// 48), batch and heads > 1, windows that do not divide N.
std::vector<Geo> attention_geos() {
  return {{2, 3, 23, 16, 0}, {2, 3, 23, 16, 7}, {1, 2, 70, 32, 0}, {1, 2, 70, 64, 0}, {1, 2, 19, 1, 0},
          {2, 1, 33, 8, 0},  {1, 2, 41, 24, 5}, {1, 1, 37, 48, 0}, {3, 1, 5, 4, 2},   {2, 2, 29, 24, 0},
          {1, 2, 40, 16, 12}};  // the CPU softmax's 8-lane passes in windows that start inside a key block
}

struct Scene {
  int64_t n, h, w;  // blobs, image size
  uint64_t seed;
  float s_lo, s_hi;
  float blob_h, blob_w;  // the area the centres are drawn in
};
// Non-square images, a single pixel row, the original finite-difference scene, and 700 blobs whose centres
// lie in one 16x16 tile (more than 256 in a tile: all are drawn).
std::vector<Scene> raster_scenes() {
  return {{60, 37, 45, 1, 0.7f, 4.f, 37, 45},
          {9, 1, 30, 2, 0.7f, 3.f, 1, 30},
          {14, 20, 24, 2, 0.7f, 4.f, 20, 24},
          {700, 32, 40, 3, 0.4f, 1.2f, 16, 16}};
}

TEST_SUITE("op table") {

TEST_CASE("op table: elementwise") { run(elementwise_rows()); }

TEST_CASE("op table: reductions and softmax") { run(reduction_rows()); }

TEST_CASE("op table: matrix products") { run(matmul_rows()); }

TEST_CASE("op table: convolutions") { run(conv_rows()); }

TEST_CASE("op table: pooling and normalisation and resampling and padding and filters") { run(misc_rows()); }

TEST_CASE("op table: shape ops") { run(shape_rows()); }

TEST_CASE("op table: attention with head dims 1 to 64 and windows against the naive formula") {
  for (const Geo& g : attention_geos()) {
    g_cases++;
    std::string name = "attention [" + std::to_string(g.b) + ", " + std::to_string(g.h) + ", " + std::to_string(g.n) +
                       ", " + std::to_string(g.d) + "] window " + std::to_string(g.window);
    Shape s = {g.b, g.h, g.n, g.d};
    std::vector<Tensor> in = {uniform_input(s, -1, 1, 5 + g.d), uniform_input(s, -1, 1, 6 + g.d), uniform_input(s, -1, 1, 7 + g.d)};
    std::vector<Tensor> a, b;
    for (auto& t : in) {
      a.push_back(t.clone().set_requires_grad());
      b.push_back(t.clone().set_requires_grad());
    }
    Tensor fused = attention(a[0], a[1], a[2], g.window), naive = naive_attention(b[0], b[1], b[2], g.window);
    CHECK_MESSAGE(rel_err(fused, naive) < 1e-5, name);
    Tensor gout = uniform_input(fused.shape(), -1, 1, 8);
    fused.backward(gout);
    naive.backward(gout);
    for (int i = 0; i < 3; ++i) CHECK_MESSAGE(rel_err(a[i].grad(), b[i].grad()) < 1e-5, name << ": gradient of input " << i);
    // The blocked GEMM path agrees with the per-query loop (the oracle kept forever), log-sum-exp included.
    AttentionGeometry geo{g.b * g.h, g.n, g.d, g.window ? g.window : g.n, 1.f / std::sqrt((float)g.d)};
    Tensor o1 = empty_like(in[0]), o2 = empty_like(in[0]), l1 = empty({g.b * g.h, g.n}), l2 = empty({g.b * g.h, g.n});
    cpu::attention_forward(geo, in[0].data(), in[1].data(), in[2].data(), o1.data(), l1.data());
    cpu::attention_forward_reference(geo, in[0].data(), in[1].data(), in[2].data(), o2.data(), l2.data());
    CHECK_MESSAGE(rel_err(o1, o2) < 1e-5, name);
    CHECK_MESSAGE(rel_err(l1, l2) < 1e-5, name << ": log-sum-exp");
    Tensor q1 = empty_like(o1), k1 = empty_like(o1), v1 = empty_like(o1), q2 = empty_like(o1), k2 = empty_like(o1),
           v2 = empty_like(o1);
    cpu::attention_backward(geo, in[0].data(), in[1].data(), in[2].data(), o1.data(), l1.data(), gout.data(), q1.data(),
                            k1.data(), v1.data());
    cpu::attention_backward_reference(geo, in[0].data(), in[1].data(), in[2].data(), o2.data(), l2.data(), gout.data(),
                                      q2.data(), k2.data(), v2.data());
    CHECK_MESSAGE(rel_err(q1, q2) < 1e-5, name << ": dQ");
    CHECK_MESSAGE(rel_err(k1, k2) < 1e-5, name << ": dK");
    CHECK_MESSAGE(rel_err(v1, v2) < 1e-5, name << ": dV");
    auto fn = [w = g.window](const std::vector<Tensor>& x) { return attention(x[0], x[1], x[2], w); };
    check_gradients(name, fn, in);
    check_cuda_parity(name, fn, in, 1e-4);
  }
}

TEST_CASE("the CPU softmax's vectorizable exp is within 2 ulp of exp on [-87, 0]") {
  double worst_ulps = 0;
  float worst_x = 0;
  auto check = [&](float x) {
    const double want = std::exp((double)x), got = exp_nonpositive(x);
    const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);  // of a float near want
    if (std::abs(got - want) / ulp > worst_ulps) {
      worst_ulps = std::abs(got - want) / ulp;
      worst_x = x;
    }
  };
  for (int i = 0; i <= 870000; ++i) check(-87.f * (float)i / 870000.f);  // evenly, k = -126 included
  for (uint32_t bits = 0x80000001u; bits < 0xC2AE0000u; bits += 997u) {  // every binade of -87 ... -1e-45
    float x;
    std::memcpy(&x, &bits, sizeof x);
    check(x);
  }
  MESSAGE("largest error on [-87, 0]: " << worst_ulps << " ulp at x = " << worst_x);
  CHECK(worst_ulps <= 2.0);
  CHECK(exp_nonpositive(0.f) == 1.f);  // the row's maximum weighs exactly 1
  CHECK(exp_nonpositive(-87.5f) > 0.f);
  CHECK(exp_nonpositive(-88.f) == 0.f);  // from about -87.7 down: 0
  CHECK(exp_nonpositive(-INFINITY) == 0.f);
  CHECK(std::isnan(exp_nonpositive(NAN)));
}

TEST_CASE("the CPU gelu's vectorizable form is within 2e-7 max(1, |x|) of the exact GELU, its derivative 3e-7") {
  // Through the op itself (the CPU loops use gelu_vectorizable), against double precision, on [-14, 14] densely:
  // the gradient is GELU'(x) times a non-trivial upstream gradient.
  const int64_t n = 280001;
  std::vector<float> xs(n), gs(n);
  for (int64_t i = 0; i < n; ++i) {
    xs[i] = -14.f + 28.f * (float)i / (float)(n - 1);
    gs[i] = 0.5f + (float)(i % 7) * 0.25f;
  }
  Tensor x = from_vector(xs, {n}).set_requires_grad();
  Tensor y = gelu(x);
  y.backward(from_vector(gs, {n}));
  const std::vector<float> ys = y.to_vector(), dx = x.grad().to_vector();
  double worst_y = 0, worst_dx = 0, worst_tail = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = xs[i], cdf = 0.5 * std::erfc(-v / std::sqrt(2.0));
    const double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    worst_y = std::max(worst_y, std::abs(ys[i] - v * cdf) / std::max(1.0, std::abs(v)));
    worst_dx = std::max(worst_dx, std::abs(dx[i] - gs[i] * (cdf + v * pdf)) / gs[i]);
    if (v < -1.0 && v > -9.0) worst_tail = std::max(worst_tail, std::abs(ys[i] - v * cdf) / std::abs(v * cdf));
  }
  MESSAGE("gelu: forward within " << worst_y << " x max(1, |x|), derivative " << worst_dx << ", left tail (relative) "
                                  << worst_tail);
  CHECK(worst_y <= 2e-7);
  CHECK(worst_dx <= 3e-7);
  // erfc is fitted relatively: GELU(-8) = -5e-15 keeps its digits. The error here comes from rounding z * z and grows
  // as x^2 1e-7 (6e-6 measured at -9): a wider range needs a wider bound.
  CHECK(worst_tail <= 1e-5);
  // Special values through the op and its backward: as the erff forms give them (x Phi(x), inf * 0 = NaN).
  Tensor special = from_vector({NAN, INFINITY, -INFINITY, 0.f, -0.f, -1e30f, 1e30f}, {7}).set_requires_grad();
  Tensor special_y = gelu(special);
  special_y.backward(from_vector({1, 1, 1, 1, 1, 1, 1}, {7}));
  const std::vector<float> sv = special_y.to_vector(), sg = special.grad().to_vector();
  CHECK(std::isnan(sv[0]));
  CHECK(sv[1] == INFINITY);
  CHECK(std::isnan(sv[2]));
  CHECK((sv[3] == 0.f && sv[4] == 0.f && sv[5] == 0.f && sv[6] == 1e30f));
  CHECK((std::isnan(sg[0]) && sg[3] == 0.5f && sg[4] == 0.5f && sg[5] == 0.f && sg[6] == 1.f));
  CHECK(normal_cdf(0.f) == 0.5f);
}

TEST_CASE("op table: rasterizer against the naive per-pixel sum and by finite differences and parity") {
  for (const Scene& sc : raster_scenes()) {
    g_cases++;
    const std::string name = "rasterize " + std::to_string(sc.n) + " blobs on " + std::to_string(sc.h) + "x" + std::to_string(sc.w);
    Blobs b = random_blobs(sc.n, sc.blob_h, sc.blob_w, sc.seed, sc.s_lo, sc.s_hi);
    Tensor img = rasterize(b, sc.h, sc.w);
    CHECK(img.shape() == Shape{3, sc.h, sc.w});
    CHECK_MESSAGE(rel_err(img, naive_render(b, sc.h, sc.w, 3.0)) < 1e-5, name);
    if (sc.n == 700) {
      MESSAGE("blobs in the busiest tile: " << last_raster_stats().max_blobs_in_a_tile);
      CHECK(last_raster_stats().max_blobs_in_a_tile > 256);
    }
    CHECK_MESSAGE(rel_err(rasterize(b, sc.h, sc.w, 5.f), naive_render(b, sc.h, sc.w, 5.0)) < 1e-5, name << " at 5 sigma");
    // Gradients of every blob parameter: a wide cutoff keeps the image smooth in the parameters (a pixel
    // crossing the 3-sigma rim would jump). Parity runs at the default 3-sigma cutoff.
    GradCheck gc;
    gc.eps = 1e-3;
    gc.tol = 1e-2;
    check_gradients(name, raster_fn(sc.h, sc.w, 6.f), as_inputs(b), gc);
    check_cuda_parity(name, raster_fn(sc.h, sc.w, 3.f), as_inputs(b), 1e-4);
  }
}

TEST_CASE("op table: rasterizer draws nothing for blobs outside the image or with a zero scale") {
  Blobs b = random_blobs(5, 10, 10, 4);
  b.means = from_vector({-50, -50, 500, 5, 5, 900, 5, 5, 5, 5}, {5, 2});
  b.scales = from_vector({1, 1, 1, 1, 1, 1, 0, 1, 2, 2}, {5, 2});  // blob 3 has a zero scale
  Blobs only_last = b;
  only_last.opacity = from_vector({0, 0, 0, 0, b.opacity.to_vector()[4]}, {5});
  Tensor img = rasterize(b, 10, 10);
  CHECK(max_abs_diff(img, rasterize(only_last, 10, 10)) == 0.0);
  CHECK(max_abs_diff(img, zeros({3, 10, 10})) > 0.0);  // the one blob inside does draw
}

TEST_CASE("op table: summary") {
  // Counted from the tables themselves (ctest runs every test case in its own process). The attention and
  // rasterizer tests are one row each, a case per geometry or scene.
  int rows = 2, cases = (int)attention_geos().size() + (int)raster_scenes().size();
  for (auto* table : {elementwise_rows, reduction_rows, matmul_rows, conv_rows, misc_rows, shape_rows})
    for (const Row& r : table()) {
      rows++;
      cases += (int)r.cases.size();
      CHECK_MESSAGE(!r.cases.empty(), r.op << " has no cases");
    }
  std::string devices = cuda_available() ? "CPU and CUDA" : "CPU (CUDA parity skipped: no GPU)";
  MESSAGE("op table: " << rows << " op rows, " << cases << " op x shape cases, " << 2 * cases
                       << " op x shape x device cases (CPU finite differences + CUDA parity), run on " << devices);
  CHECK(rows >= 80);
}

}  // TEST_SUITE
