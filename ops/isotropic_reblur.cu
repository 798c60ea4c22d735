// CUDA version of ops/isotropic_reblur.h: one thread per pixel. The forward keeps each kernel's log-sum-exp so
// that the backward rebuilds any tap of any pixel's kernel from its seeds; the image gradient is gathered (one
// writer per pixel, no atomics).
#include "ops/cuda_common.cuh"
#include "ops/isotropic_reblur_impl.h"

namespace rf::gpu {

namespace {

__device__ __forceinline__ float tap_logit(const float* a, int64_t hw, int dy, int dx, int r) {
  const TapWeights w = tap_weights(dy, dx, r);
  if (!w.inside) return 0.f;
  return w.w_lo * fabsf(a[w.lo * hw]) + (w.w_hi != 0.f ? w.w_hi * fabsf(a[w.hi * hw]) : 0.f);
}

__device__ __forceinline__ float sgn(float v) { return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f); }

__global__ void forward_kernel(ReblurGeometry g, const float* sharp, const float* seeds, const float* maps, float* out, float* lse) {
  const int64_t hw = g.h * g.w;
  RF_GRID_STRIDE(i, g.b * hw) {
    const int64_t b = i / hw, p = i % hw, y = p / g.w, x = p % g.w;
    float acc[8];
    const float m0 = maps[(b * 8) * hw + p];
    for (int64_t ch = 0; ch < g.c; ++ch) acc[ch] = m0 * sharp[(b * g.c + ch) * hw + p];
    for (int r = 1; r <= 7; ++r) {
      const float* a = seeds + (b * 35 + seed_offset(r)) * hw + p;
      float mx = 0.f;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) mx = fmaxf(mx, tap_logit(a, hw, dy, dx, r));
      float s = 0.f;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) s += __expf(tap_logit(a, hw, dy, dx, r) - mx);
      const float l = mx + logf(s), mr = maps[(b * 8 + r) * hw + p];
      lse[(b * 7 + r - 1) * hw + p] = l;
      for (int dy = -r; dy <= r; ++dy) {
        const int64_t yy = y + dy;
        if (yy < 0 || yy >= g.h) continue;
        for (int dx = -r; dx <= r; ++dx) {
          const int64_t xx = x + dx;
          if (xx < 0 || xx >= g.w) continue;
          const float k = mr * __expf(tap_logit(a, hw, dy, dx, r) - l);
          for (int64_t ch = 0; ch < g.c; ++ch) acc[ch] += k * sharp[(b * g.c + ch) * hw + yy * g.w + xx];
        }
      }
    }
    for (int64_t ch = 0; ch < g.c; ++ch) out[(b * g.c + ch) * hw + p] = acc[ch];
  }
}

// Per pixel: d maps (8) and d seeds (35).
__global__ void maps_seeds_kernel(ReblurGeometry g, const float* sharp, const float* seeds, const float* maps, const float* lse,
                                  const float* gout, float* dseeds, float* dmaps) {
  const int64_t hw = g.h * g.w;
  RF_GRID_STRIDE(i, g.b * hw) {
    const int64_t b = i / hw, p = i % hw, y = p / g.w, x = p % g.w;
    auto gv_at = [&](int dy, int dx) {  // sum_c gout_c(p) sharp_c(p + t), zero outside
      const int64_t yy = y + dy, xx = x + dx;
      if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) return 0.f;
      float v = 0.f;
      for (int64_t ch = 0; ch < g.c; ++ch) v += gout[(b * g.c + ch) * hw + p] * sharp[(b * g.c + ch) * hw + yy * g.w + xx];
      return v;
    };
    dmaps[(b * 8) * hw + p] = gv_at(0, 0);
    for (int r = 1; r <= 7; ++r) {
      const float* a = seeds + (b * 35 + seed_offset(r)) * hw + p;
      const float l = lse[(b * 7 + r - 1) * hw + p], mr = maps[(b * 8 + r) * hw + p];
      float dm = 0.f;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) dm += __expf(tap_logit(a, hw, dy, dx, r) - l) * gv_at(dy, dx);
      dmaps[(b * 8 + r) * hw + p] = dm;
      // softmax backward: dlogit_t = k_t (dk_t - sum k dk) with dk_t = mr gv_t, so sum k dk = mr dm
      float ds[8];
      for (int j = 0; j <= r; ++j) ds[j] = 0.f;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) {
          const TapWeights w = tap_weights(dy, dx, r);
          if (!w.inside) continue;
          const float k = __expf(tap_logit(a, hw, dy, dx, r) - l);
          const float dl = k * (mr * gv_at(dy, dx) - mr * dm);
          ds[w.lo] += dl * w.w_lo * sgn(a[w.lo * hw]);
          if (w.w_hi != 0.f) ds[w.hi] += dl * w.w_hi * sgn(a[w.hi * hw]);
        }
      for (int j = 0; j <= r; ++j) dseeds[(b * 35 + seed_offset(r) + j) * hw + p] = ds[j];
    }
  }
}

__global__ void dsharp_kernel(ReblurGeometry g, const float* seeds, const float* maps, const float* lse, const float* gout,
                              float* dsharp) {
  const int64_t hw = g.h * g.w;
  RF_GRID_STRIDE(i, g.b * hw) {
    const int64_t b = i / hw, q = i % hw, y = q / g.w, x = q % g.w;
    float acc[8];
    const float m0 = maps[(b * 8) * hw + q];
    for (int64_t ch = 0; ch < g.c; ++ch) acc[ch] = m0 * gout[(b * g.c + ch) * hw + q];
    for (int r = 1; r <= 7; ++r)
      for (int dy = -r; dy <= r; ++dy) {
        const int64_t py = y - dy;
        if (py < 0 || py >= g.h) continue;
        for (int dx = -r; dx <= r; ++dx) {
          const int64_t px = x - dx;
          if (px < 0 || px >= g.w) continue;
          const int64_t p = py * g.w + px;
          const float* a = seeds + (b * 35 + seed_offset(r)) * hw + p;
          const float coef = maps[(b * 8 + r) * hw + p] * __expf(tap_logit(a, hw, dy, dx, r) - lse[(b * 7 + r - 1) * hw + p]);
          for (int64_t ch = 0; ch < g.c; ++ch) acc[ch] += coef * gout[(b * g.c + ch) * hw + p];
        }
      }
    for (int64_t ch = 0; ch < g.c; ++ch) dsharp[(b * g.c + ch) * hw + q] = acc[ch];
  }
}

}  // namespace

void reblur_forward(const ReblurGeometry& g, const float* sharp, const float* seeds, const float* maps, float* out, float* lse) {
  const int64_t n = g.b * g.h * g.w;
  if (n == 0) return;
  forward_kernel<<<rf_blocks(n, 128), 128>>>(g, sharp, seeds, maps, out, lse);
  RF_LAUNCH_CHECK("isotropic_reblur");
}

void reblur_backward(const ReblurGeometry& g, const float* sharp, const float* seeds, const float* maps, const float* lse,
                     const float* gout, float* dsharp, float* dseeds, float* dmaps) {
  const int64_t n = g.b * g.h * g.w;
  if (n == 0) return;
  maps_seeds_kernel<<<rf_blocks(n, 128), 128>>>(g, sharp, seeds, maps, lse, gout, dseeds, dmaps);
  RF_LAUNCH_CHECK("isotropic_reblur backward (maps, seeds)");
  dsharp_kernel<<<rf_blocks(n, 128), 128>>>(g, seeds, maps, lse, gout, dsharp);
  RF_LAUNCH_CHECK("isotropic_reblur backward (image)");
}

}  // namespace rf::gpu
