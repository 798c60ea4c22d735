#include "ops/kernel_bank.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "ops/conv.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/kernel_bank_impl.h"
#include "ops/macs.h"
#include "ops/shape.h"

namespace rf {

namespace cpu {

namespace {

// One same-size pass of a 1-D kernel along the rows (horizontal) or the columns (vertical), zero outside:
//   out[y, x] = sum_s tap[s] in[y, x + s]   (tap indexed -r..r from `centre`; flip: tap[-s], the adjoint)
void pass(const float* in, float* out, int64_t h, int64_t w, const float* centre, int r, bool vertical, bool flip) {
  for (int64_t i = 0; i < h * w; ++i) out[i] = 0.f;
  for (int s = -r; s <= r; ++s) {
    const float tv = flip ? centre[-s] : centre[s];
    if (vertical) {
      for (int64_t y = std::max<int64_t>(0, -s); y < std::min<int64_t>(h, h - s); ++y) {
        const float* src = in + (y + s) * w;
        float* dst = out + y * w;
        for (int64_t x = 0; x < w; ++x) dst[x] += tv * src[x];
      }
    } else {
      const int64_t x0 = std::max<int64_t>(0, -s), x1 = std::min<int64_t>(w, w - s);
      for (int64_t y = 0; y < h; ++y) {
        const float* src = in + y * w + s;
        float* dst = out + y * w;
        for (int64_t x = x0; x < x1; ++x) dst[x] += tv * src[x];
      }
    }
  }
}

const float* centre_of(const BankGeometry& g, int32_t k) { return g.taps + k * g.t + g.t / 2; }

}  // namespace

void bank_forward(const BankGeometry& g, const float* x, const float* weights, float* out) {
  const int64_t hw = g.h * g.w;
#pragma omp parallel
  {
    std::vector<float> rows(hw), cols(hw);
#pragma omp for schedule(dynamic)
    for (int64_t bj = 0; bj < g.b * g.j; ++bj) {
      const int64_t b = bj / g.j, j = bj % g.j;
      const float* in = x + (b * g.c + g.channel[j]) * hw;
      float* o = out + bj * hw;
      std::fill(o, o + hw, 0.f);
      for (int64_t qi = 0; qi < g.q; ++qi) {
        const int32_t k = g.kernel[j * g.q + qi];
        const float wv = weights ? weights[bj * g.q + qi] : 1.f;
        pass(in, rows.data(), g.h, g.w, centre_of(g, k), g.radius[k], false, false);
        pass(rows.data(), cols.data(), g.h, g.w, centre_of(g, k), g.radius[k], true, false);
        for (int64_t i = 0; i < hw; ++i) o[i] += wv * cols[i];
      }
    }
  }
}

void bank_backward(const BankGeometry& g, const float* x, const float* weights, const float* gout, float* gx, float* gw) {
  const int64_t hw = g.h * g.w;
#pragma omp parallel
  {
    std::vector<float> a(hw), bbuf(hw);
    // dx: every plane made from channel c sends its gradient back through the adjoint passes (flipped taps,
    // columns then rows); one thread per input plane, so the sum has one writer and a fixed order.
#pragma omp for schedule(dynamic)
    for (int64_t bc = 0; bc < g.b * g.c; ++bc) {
      const int64_t b = bc / g.c, c = bc % g.c;
      float* o = gx + bc * hw;
      std::fill(o, o + hw, 0.f);
      for (int32_t n = g.plane_offset[c]; n < g.plane_offset[c + 1]; ++n) {
        const int64_t j = g.planes_of[n];
        for (int64_t qi = 0; qi < g.q; ++qi) {
          const int32_t k = g.kernel[j * g.q + qi];
          const float wv = weights ? weights[(b * g.j + j) * g.q + qi] : 1.f;
          pass(gout + (b * g.j + j) * hw, a.data(), g.h, g.w, centre_of(g, k), g.radius[k], true, true);
          pass(a.data(), bbuf.data(), g.h, g.w, centre_of(g, k), g.radius[k], false, true);
          for (int64_t i = 0; i < hw; ++i) o[i] += wv * bbuf[i];
        }
      }
    }
    // dweights: the filtered plane against the output gradient.
    if (gw) {
#pragma omp for schedule(dynamic)
      for (int64_t bjq = 0; bjq < g.b * g.j * g.q; ++bjq) {
        const int64_t b = bjq / (g.j * g.q), j = (bjq / g.q) % g.j, qi = bjq % g.q;
        const int32_t k = g.kernel[j * g.q + qi];
        pass(x + (b * g.c + g.channel[j]) * hw, a.data(), g.h, g.w, centre_of(g, k), g.radius[k], false, false);
        pass(a.data(), bbuf.data(), g.h, g.w, centre_of(g, k), g.radius[k], true, false);
        const float* go = gout + (b * g.j + j) * hw;
        double s = 0;
        for (int64_t i = 0; i < hw; ++i) s += (double)bbuf[i] * go[i];
        gw[bjq] = (float)s;
      }
    }
  }
}

}  // namespace cpu

namespace {

// The plan's tables as tensors on the op's device (taps [K, T], radii, channels, kernels, planes per channel).
struct BankTables {
  Tensor taps, radius, channel, kernel, plane_offset, planes_of;
  int64_t t = 1;
};

// int32 values stored bit for bit in a float32 tensor (the engine's tensors are float32).
Tensor int_tensor(const std::vector<int32_t>& v, Device d) {
  Tensor t = empty({std::max<int64_t>(1, (int64_t)v.size())}, Device::CPU);
  std::copy(v.begin(), v.end(), reinterpret_cast<int32_t*>(t.data()));
  return t.to(d);
}

BankTables make_tables(const KernelBank& bank, const BankPlan& plan, int64_t channels, Device d) {
  const int64_t kn = (int64_t)bank.taps.size(), j = (int64_t)plan.channel.size();
  RF_CHECK(kn > 0, "kernel_bank: the bank has no kernels");
  int64_t rmax = 0;
  for (int64_t k = 0; k < kn; ++k) {
    const int64_t len = (int64_t)bank.taps[k].size();
    RF_CHECK(len % 2 == 1, "kernel_bank: kernel ", k, " has ", len, " taps (needs an odd number, centred)");
    rmax = std::max(rmax, len / 2);
  }
  RF_CHECK(plan.q >= 1 && (int64_t)plan.kernel.size() == j * plan.q, "kernel_bank: the plan has ", plan.kernel.size(),
           " kernel entries for ", j, " planes of ", plan.q);
  BankTables t;
  t.t = 2 * rmax + 1;
  std::vector<float> taps(kn * t.t, 0.f);
  std::vector<int32_t> radius(kn);
  for (int64_t k = 0; k < kn; ++k) {
    const int64_t r = (int64_t)bank.taps[k].size() / 2;
    radius[k] = (int32_t)r;
    for (int64_t s = -r; s <= r; ++s) taps[k * t.t + rmax + s] = bank.taps[k][r + s];
  }
  for (int32_t c : plan.channel) RF_CHECK(c >= 0 && c < channels, "kernel_bank: plan channel ", c, " is not one of the input's ", channels);
  for (int32_t k : plan.kernel) RF_CHECK(k >= 0 && k < kn, "kernel_bank: plan kernel ", k, " is not one of the bank's ", kn);
  std::vector<int32_t> offset(channels + 1, 0), planes;
  for (int64_t c = 0; c < channels; ++c) {
    offset[c] = (int32_t)planes.size();
    for (int64_t p = 0; p < j; ++p)
      if (plan.channel[p] == c) planes.push_back((int32_t)p);
  }
  offset[channels] = (int32_t)planes.size();
  t.taps = from_vector(taps, {kn, t.t}, d);
  t.radius = int_tensor(radius, d);
  t.channel = int_tensor(plan.channel, d);
  t.kernel = int_tensor(plan.kernel, d);
  t.plane_offset = int_tensor(offset, d);
  t.planes_of = int_tensor(planes, d);
  return t;
}

BankGeometry geometry(const Tensor& x, const BankPlan& plan, const BankTables& t) {
  BankGeometry g;
  g.b = x.size(0);
  g.c = x.size(1);
  g.h = x.size(2);
  g.w = x.size(3);
  g.j = (int64_t)plan.channel.size();
  g.q = plan.q;
  g.t = t.t;
  auto ip = [](const Tensor& v) { return reinterpret_cast<const int32_t*>(v.data()); };
  g.taps = t.taps.data();
  g.radius = ip(t.radius);
  g.channel = ip(t.channel);
  g.kernel = ip(t.kernel);
  g.plane_offset = ip(t.plane_offset);
  g.planes_of = ip(t.planes_of);
  return g;
}

}  // namespace

Tensor kernel_bank(const Tensor& x, const KernelBank& bank, const BankPlan& plan, const Tensor& weights) {
  RF_CHECK(x.dim() == 4, "kernel_bank: expected x [B, C, H, W], got ", describe(x));
  const int64_t j = (int64_t)plan.channel.size();
  RF_CHECK(j > 0, "kernel_bank: the plan makes no planes");
  if (weights.defined())
    RF_CHECK(weights.shape() == Shape({x.size(0), j, plan.q}), "kernel_bank: weights ", describe(weights), " should be [",
             x.size(0), ", ", j, ", ", plan.q, "] for x ", describe(x));
  else
    RF_CHECK(plan.q == 1, "kernel_bank: mixing ", plan.q, " kernels per plane needs weights [B, J, q]");
  Device dev = same_device("kernel_bank", {x, weights});
  auto tables = std::make_shared<BankTables>(make_tables(bank, plan, x.size(1), dev));
  BankGeometry g = geometry(x, plan, *tables);
  Tensor out = empty({g.b, j, g.h, g.w}, dev);
  {
    int64_t taps = 0;  // a row and a column pass per plane and kernel
    for (int32_t k : plan.kernel) taps += 2 * (int64_t)bank.taps[k].size();
    count_macs(g.b * g.h * g.w * taps);
  }
  const float* wp = weights.defined() ? weights.data() : nullptr;
  if (dev == Device::CUDA)
    RF_GPU_OP("kernel_bank", (x, weights), gpu::bank_forward(g, x.data(), wp, out.data()));
  else
    cpu::bank_forward(g, x.data(), wp, out.data());
  if (needs_grad({x, weights})) {
    const bool wgrad = weights.defined() && weights.requires_grad();
    Tensor xs = wgrad ? x.detach() : Tensor(), ws = weights.defined() ? weights.detach() : Tensor();
    Shape xshape = x.shape();
    BankPlan p = plan;
    record(out, "kernel_bank", {x, weights}, [tables, p, xs, ws, xshape, wgrad](const Tensor& gout) {
      Tensor gx = empty(xshape, gout.device()), gw = wgrad ? empty(ws.shape(), gout.device()) : Tensor();
      BankGeometry g = geometry(gx, p, *tables);
      const float* wp = ws.defined() ? ws.data() : nullptr;
      const float* xp = xs.defined() ? xs.data() : nullptr;
      float* gwp = gw.defined() ? gw.data() : nullptr;
      if (gout.is_cuda())
        RF_GPU(gpu::bank_backward(g, xp, wp, gout.data(), gx.data(), gwp));
      else
        cpu::bank_backward(g, xp, wp, gout.data(), gx.data(), gwp);
      return std::vector<Tensor>{gx, gw};
    });
  }
  return out;
}

Tensor kernel_bank_dense_reference(const Tensor& x, const KernelBank& bank, const BankPlan& plan, const Tensor& weights) {
  const int64_t j = (int64_t)plan.channel.size();
  std::vector<Tensor> planes;
  for (int64_t p = 0; p < j; ++p) {
    Tensor plane_sum;
    for (int64_t qi = 0; qi < plan.q; ++qi) {
      const std::vector<float>& t = bank.taps[plan.kernel[p * plan.q + qi]];
      const int64_t n = (int64_t)t.size(), r = n / 2;
      std::vector<float> dense(n * n);
      for (int64_t a = 0; a < n; ++a)
        for (int64_t b = 0; b < n; ++b) dense[a * n + b] = t[a] * t[b];
      Tensor kx = from_vector(dense, {1, 1, n, n}, x.device());
      Tensor one = conv2d(slice(x, 1, plan.channel[p], plan.channel[p] + 1), kx, Tensor(), ConvOptions::make(1, r));
      if (weights.defined()) one = one * slice(slice(weights, 1, p, p + 1), 2, qi, qi + 1).reshape({x.size(0), 1, 1, 1});
      plane_sum = plane_sum.defined() ? plane_sum + one : one;
    }
    planes.push_back(plane_sum);
  }
  return concat(planes, 1);
}

}  // namespace rf
