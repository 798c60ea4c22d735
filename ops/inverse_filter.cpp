#include "ops/inverse_filter.h"

#include <algorithm>
#include <cstring>

#include "engine/autograd.h"
#include "ops/conv.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/inverse_filter_impl.h"
#include "ops/macs.h"
#include "ops/reduce.h"
#include "ops/shape.h"

namespace rf {

int64_t InverseFilterShape::kernel_floats() const {
  int64_t n = 0;
  for (int64_t s : sizes) n += bases * s * s;
  return n;
}

namespace cpu {

namespace {

// f[x] = sum_{dy, dx} k[dy s + dx] img[y + dy - r, x + dx - r] for one output row y (zero outside the image).
void correlate_row(const float* img, int64_t h, int64_t w, int64_t y, const float* k, int64_t s, float* f) {
  const int64_t r = s / 2;
  std::fill(f, f + w, 0.f);
  for (int64_t dy = 0; dy < s; ++dy) {
    const int64_t yy = y + dy - r;
    if (yy < 0 || yy >= h) continue;
    const float* src = img + yy * w;
    for (int64_t dx = 0; dx < s; ++dx) {
      const float kv = k[dy * s + dx];
      const int64_t off = dx - r, x0 = std::max<int64_t>(0, -off), x1 = std::min<int64_t>(w, w - off);
      for (int64_t xx = x0; xx < x1; ++xx) f[xx] += kv * src[xx + off];
    }
  }
}

// sum_i a[i] b[i] in eight fixed lanes, so that the compiler can vectorise it (a plain float sum cannot be
// reordered) while the result stays independent of the machine and the thread count.
float dot_lanes(const float* a, const float* b, int64_t n) {
  float lane[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += a[i + j] * b[i + j];
  float acc = ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// Rows are cut into this many fixed chunks for the reductions over pixels, so that sums do not depend on the
// thread count.
constexpr int64_t kChunks = 64;

}  // namespace

void inverse_filter_forward(const InverseFilterGeometry& g, const float* x, const float* k, const float* mu,
                            const float* omega, const float* weight, const float* bias, float* out) {
  const int64_t hw = g.h * g.w, wc = g.weight_cols();
#pragma omp parallel
  {
    std::vector<float> f(g.w), t(g.w);
#pragma omp for schedule(static)
    for (int64_t row = 0; row < g.b * g.h; ++row) {
      const int64_t b = row / g.h, y = row % g.h;
      for (int64_t o = 0; o < g.o; ++o) std::fill(out + (b * g.o + o) * hw + y * g.w, out + (b * g.o + o) * hw + (y + 1) * g.w, bias ? bias[o] : 0.f);
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const int64_t s = g.size[gi], grp = gi + 1;
        const float* mu_row = mu + (b * (g.groups + 1) + grp) * hw + y * g.w;
        for (int64_t n = 0; n < g.bases; ++n) {
          const float* kn = k + g.offset[gi] + n * s * s;
          const float* om_row = omega + (b * g.bases + n) * hw + y * g.w;
          for (int64_t xx = 0; xx < g.w; ++xx) t[xx] = mu_row[xx] * om_row[xx];
          for (int64_t ch = 0; ch < g.c; ++ch) {
            correlate_row(x + (b * g.c + ch) * hw, g.h, g.w, y, kn, s, f.data());
            for (int64_t o = 0; o < g.o; ++o) {
              const float wv = weight[o * wc + g.col(grp, ch, n)];
              float* orow = out + (b * g.o + o) * hw + y * g.w;
              for (int64_t xx = 0; xx < g.w; ++xx) orow[xx] += wv * t[xx] * f[xx];
            }
          }
        }
      }
    }
  }
}

void inverse_filter_backward(const InverseFilterGeometry& g, const float* x, const float* k, const float* mu,
                             const float* omega, const float* weight, const float* gout, float* dx, float* dk, float* dmu,
                             float* domega, float* dweight) {
  const int64_t hw = g.h * g.w, wc = g.weight_cols(), rows = g.b * g.h;
  const int64_t chunks = std::min(kChunks, rows);
  std::fill(dx, dx + g.b * g.c * hw, 0.f);
  std::fill(dmu, dmu + g.b * (g.groups + 1) * hw, 0.f);
  std::fill(domega, domega + g.b * g.bases * hw, 0.f);
  std::fill(dweight, dweight + g.o * wc, 0.f);
  // G[b, c, p] = mu_g omega_n sum_o weight[o, col] gout[b, o, p]: the gradient reaching the filtered plane of
  // (g, n, c). Kernel by kernel, so that only one such set of planes exists at a time.
  std::vector<float> G(g.b * g.c * hw);
  std::vector<double> part_w(chunks * g.o * g.c), part_k;
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    const int64_t s = g.size[gi], r = s / 2, grp = gi + 1;
    part_k.assign(chunks * g.c * s * s, 0.0);
    for (int64_t n = 0; n < g.bases; ++n) {
      const float* kn = k + g.offset[gi] + n * s * s;
      std::fill(part_w.begin(), part_w.end(), 0.0);
      std::fill(part_k.begin(), part_k.end(), 0.0);
#pragma omp parallel
      {
        std::vector<float> f(g.w), a(g.w), t(g.w);
#pragma omp for schedule(static)
        for (int64_t chunk = 0; chunk < chunks; ++chunk)
          for (int64_t row = rows * chunk / chunks; row < rows * (chunk + 1) / chunks; ++row) {
            const int64_t b = row / g.h, y = row % g.h;
            const float* mu_row = mu + (b * (g.groups + 1) + grp) * hw + y * g.w;
            const float* om_row = omega + (b * g.bases + n) * hw + y * g.w;
            float* dmu_row = dmu + (b * (g.groups + 1) + grp) * hw + y * g.w;
            float* dom_row = domega + (b * g.bases + n) * hw + y * g.w;
            for (int64_t ch = 0; ch < g.c; ++ch) {
              const float* img = x + (b * g.c + ch) * hw;
              correlate_row(img, g.h, g.w, y, kn, s, f.data());
              std::fill(a.begin(), a.end(), 0.f);
              for (int64_t xx = 0; xx < g.w; ++xx) t[xx] = mu_row[xx] * om_row[xx] * f[xx];
              for (int64_t o = 0; o < g.o; ++o) {
                const float wv = weight[o * wc + g.col(grp, ch, n)];
                const float* grow = gout + (b * g.o + o) * hw + y * g.w;
                for (int64_t xx = 0; xx < g.w; ++xx) a[xx] += wv * grow[xx];
                part_w[(chunk * g.o + o) * g.c + ch] += dot_lanes(grow, t.data(), g.w);
              }
              float* grow_out = G.data() + (b * g.c + ch) * hw + y * g.w;
              for (int64_t xx = 0; xx < g.w; ++xx) {
                const float af = a[xx] * f[xx];
                dmu_row[xx] += om_row[xx] * af;
                dom_row[xx] += mu_row[xx] * af;
                grow_out[xx] = mu_row[xx] * om_row[xx] * a[xx];
              }
              // dk[dy, dx] += sum_x G[x] img[y + dy - r, x + dx - r]
              double* pk = part_k.data() + (chunk * g.c + ch) * s * s;
              for (int64_t dy = 0; dy < s; ++dy) {
                const int64_t yy = y + dy - r;
                if (yy < 0 || yy >= g.h) continue;
                const float* src = img + yy * g.w;
                for (int64_t dxx = 0; dxx < s; ++dxx) {
                  const int64_t off = dxx - r, x0 = std::max<int64_t>(0, -off), x1 = std::min<int64_t>(g.w, g.w - off);
                  pk[dy * s + dxx] += dot_lanes(grow_out + x0, src + x0 + off, x1 - x0);
                }
              }
            }
          }
        // dx[q] += sum_d k[d] G[q - d + r]: the adjoint of the correlation, gathered by output row (one writer).
#pragma omp for schedule(static)
        for (int64_t row = 0; row < g.b * g.c * g.h; ++row) {
          const int64_t bc = row / g.h, y = row % g.h;
          const float* plane = G.data() + bc * hw;
          float* drow = dx + bc * hw + y * g.w;
          for (int64_t dy = 0; dy < s; ++dy) {
            const int64_t yy = y - dy + r;
            if (yy < 0 || yy >= g.h) continue;
            const float* src = plane + yy * g.w;
            for (int64_t dxx = 0; dxx < s; ++dxx) {
              const float kv = kn[dy * s + dxx];
              const int64_t off = r - dxx, x0 = std::max<int64_t>(0, -off), x1 = std::min<int64_t>(g.w, g.w - off);
              for (int64_t xx = x0; xx < x1; ++xx) drow[xx] += kv * src[xx + off];
            }
          }
        }
      }
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {  // the fixed-order sums of the chunks
        for (int64_t o = 0; o < g.o; ++o)
          for (int64_t ch = 0; ch < g.c; ++ch) dweight[o * wc + g.col(grp, ch, n)] += (float)part_w[(chunk * g.o + o) * g.c + ch];
      }
      float* dkn = dk + g.offset[gi] + n * s * s;
      for (int64_t i = 0; i < s * s; ++i) {
        double acc = 0;
        for (int64_t chunk = 0; chunk < chunks; ++chunk)
          for (int64_t ch = 0; ch < g.c; ++ch) acc += part_k[(chunk * g.c + ch) * s * s + i];
        dkn[i] = (float)acc;
      }
    }
  }
}

}  // namespace cpu

namespace {

Tensor int_table(const std::vector<int32_t>& v, Device d) {
  Tensor t = empty({std::max<int64_t>(1, (int64_t)v.size())});
  std::memcpy(t.data(), v.data(), v.size() * sizeof(int32_t));  // int32 bit patterns in a float32 tensor
  return t.to(d);
}

struct Tables {
  Tensor size, offset;
};

Tables make_tables(const InverseFilterShape& shape, Device d) {
  std::vector<int32_t> size, offset;
  int64_t at = 0;
  for (int64_t s : shape.sizes) {
    RF_CHECK(s >= 1 && s % 2 == 1, "inverse_filter: kernel sizes must be odd, got ", s);
    size.push_back((int32_t)s);
    offset.push_back((int32_t)at);
    at += shape.bases * s * s;
  }
  return {int_table(size, d), int_table(offset, d)};
}

InverseFilterGeometry geometry(const Tensor& x, const InverseFilterShape& shape, const Tensor& weight, const Tables& t) {
  InverseFilterGeometry g;
  g.b = x.size(0);
  g.c = x.size(1);
  g.h = x.size(2);
  g.w = x.size(3);
  g.o = weight.size(0);
  g.groups = (int64_t)shape.sizes.size();
  g.bases = shape.bases;
  g.kernel_floats = shape.kernel_floats();
  g.size = reinterpret_cast<const int32_t*>(t.size.data());
  g.offset = reinterpret_cast<const int32_t*>(t.offset.data());
  return g;
}

}  // namespace

Tensor inverse_filter(const Tensor& x, const Tensor& kernels, const InverseFilterShape& shape, const Tensor& mu,
                      const Tensor& omega, const Tensor& weight, const Tensor& bias) {
  const char* op = "inverse_filter";
  RF_CHECK(x.dim() == 4, op, ": x must be [B, C, H, W], got ", describe(x));
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), groups = (int64_t)shape.sizes.size();
  RF_CHECK(groups >= 1 && shape.bases >= 1, op, ": needs at least one group and one basis");
  RF_CHECK(kernels.dim() == 1 && kernels.numel() == shape.kernel_floats(), op, ": kernels ", describe(kernels),
           " should hold ", shape.kernel_floats(), " values");
  RF_CHECK(mu.shape() == Shape({b, groups + 1, h, w}), op, ": mu ", describe(mu), " should be [", b, ", ", groups + 1, ", ", h,
           ", ", w, "]");
  RF_CHECK(omega.shape() == Shape({b, shape.bases, h, w}), op, ": omega ", describe(omega), " should be [", b, ", ",
           shape.bases, ", ", h, ", ", w, "]");
  RF_CHECK(weight.dim() == 2 && weight.size(1) == (groups + 1) * c * shape.bases &&
               weight.size(0) <= InverseFilterGeometry::kMaxOut,
           op, ": weight ", describe(weight), " should be [O <= 8, ", (groups + 1) * c * shape.bases, "]");
  RF_CHECK(!bias.defined() || bias.shape() == Shape({weight.size(0)}), op, ": bias ", describe(bias), " should be [",
           weight.size(0), "]");
  Device dev = same_device(op, {x, kernels, mu, omega, weight, bias});
  auto tables = std::make_shared<Tables>(make_tables(shape, dev));
  InverseFilterGeometry g = geometry(x, shape, weight, *tables);
  Tensor out = empty({b, g.o, h, w}, dev);
  count_macs(b * h * w * (shape.kernel_floats() * c + groups * shape.bases * c * g.o));
  const float* bp = bias.defined() ? bias.data() : nullptr;
  if (dev == Device::CUDA)
    RF_GPU_OP("inverse_filter", (x, kernels, mu, omega, weight),
              gpu::inverse_filter_forward(g, x.data(), kernels.data(), mu.data(), omega.data(), weight.data(), bp,
                                          out.data()));
  else
    cpu::inverse_filter_forward(g, x.data(), kernels.data(), mu.data(), omega.data(), weight.data(), bp, out.data());
  if (needs_grad({x, kernels, mu, omega, weight, bias})) {
    Tensor xs = x.detach(), ks = kernels.detach(), ms = mu.detach(), os = omega.detach(), ws = weight.detach();
    const bool with_bias = bias.defined();
    record(out, op, {x, kernels, mu, omega, weight, bias}, [g, tables, xs, ks, ms, os, ws, with_bias](const Tensor& go) {
      Tensor dx = empty_like(xs), dk = empty_like(ks), dmu = empty_like(ms), dom = empty_like(os), dw = empty_like(ws);
      if (go.is_cuda())
        RF_GPU(gpu::inverse_filter_backward(g, xs.data(), ks.data(), ms.data(), os.data(), ws.data(), go.data(), dx.data(),
                                            dk.data(), dmu.data(), dom.data(), dw.data()));
      else
        cpu::inverse_filter_backward(g, xs.data(), ks.data(), ms.data(), os.data(), ws.data(), go.data(), dx.data(), dk.data(),
                                     dmu.data(), dom.data(), dw.data());
      Tensor db = with_bias ? sum(go, {0, 2, 3}) : Tensor();
      return std::vector<Tensor>{dx, dk, dmu, dom, dw, db};
    });
  }
  return out;
}

