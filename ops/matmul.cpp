#include "ops/matmul.h"
#include "ops/macs.h"

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"
#include "ops/reduce.h"

namespace rf {

Tensor matmul(const Tensor& a, const Tensor& b) { return matmul(a, b, false, false); }

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Device dev = same_device("matmul", {a, b});
  RF_CHECK((a.dim() == 2 || a.dim() == 3) && (b.dim() == 2 || b.dim() == 3), "matmul: expected 2-d or 3-d inputs, got ",
           a.shape(), " and ", b.shape());
  int64_t ba = a.dim() == 3 ? a.size(0) : 1, bb = b.dim() == 3 ? b.size(0) : 1;
  RF_CHECK(a.dim() == 2 || b.dim() == 2 || ba == bb, "matmul: batch sizes differ: ", a.shape(), " and ", b.shape());
  int64_t ar = a.size(-2), ac = a.size(-1), br = b.size(-2), bc = b.size(-1);
  int64_t m = ta ? ac : ar, k = ta ? ar : ac, kb = tb ? bc : br, n = tb ? br : bc;
  RF_CHECK(k == kb, "matmul: inner sizes differ: ", a.shape(), (ta ? "^T" : ""), " @ ", b.shape(), (tb ? "^T" : ""));
  int64_t batch = std::max(ba, bb);
  count_macs(batch * m * n * k);
  bool batched = a.dim() == 3 || b.dim() == 3;
  Tensor c = empty(batched ? Shape{batch, m, n} : Shape{m, n}, dev);
  GemmShape s = gemm_shape(ta, tb, m, n, k);
  s.batch = batch;
  s.stride_a = a.dim() == 3 ? m * k : 0;  // a shared 2-d operand is re-read for every batch entry
  s.stride_b = b.dim() == 3 ? k * n : 0;
  if (dev == Device::CUDA)
    RF_GPU_OP("matmul", (a, b), gpu::gemm(s, a.data(), b.data(), c.data()));
  else
    cpu::gemm(s, a.data(), b.data(), c.data());
  if (needs_grad({a, b})) {
    record(c, "matmul", {a, b}, [a, b, ta, tb](const Tensor& g) {
      Tensor ga, gb;
      if (a.requires_grad()) {
        ga = ta ? matmul(b, g, tb, true) : matmul(g, b, false, !tb);
        if (a.dim() == 2 && ga.dim() == 3) ga = sum(ga, {0});
      }
      if (b.requires_grad()) {
        gb = tb ? matmul(g, a, true, ta) : matmul(a, g, !ta, false);
        if (b.dim() == 2 && gb.dim() == 3) gb = sum(gb, {0});
      }
      return std::vector<Tensor>{ga, gb};
    });
  }
  return c;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  RF_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input ", x.shape(),
           " does not match weight ", w.shape());
  RF_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == w.size(0)), "linear: bias ", bias.shape(),
           " does not match weight ", w.shape());
  Shape out_shape = x.shape();
  out_shape.back() = w.size(0);
  Tensor y = matmul(x.reshape({-1, w.size(1)}), w, false, true);
  if (bias.defined()) y = add(y, bias);
  return y.reshape(out_shape);
}

}  // namespace rf
