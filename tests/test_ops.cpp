// Every op: PyTorch golden comparison, finite-difference gradient check of the CPU path, and CPU<->CUDA
// parity, all on the inputs stored in the golden file.
#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/fileio.h"
#include "engine/safetensors.h"
#include "ops/optical_flow.h"
#include "ops/separable.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;

namespace {

std::vector<Tensor> golden_inputs(const std::string& name) {
  std::string path = std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/" + name + ".safetensors";
  REQUIRE_MESSAGE(file_exists(path), path << " is missing: run `make golden`");
  SafeTensors st = load_safetensors(path);
  std::vector<Tensor> in;
  for (int k = 0; st.tensors.count("in" + std::to_string(k)); ++k) in.push_back(st.tensors["in" + std::to_string(k)]);
  return in;
}

// Golden + finite differences + CUDA parity for one op.
void op_checks(const std::string& name, const OpFn& f, GradCheck gc = {}, double parity_tol = 1e-4) {
  check_golden(name, f);
  std::vector<Tensor> in = golden_inputs(name);
  check_gradients(name, f, in, gc);
  check_cuda_parity(name, f, in, parity_tol, gc.skip);
}

GradCheck kinked() {  // piecewise-linear ops: a small step avoids crossing a kink
  GradCheck g;
  g.eps = 1e-3;
  g.tol = 2e-2;
  return g;
}

}  // namespace

