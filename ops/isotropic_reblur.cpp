#include "ops/isotropic_reblur.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/isotropic_reblur_impl.h"
#include "ops/macs.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/shape.h"

namespace rf {

namespace cpu {

namespace {

struct Tap {
  int dy, dx;
  TapWeights tw;
};

// The taps of every radius, row-major (t = (dy + r) K + dx + r).
const std::vector<std::vector<Tap>>& tap_tables() {
  static const std::vector<std::vector<Tap>> tables = [] {
    std::vector<std::vector<Tap>> t(kReblurSizes + 1);
    for (int r = 1; r <= (int)kReblurSizes; ++r)
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) t[r].push_back({dy, dx, tap_weights(dy, dx, r)});
    return t;
  }();
  return tables;
}

inline float sgn(float v) { return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f); }

// Logits of every tap of radius r at pixel p; seeds of the group: a[l] = seeds[(off + l) hw + p].
void logits(const std::vector<Tap>& taps, const float* a, int64_t hw, float* out) {
  for (size_t t = 0; t < taps.size(); ++t) {
    const TapWeights& w = taps[t].tw;
    out[t] = w.inside ? w.w_lo * std::fabs(a[w.lo * hw]) + (w.w_hi != 0.f ? w.w_hi * std::fabs(a[w.hi * hw]) : 0.f) : 0.f;
  }
}

}  // namespace

void reblur_forward(const ReblurGeometry& g, const float* sharp, const float* seeds, const float* maps, float* out, float* lse) {
  const int64_t hw = g.h * g.w;
  const auto& tables = tap_tables();
#pragma omp parallel
  {
    std::vector<float> k(225);
#pragma omp for schedule(static)
    for (int64_t row = 0; row < g.b * g.h; ++row) {
      const int64_t b = row / g.h, y = row % g.h;
      for (int64_t x = 0; x < g.w; ++x) {
        const int64_t p = y * g.w + x;
        const float m0 = maps[(b * 8) * hw + p];
        for (int64_t ch = 0; ch < g.c; ++ch) out[(b * g.c + ch) * hw + p] = m0 * sharp[(b * g.c + ch) * hw + p];
        for (int r = 1; r <= (int)kReblurSizes; ++r) {
          const auto& taps = tables[r];
          logits(taps, seeds + (b * kReblurSeeds + seed_offset(r)) * hw + p, hw, k.data());
          float mx = 0.f;  // logits are >= 0 and the outside taps are 0
          for (size_t t = 0; t < taps.size(); ++t) mx = std::max(mx, k[t]);
          double s = 0;
          for (size_t t = 0; t < taps.size(); ++t) s += std::exp((double)(k[t] - mx));
          const float l = mx + (float)std::log(s);
          lse[(b * kReblurSizes + r - 1) * hw + p] = l;
          for (size_t t = 0; t < taps.size(); ++t) k[t] = std::exp(k[t] - l);
          const float mr = maps[(b * 8 + r) * hw + p];
          for (int64_t ch = 0; ch < g.c; ++ch) {
            const float* img = sharp + (b * g.c + ch) * hw;
            float acc = 0.f;
            for (size_t t = 0; t < taps.size(); ++t) {
              const int64_t yy = y + taps[t].dy, xx = x + taps[t].dx;
              if (yy >= 0 && yy < g.h && xx >= 0 && xx < g.w) acc += k[t] * img[yy * g.w + xx];
            }
            out[(b * g.c + ch) * hw + p] += mr * acc;
          }
        }
      }
    }
  }
}