Tensor inverse_filter_unfused(const Tensor& x, const Tensor& kernels, const InverseFilterShape& shape, const Tensor& mu,
                              const Tensor& omega, const Tensor& weight, const Tensor& bias) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), n = shape.bases;
  std::vector<Tensor> groups = {zeros({b, 1, c * n, h, w}, x.device())};  // the null group
  int64_t at = 0;
  for (int64_t s : shape.sizes) {
    Tensor kg = slice(kernels, 0, at, at + n * s * s).reshape({n, 1, s, s});
    at += n * s * s;
    // weight [C N, 1, s, s] with output channel ch N + nn = colour ch, basis nn (groups = C)
    Tensor wk = concat(std::vector<Tensor>(c, kg), 0);
    groups.push_back(unsqueeze(conv2d(x, wk, Tensor(), ConvOptions::make(1, s / 2, 1, c)), 1));
  }
  Tensor maps = concat(groups, 1);                                                      // [B, G + 1, C N, H, W]
  Tensor om = concat(std::vector<Tensor>(c, omega), 1);                                 // [B, C N, H, W]
  Tensor prod = maps * unsqueeze(mu, 2) * unsqueeze(om, 1);
  Tensor flat = prod.reshape({b, -1, h, w});                                            // [B, (G + 1) C N, H, W]
  return conv2d(flat, weight.reshape({weight.size(0), weight.size(1), 1, 1}), bias);
}

}  // namespace rf