TEST_SUITE("ops") {

TEST_CASE("elementwise binary ops with broadcasting") {
  op_checks("add_broadcast", [](auto& x) { return x[0] + x[1]; });
  op_checks("sub_broadcast", [](auto& x) { return x[0] - x[1]; });
  op_checks("mul_broadcast", [](auto& x) { return x[0] * x[1]; });
  op_checks("div_broadcast", [](auto& x) { return x[0] / x[1]; });
  op_checks("maximum", [](auto& x) { return maximum(x[0], x[1]); }, kinked());
  op_checks("minimum", [](auto& x) { return minimum(x[0], x[1]); }, kinked());
}

TEST_CASE("elementwise unary ops") {
  op_checks("exp", [](auto& x) { return exp(x[0]); });
  op_checks("log", [](auto& x) { return log(x[0]); });
  op_checks("sqrt", [](auto& x) { return sqrt(x[0]); });
  op_checks("pow", [](auto& x) { return pow(x[0], 2.5f); });
  op_checks("abs", [](auto& x) { return abs(x[0]); }, kinked());
  op_checks("clamp", [](auto& x) { return clamp(x[0], -0.5f, 0.5f); }, kinked());
  op_checks("relu", [](auto& x) { return relu(x[0]); }, kinked());
  op_checks("leaky_relu", [](auto& x) { return leaky_relu(x[0], 0.1f); }, kinked());
  op_checks("sigmoid", [](auto& x) { return sigmoid(x[0]); });
  op_checks("tanh", [](auto& x) { return tanh(x[0]); });
  op_checks("sin", [](auto& x) { return sin(x[0]); });
  op_checks("cos", [](auto& x) { return cos(x[0]); });
  op_checks("gelu", [](auto& x) { return gelu(x[0]); });
  op_checks("softplus", [](auto& x) { return softplus(x[0]); });
}

TEST_CASE("reductions and softmax") {
  op_checks("sum_dims", [](auto& x) { return sum(x[0], {0, 2}); });
  op_checks("mean_keepdim", [](auto& x) { return mean(x[0], {1, 3}, true); });
  op_checks("max_dim", [](auto& x) { return max(x[0], 1); }, kinked());
  op_checks("softmax", [](auto& x) { return softmax(x[0], 1); });
  op_checks("log_softmax", [](auto& x) { return log_softmax(x[0], -1); });
}

TEST_CASE("matrix products") {
  op_checks("matmul", [](auto& x) { return matmul(x[0], x[1]); });
  op_checks("bmm", [](auto& x) { return matmul(x[0], x[1]); });
  op_checks("matmul_shared", [](auto& x) { return matmul(x[0], x[1]); });
  op_checks("matmul_transposed", [](auto& x) { return matmul(x[0], x[1], true, true); });
  op_checks("linear", [](auto& x) { return linear(x[0], x[1], x[2]); });
}

TEST_CASE("convolutions") {
  op_checks("conv2d_3x3", [](auto& x) { return conv2d(x[0], x[1], x[2], ConvOptions::make(1, 1)); });
  op_checks("conv2d_stride2", [](auto& x) { return conv2d(x[0], x[1], x[2], ConvOptions::make(2, 1)); });
  op_checks("conv2d_dilated", [](auto& x) { return conv2d(x[0], x[1], Tensor(), ConvOptions::make(1, 2, 2)); });
  op_checks("conv2d_groups", [](auto& x) { return conv2d(x[0], x[1], x[2], ConvOptions::make(1, 1, 1, 2)); });
  op_checks("conv2d_1x1", [](auto& x) { return conv2d(x[0], x[1], x[2]); });
  op_checks("conv2d_5x5_rect", [](auto& x) {
    ConvOptions o;
    o.stride_h = 2;
    o.pad_h = 2;
    o.pad_w = 1;
    return conv2d(x[0], x[1], x[2], o);
  });
  op_checks("conv_transpose2d", [](auto& x) { return conv_transpose2d(x[0], x[1], x[2], ConvOptions::make(2, 1)); });
  op_checks("conv_transpose2d_groups", [](auto& x) {
    ConvOptions o = ConvOptions::make(2, 1, 1, 2);
    o.output_pad_h = o.output_pad_w = 1;
    return conv_transpose2d(x[0], x[1], x[2], o);
  });
}

TEST_CASE("pooling") {
  op_checks("max_pool2d", [](auto& x) { return max_pool2d(x[0], 3, 2, 1); }, kinked());
  op_checks("avg_pool2d", [](auto& x) { return avg_pool2d(x[0], 2, 2); });
  op_checks("avg_pool2d_pad", [](auto& x) { return avg_pool2d(x[0], 3, 2, 1); });
  op_checks("global_avg_pool", [](auto& x) { return global_avg_pool(x[0]); });
}

TEST_CASE("resampling") {
  op_checks("resize_bilinear_up", [](auto& x) { return resize_bilinear(x[0], 11, 13); });
  op_checks("resize_bilinear_down", [](auto& x) { return resize_bilinear(x[0], 5, 4); });
  op_checks("resize_bilinear_align", [](auto& x) { return resize_bilinear(x[0], 9, 8, true); });
  op_checks("upsample_nearest", [](auto& x) { return upsample_nearest(x[0], 8, 12); });
  op_checks("upsample_nearest_down", [](auto& x) { return upsample_nearest(x[0], 4, 3); });
  // 35 -> 70 (a U-Net's x2 on an odd size): 35/70 must round to 0.5 on the device as on the CPU, or a whole column
  // comes from the wrong pixel.
  check_cuda_parity("upsample_nearest 35 -> 70", [](auto& x) { return upsample_nearest(x[0], 70, 70); },
                    {uniform_input({1, 2, 35, 35}, -1.f, 1.f, 7)}, 1e-6);
  GradCheck grid = kinked();  // bilinear weights are piecewise linear in the grid coordinates:
  grid.eps = 2e-4;            // one golden coordinate sits 0.0017 px from a pixel centre
  op_checks("grid_sample", [](auto& x) { return grid_sample(x[0], x[1]); }, grid);
  op_checks("grid_sample_border_align",
            [](auto& x) { return grid_sample(x[0], x[1], true, GridPadding::Border); }, grid);
  {
    // Border padding, coordinates exactly on the first and last pixel: clamped, so no gradient reaches them, as
    // PyTorch 2.x computes for this input (F.grid_sample, border, align_corners=True): -0 -0 | 0 0 | 0.1560 0.3560 |
    // -0 0.7600. A zero flow on a warp's last row lands exactly there.
    std::vector<float> xv(12);
    for (int i = 0; i < 12; ++i) xv[i] = (0.1f * (float)i + 0.05f) * (0.1f * (float)i + 0.05f);
    Tensor x = from_vector(xv, {1, 1, 3, 4});
    Tensor grid = from_vector({1.f, 1.f, -1.f, -1.f, 0.3f, -0.2f, 1.f, 0.5f}, {1, 1, 4, 2}).set_requires_grad();
    Tensor y = grid_sample(x, grid, true, GridPadding::Border);
    CHECK(y.to_vector()[0] == doctest::Approx(1.3225).epsilon(1e-5));
    CHECK(y.to_vector()[1] == doctest::Approx(0.0025).epsilon(1e-4));
    sum(y).backward();
    std::vector<float> want = {0.f, 0.f, 0.f, 0.f, 0.1560f, 0.3560f, 0.f, 0.7600f}, got = grid.grad().to_vector();
    for (int i = 0; i < 8; ++i) CHECK_MESSAGE(got[i] == doctest::Approx(want[i]).epsilon(1e-3), "grid gradient " << i);
    check_cuda_parity("grid_sample (border, exactly on the edges)",
                      [](auto& t) { return grid_sample(t[0], t[1], true, GridPadding::Border); }, {x, grid.detach()});
  }
  GradCheck image_only;  // warp_bicubic is differentiable in the image only (the flow is a constant of the loss)
  image_only.skip = {1};
  op_checks("warp_bicubic", [](auto& x) { return warp_bicubic(x[0], x[1].detach()); }, image_only);
}

TEST_CASE("padding and shape ops") {
  op_checks("pad_zeros", [](auto& x) { return pad2d(x[0], 1, 2, 3, 0); });
  op_checks("pad_reflect", [](auto& x) { return pad2d(x[0], 2, 3, 1, 4, PadMode::Reflect); });
  op_checks("pad_replicate", [](auto& x) { return pad2d(x[0], 2, 3, 1, 4, PadMode::Replicate); });
  op_checks("permute", [](auto& x) { return permute(x[0], {2, 0, 3, 1}); });
  op_checks("slice_step", [](auto& x) { return slice(x[0], 1, 1, 8, 3); });
  op_checks("concat", [](auto& x) { return concat({x[0], x[1], x[2]}, 1); });
}

TEST_CASE("gather_rows with repeated indices") {
  std::vector<int64_t> idx = {3, 0, 3, 1};
  auto fn = [idx](const std::vector<Tensor>& x) { return gather_rows(x[0], idx); };
  Tensor x = uniform_input({4, 2, 3}, -1, 1, 1);
  Tensor y = fn({x});
  CHECK(y.shape() == Shape{4, 2, 3});
  CHECK(slice(y, 0, 2, 3).to_vector() == slice(x, 0, 3, 4).to_vector());
  check_gradients("gather_rows", fn, {x});
  check_cuda_parity("gather_rows", fn, {x});
  CHECK_THROWS_WITH_AS(gather_rows(x, {4}), doctest::Contains("index 4 is outside the 4 rows"), Error);
}

TEST_CASE("layer_norm over the channels of a large image equals its composition from means, blocks of pixels included") {
  // 17 x 19 = 323 pixels: a full block of 256 neighbouring pixels and a partial one.
  Tensor x = uniform_input({2, 6, 17, 19}, -1, 1, 31), w = uniform_input({6}, 0.5, 1.5, 32), b = uniform_input({6}, -1, 1, 33);
  Tensor gy = uniform_input({2, 6, 17, 19}, -1, 1, 34);
  Tensor xa = x.detach().set_requires_grad(), xb = x.detach().set_requires_grad();
  Tensor fused = layer_norm(xa, 1, w, b);
  Tensor mu = mean(xb, {1}, true), centred = sub(xb, mu);
  Tensor var = mean(mul(centred, centred), {1}, true);
  Tensor composed = add(mul(div(centred, sqrt(var + 1e-5f)), w.reshape({1, 6, 1, 1})), b.reshape({1, 6, 1, 1}));
  CHECK(rel_err(fused, composed) < 1e-5);
  fused.backward(gy);
  composed.backward(gy);
  CHECK(rel_err(xa.grad(), xb.grad()) < 1e-4);
}

TEST_CASE("layer_norm over the last dim of many tokens equals its composition, weight and bias gradients included") {
  // 800 rows of 21 (16800 floats: above the size where the CPU loops take threads): four chunks of rows in the weight
  // and bias sums, rows of two 8-lane blocks + 5.
  Tensor x = uniform_input({8, 100, 21}, -1, 1, 41), gy = uniform_input({8, 100, 21}, -1, 1, 44);
  Tensor wa = uniform_input({21}, 0.5, 1.5, 42).set_requires_grad();
  Tensor ba = uniform_input({21}, -1, 1, 43).set_requires_grad();
  Tensor wb = wa.detach().set_requires_grad(), bb = ba.detach().set_requires_grad();
  Tensor xa = x.detach().set_requires_grad(), xb = x.detach().set_requires_grad();
  Tensor fused = layer_norm(xa, -1, wa, ba);
  Tensor mu = mean(xb, {2}, true), centred = sub(xb, mu);
  Tensor var = mean(mul(centred, centred), {2}, true);
  Tensor composed = add(mul(div(centred, sqrt(var + 1e-5f)), wb), bb);
  CHECK(rel_err(fused, composed) < 1e-5);
  fused.backward(gy);
  composed.backward(gy);
  CHECK(rel_err(xa.grad(), xb.grad()) < 1e-4);
  CHECK(rel_err(wa.grad(), wb.grad()) < 1e-5);
  CHECK(rel_err(ba.grad(), bb.grad()) < 1e-5);
#ifdef _OPENMP
  // Threads only take whole chunks of rows: the bits may not depend on how many there are.
  const int threads = omp_get_max_threads();
  std::vector<std::vector<float>> runs;
  for (int t : {1, 2, 3}) {
    omp_set_num_threads(t);
    Tensor w = wa.detach().set_requires_grad(), xt = x.detach().set_requires_grad();
    Tensor y = layer_norm(xt, -1, w, ba.detach());
    y.backward(gy);
    std::vector<float> bits = y.to_vector(), gw = w.grad().to_vector(), gx = xt.grad().to_vector();
    bits.insert(bits.end(), gw.begin(), gw.end());
    bits.insert(bits.end(), gx.begin(), gx.end());
    runs.push_back(bits);
  }
  omp_set_num_threads(threads);
  CHECK_MESSAGE(runs[0] == runs[1], "layer_norm: 1 and 2 threads differ");
  CHECK_MESSAGE(runs[0] == runs[2], "layer_norm: 1 and 3 threads differ");
#endif
}

TEST_CASE("normalisation") {
  op_checks("layer_norm_channels", [](auto& x) { return layer_norm(x[0], 1, x[1], x[2]); });
  op_checks("layer_norm_last", [](auto& x) { return layer_norm(x[0], -1, x[1], x[2]); });
  op_checks("batch_norm_train", [](auto& x) {
    Tensor rm = zeros({3}, x[0].device()), rv = ones({3}, x[0].device());
    return batch_norm(x[0], rm, rv, x[1], x[2], true);
  });
  GradCheck eval;
  eval.skip = {3, 4};  // running statistics get no gradient
  op_checks("batch_norm_eval", [](auto& x) {
    Tensor rm = x[3].detach(), rv = x[4].detach();
    return batch_norm(x[0], rm, rv, x[1], x[2], false);
  }, eval);
}

TEST_CASE("separable filtering") {
  op_checks("separable_filter", [](auto& x) {
    return separable_filter(x[0], {0.1f, 0.2f, 0.4f, 0.2f, 0.1f}, {0.2f, 0.5f, 0.3f});
  });
}

TEST_CASE("fft2") {
  op_checks("fft2", [](auto& x) { return fft2(x[0]); });
  op_checks("fft2_odd", [](auto& x) { return fft2(x[0]); });
}

}  // TEST_SUITE