void reblur_backward(const ReblurGeometry& g, const float* sharp, const float* seeds, const float* maps, const float* lse,
                     const float* gout, float* dsharp, float* dseeds, float* dmaps) {
  const int64_t hw = g.h * g.w;
  const auto& tables = tap_tables();
#pragma omp parallel
  {
    std::vector<float> k(225), dk(225), dseed(kReblurSeeds);
    // Per pixel p: the maps' and the seeds' gradients (every output written by the thread of its row).
#pragma omp for schedule(static)
    for (int64_t row = 0; row < g.b * g.h; ++row) {
      const int64_t b = row / g.h, y = row % g.h;
      for (int64_t x = 0; x < g.w; ++x) {
        const int64_t p = y * g.w + x;
        float d0 = 0.f;
        for (int64_t ch = 0; ch < g.c; ++ch) d0 += gout[(b * g.c + ch) * hw + p] * sharp[(b * g.c + ch) * hw + p];
        dmaps[(b * 8) * hw + p] = d0;
        std::fill(dseed.begin(), dseed.end(), 0.f);
        for (int r = 1; r <= (int)kReblurSizes; ++r) {
          const auto& taps = tables[r];
          const float* a = seeds + (b * kReblurSeeds + seed_offset(r)) * hw + p;
          logits(taps, a, hw, k.data());
          const float l = lse[(b * kReblurSizes + r - 1) * hw + p], mr = maps[(b * 8 + r) * hw + p];
          float dm = 0.f, s = 0.f;
          for (size_t t = 0; t < taps.size(); ++t) {
            k[t] = std::exp(k[t] - l);
            const int64_t yy = y + taps[t].dy, xx = x + taps[t].dx;
            float gv = 0.f;  // sum_c gout_c(p) sharp_c(p + t)
            if (yy >= 0 && yy < g.h && xx >= 0 && xx < g.w)
              for (int64_t ch = 0; ch < g.c; ++ch) gv += gout[(b * g.c + ch) * hw + p] * sharp[(b * g.c + ch) * hw + yy * g.w + xx];
            dm += k[t] * gv;
            dk[t] = mr * gv;
            s += k[t] * dk[t];
          }
          dmaps[(b * 8 + r) * hw + p] = dm;
          for (size_t t = 0; t < taps.size(); ++t) {
            const TapWeights& w = taps[t].tw;
            if (!w.inside) continue;
            const float dl = k[t] * (dk[t] - s);  // softmax backward
            dseed[seed_offset(r) + w.lo] += dl * w.w_lo * sgn(a[w.lo * hw]);
            if (w.w_hi != 0.f) dseed[seed_offset(r) + w.hi] += dl * w.w_hi * sgn(a[w.hi * hw]);
          }
        }
        for (int64_t j = 0; j < kReblurSeeds; ++j) dseeds[(b * kReblurSeeds + j) * hw + p] = dseed[j];
      }
    }
    // d sharp[q] = maps0(q) gout(q) + sum_{r, t} maps_r(q - t) k_r(q - t)[t] gout(q - t): the adjoint, gathered.
#pragma omp for schedule(static)
    for (int64_t row = 0; row < g.b * g.h; ++row) {
      const int64_t b = row / g.h, y = row % g.h;
      for (int64_t x = 0; x < g.w; ++x) {
        const int64_t q = y * g.w + x;
        float acc[8] = {0.f};  // per colour (C <= 8)
        const float m0 = maps[(b * 8) * hw + q];
        for (int64_t ch = 0; ch < g.c; ++ch) acc[ch] = m0 * gout[(b * g.c + ch) * hw + q];
        for (int r = 1; r <= (int)kReblurSizes; ++r)
          for (const Tap& tp : tables[r]) {
            const int64_t py = y - tp.dy, px = x - tp.dx;
            if (py < 0 || py >= g.h || px < 0 || px >= g.w) continue;
            const int64_t p = py * g.w + px;
            const float* a = seeds + (b * kReblurSeeds + seed_offset(r)) * hw + p;
            const TapWeights& w = tp.tw;
            const float logit =
                w.inside ? w.w_lo * std::fabs(a[w.lo * hw]) + (w.w_hi != 0.f ? w.w_hi * std::fabs(a[w.hi * hw]) : 0.f) : 0.f;
            const float coef = maps[(b * 8 + r) * hw + p] * std::exp(logit - lse[(b * kReblurSizes + r - 1) * hw + p]);
            for (int64_t ch = 0; ch < g.c; ++ch) acc[ch] += coef * gout[(b * g.c + ch) * hw + p];
          }
        for (int64_t ch = 0; ch < g.c; ++ch) dsharp[(b * g.c + ch) * hw + q] = acc[ch];
      }
    }
  }
}

}  // namespace cpu

Tensor isotropic_reblur(const Tensor& sharp, const Tensor& seeds, const Tensor& maps) {
  const char* op = "isotropic_reblur";
  RF_CHECK(sharp.dim() == 4 && sharp.size(1) <= 8, op, ": sharp must be [B, C <= 8, H, W], got ", describe(sharp));
  const int64_t b = sharp.size(0), h = sharp.size(2), w = sharp.size(3);
  RF_CHECK(seeds.shape() == Shape({b, kReblurSeeds, h, w}), op, ": seeds ", describe(seeds), " should be [", b, ", 35, ", h,
           ", ", w, "]");
  RF_CHECK(maps.shape() == Shape({b, 8, h, w}), op, ": maps ", describe(maps), " should be [", b, ", 8, ", h, ", ", w, "]");
  Device dev = same_device(op, {sharp, seeds, maps});
  ReblurGeometry g{b, sharp.size(1), h, w};
  Tensor out = empty_like(sharp), lse = empty({b, kReblurSizes, h, w}, dev);
  count_macs(b * h * w * 679 * (sharp.size(1) + 1));  // 679 taps: the kernels' softmax and the filtering
  if (dev == Device::CUDA)
    RF_GPU_OP("isotropic_reblur", (sharp, seeds, maps),
              gpu::reblur_forward(g, sharp.data(), seeds.data(), maps.data(), out.data(), lse.data()));
  else
    cpu::reblur_forward(g, sharp.data(), seeds.data(), maps.data(), out.data(), lse.data());
  if (needs_grad({sharp, seeds, maps})) {
    Tensor s = sharp.detach(), sd = seeds.detach(), m = maps.detach();
    record(out, op, {sharp, seeds, maps}, [g, s, sd, m, lse](const Tensor& go) {
      Tensor ds = empty_like(s), dsd = empty_like(sd), dm = empty_like(m);
      if (go.is_cuda())
        RF_GPU(gpu::reblur_backward(g, s.data(), sd.data(), m.data(), lse.data(), go.data(), ds.data(), dsd.data(), dm.data()));
      else
        cpu::reblur_backward(g, s.data(), sd.data(), m.data(), lse.data(), go.data(), ds.data(), dsd.data(), dm.data());
      return std::vector<Tensor>{ds, dsd, dm};
    });
  }
  return out;
}

Tensor isotropic_reblur_unfused(const Tensor& sharp, const Tensor& seeds, const Tensor& maps) {
  const int64_t b = sharp.size(0), c = sharp.size(1), h = sharp.size(2), w = sharp.size(3);
  Tensor out = sharp * slice(maps, 1, 0, 1);
  for (int r = 1; r <= (int)kReblurSizes; ++r) {
    const int64_t kk = 2 * r + 1, l = r + 1;
    // logits [B, K^2, HW] = coef [K^2, L] x |seeds of the group| [B, L, HW]
    std::vector<float> coef(kk * kk * l, 0.f);
    for (int dy = -r; dy <= r; ++dy)
      for (int dx = -r; dx <= r; ++dx) {
        TapWeights tw = tap_weights(dy, dx, r);
        const int64_t t = (dy + r) * kk + dx + r;
        if (!tw.inside) continue;
        coef[t * l + tw.lo] += tw.w_lo;
        if (tw.w_hi != 0.f) coef[t * l + tw.hi] += tw.w_hi;
      }
    Tensor a = abs(slice(seeds, 1, seed_offset(r), seed_offset(r) + l)).reshape({b, l, h * w});
    Tensor kernels = softmax(matmul(from_vector(coef, {kk * kk, l}, sharp.device()), a), 1).reshape({b, kk * kk, h, w});
    Tensor padded = pad2d(sharp, r, r, r, r, PadMode::Zeros);
    Tensor blurred;
    for (int64_t t = 0; t < kk * kk; ++t) {
      const int64_t dy = t / kk, dx = t % kk;
      Tensor shifted = slice(slice(padded, 2, dy, dy + h), 3, dx, dx + w);
      Tensor term = shifted * slice(kernels, 1, t, t + 1);
      blurred = blurred.defined() ? blurred + term : term;
    }
    out = out + blurred * slice(maps, 1, r, r + 1);
  }
  (void)c;
  return out;
}

}  // namespace rf
