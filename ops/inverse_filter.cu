// CUDA version of ops/inverse_filter.h: one thread per output pixel for the forward, for dmu/domega and for dx
// (the adjoint gathered, so every output has one writer); the kernel and mixing-weight gradients are sums over
// pixels, taken per fixed chunk of pixels (block_sum) and then added in chunk order by the deterministic reduction.
#include <algorithm>

#include "engine/allocator.h"
#include "ops/cuda_common.cuh"
#include "ops/inverse_filter_impl.h"
#include "ops/reduce_impl.h"

namespace rf::gpu {

namespace {

constexpr int kMaxBases = 16;

__device__ __forceinline__ float correlate_at(const float* img, int64_t h, int64_t w, int64_t y, int64_t x, const float* k,
                                              int s) {
  const int r = s / 2;
  float f = 0.f;
  for (int dy = 0; dy < s; ++dy) {
    const int64_t yy = y + dy - r;
    if (yy < 0 || yy >= h) continue;
    for (int dx = 0; dx < s; ++dx) {
      const int64_t xx = x + dx - r;
      if (xx >= 0 && xx < w) f += k[dy * s + dx] * img[yy * w + xx];
    }
  }
  return f;
}

// sum_o weight[o, col] gout[b, o, p]
__device__ __forceinline__ float mixed_gradient(const InverseFilterGeometry& g, const float* weight, const float* gout, int64_t b,
                                                int64_t p, int64_t col) {
  const int64_t hw = g.h * g.w, wc = g.weight_cols();
  float a = 0.f;
  for (int64_t o = 0; o < g.o; ++o) a += weight[o * wc + col] * gout[(b * g.o + o) * hw + p];
  return a;
}

__global__ void forward_kernel(InverseFilterGeometry g, const float* x, const float* k, const float* mu, const float* omega,
                               const float* weight, const float* bias, float* out) {
  const int64_t hw = g.h * g.w, wc = g.weight_cols();
  RF_GRID_STRIDE(i, g.b * hw) {
    const int64_t b = i / hw, p = i % hw, y = p / g.w, xx = p % g.w;
    float acc[InverseFilterGeometry::kMaxOut];
    for (int64_t o = 0; o < g.o; ++o) acc[o] = bias ? bias[o] : 0.f;
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const int s = g.size[gi];
      const float m = mu[(b * (g.groups + 1) + gi + 1) * hw + p];
      for (int64_t n = 0; n < g.bases; ++n) {
        const float t = m * omega[(b * g.bases + n) * hw + p];
        const float* kn = k + g.offset[gi] + n * s * s;
        for (int64_t ch = 0; ch < g.c; ++ch) {
          const float tf = t * correlate_at(x + (b * g.c + ch) * hw, g.h, g.w, y, xx, kn, s);
          const int64_t col = g.col(gi + 1, ch, n);
          for (int64_t o = 0; o < g.o; ++o) acc[o] += weight[o * wc + col] * tf;
        }
      }
    }
    for (int64_t o = 0; o < g.o; ++o) out[(b * g.o + o) * hw + p] = acc[o];
  }
}

// dmu[b, g, p] = sum_{n, c} omega_n a f;  domega[b, n, p] = sum_{g, c} mu_g a f   (a = sum_o W gout, f filtered)
__global__ void dmu_domega_kernel(InverseFilterGeometry g, const float* x, const float* k, const float* mu, const float* omega,
                                  const float* weight, const float* gout, float* dmu, float* domega) {
  const int64_t hw = g.h * g.w;
  RF_GRID_STRIDE(i, g.b * hw) {
    const int64_t b = i / hw, p = i % hw, y = p / g.w, xx = p % g.w;
    float dom[kMaxBases];
    for (int64_t n = 0; n < g.bases; ++n) dom[n] = 0.f;
    dmu[(b * (g.groups + 1)) * hw + p] = 0.f;  // the null group filters nothing
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const int s = g.size[gi];
      const float m = mu[(b * (g.groups + 1) + gi + 1) * hw + p];
      float dm = 0.f;
      for (int64_t n = 0; n < g.bases; ++n) {
        const float* kn = k + g.offset[gi] + n * s * s;
        float af = 0.f;
        for (int64_t ch = 0; ch < g.c; ++ch)
          af += mixed_gradient(g, weight, gout, b, p, g.col(gi + 1, ch, n)) *
                correlate_at(x + (b * g.c + ch) * hw, g.h, g.w, y, xx, kn, s);
        dm += omega[(b * g.bases + n) * hw + p] * af;
        dom[n] += m * af;
      }
      dmu[(b * (g.groups + 1) + gi + 1) * hw + p] = dm;
    }
    for (int64_t n = 0; n < g.bases; ++n) domega[(b * g.bases + n) * hw + p] = dom[n];
  }
}

// dx[b, c, q] = sum_{g, n, d} k_gn[d] G(q - d + r), G(p) = mu_g(p) omega_n(p) sum_o W gout(p): the adjoint, gathered.
__global__ void dx_kernel(InverseFilterGeometry g, const float* k, const float* mu, const float* omega, const float* weight,
                          const float* gout, float* dx) {
  const int64_t hw = g.h * g.w;
  RF_GRID_STRIDE(i, g.b * g.c * hw) {
    const int64_t bc = i / hw, q = i % hw, b = bc / g.c, ch = bc % g.c, y = q / g.w, xx = q % g.w;
    float acc = 0.f;
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const int s = g.size[gi], r = s / 2;
      for (int64_t n = 0; n < g.bases; ++n) {
        const float* kn = k + g.offset[gi] + n * s * s;
        const int64_t col = g.col(gi + 1, ch, n);
        for (int dy = 0; dy < s; ++dy) {
          const int64_t py = y - dy + r;
          if (py < 0 || py >= g.h) continue;
          for (int ddx = 0; ddx < s; ++ddx) {
            const int64_t px = xx - ddx + r;
            if (px < 0 || px >= g.w) continue;
            const int64_t p = py * g.w + px;
            const float gv = mu[(b * (g.groups + 1) + gi + 1) * hw + p] * omega[(b * g.bases + n) * hw + p] *
                             mixed_gradient(g, weight, gout, b, p, col);
            acc += kn[dy * s + ddx] * gv;
          }
        }
      }
    }
    dx[i] = acc;
  }
}

// Partial sums over pixel chunk blockIdx.y of sum_p gout_o(p) mu_g omega_n f_{g,n,c}(p), for combo blockIdx.x = (gi, n, c)
// (combos on x: gridDim.y stops at 65535, and the chunks are at most 256).
__global__ void dweight_partial_kernel(InverseFilterGeometry g, const float* x, const float* k, const float* mu,
                                       const float* omega, const float* gout, int64_t chunks, float* partial) {
  const int64_t hw = g.h * g.w, pixels = g.b * hw, per = (pixels + chunks - 1) / chunks;
  const int64_t combo = blockIdx.x, gi = combo / (g.bases * g.c), n = (combo / g.c) % g.bases, ch = combo % g.c;
  const int s = g.size[gi];
  const float* kn = k + g.offset[gi] + n * s * s;
  const int64_t p0 = blockIdx.y * per, p1 = min(pixels, p0 + per);
  float acc[InverseFilterGeometry::kMaxOut];
  for (int64_t o = 0; o < g.o; ++o) acc[o] = 0.f;
  for (int64_t i = p0 + threadIdx.x; i < p1; i += blockDim.x) {
    const int64_t b = i / hw, p = i % hw;
    const float tf = mu[(b * (g.groups + 1) + gi + 1) * hw + p] * omega[(b * g.bases + n) * hw + p] *
                     correlate_at(x + (b * g.c + ch) * hw, g.h, g.w, p / g.w, p % g.w, kn, s);
    for (int64_t o = 0; o < g.o; ++o) acc[o] += gout[(b * g.o + o) * hw + p] * tf;
  }
  for (int64_t o = 0; o < g.o; ++o) {
    const float v = block_sum(acc[o]);
    if (threadIdx.x == 0) partial[(combo * g.o + o) * chunks + blockIdx.y] = v;
  }
}

// Partial sums over pixel chunk blockIdx.y of sum_{p, c} G_c(p) x_c(p + d - r), for tap blockIdx.x of the flat kernels.
__global__ void dk_partial_kernel(InverseFilterGeometry g, const float* x, const float* mu, const float* omega,
                                  const float* weight, const float* gout, int64_t chunks, float* partial) {
  const int64_t hw = g.h * g.w, pixels = g.b * hw, per = (pixels + chunks - 1) / chunks, tap = blockIdx.x;
  int64_t gi = 0;
  while (gi + 1 < g.groups && tap >= g.offset[gi + 1]) ++gi;
  const int s = g.size[gi], r = s / 2;
  const int64_t local = tap - g.offset[gi], n = local / (s * s), d = local % (s * s), dy = d / s, ddx = d % s;
  const int64_t p0 = blockIdx.y * per, p1 = min(pixels, p0 + per);
  float acc = 0.f;
  for (int64_t i = p0 + threadIdx.x; i < p1; i += blockDim.x) {
    const int64_t b = i / hw, p = i % hw, yy = p / g.w + dy - r, xx = p % g.w + ddx - r;
    if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
    const float t = mu[(b * (g.groups + 1) + gi + 1) * hw + p] * omega[(b * g.bases + n) * hw + p];
    for (int64_t ch = 0; ch < g.c; ++ch)
      acc += t * mixed_gradient(g, weight, gout, b, p, g.col(gi + 1, ch, n)) * x[(b * g.c + ch) * hw + yy * g.w + xx];
  }
  const float v = block_sum(acc);
  if (threadIdx.x == 0) partial[tap * chunks + blockIdx.y] = v;
}

// dweight[o, col(g, c, n)] from the per-combo sums (the null group's columns get zeros).
__global__ void scatter_dweight_kernel(InverseFilterGeometry g, const float* sums, float* dweight) {
  const int64_t wc = g.weight_cols();
  RF_GRID_STRIDE(i, g.o * wc) {
    const int64_t o = i / wc, colm = i % wc, grp = colm / (g.c * g.bases), ch = (colm / g.bases) % g.c, n = colm % g.bases;
    dweight[i] = grp == 0 ? 0.f : sums[(((grp - 1) * g.bases + n) * g.c + ch) * g.o + o];
  }
}

struct Scratch {
  float* p = nullptr;
  size_t bytes;
  explicit Scratch(int64_t n) : bytes(sizeof(float) * (size_t)std::max<int64_t>(1, n)) {
    p = static_cast<float*>(device_alloc(Device::CUDA, bytes));
  }
  ~Scratch() { device_free(Device::CUDA, p, bytes); }
};

}  // namespace

void inverse_filter_forward(const InverseFilterGeometry& g, const float* x, const float* k, const float* mu, const float* omega,
                            const float* weight, const float* bias, float* out) {
  const int64_t n = g.b * g.h * g.w;
  if (n == 0) return;
  forward_kernel<<<rf_blocks(n), 256>>>(g, x, k, mu, omega, weight, bias, out);
  RF_LAUNCH_CHECK("inverse_filter");
}

void inverse_filter_backward(const InverseFilterGeometry& g, const float* x, const float* k, const float* mu,
                             const float* omega, const float* weight, const float* gout, float* dx, float* dk, float* dmu,
                             float* domega, float* dweight) {
  RF_CHECK(g.bases <= kMaxBases, "inverse_filter on cuda: at most ", kMaxBases, " bases, got ", g.bases);
  const int64_t pixels = g.b * g.h * g.w;
  if (pixels == 0) {  // no pixel adds to the kernels' and the mix's gradients: zeros, as on the CPU
    if (g.kernel_floats > 0) RF_CUDA_CHECK(cudaMemsetAsync(dk, 0, sizeof(float) * (size_t)g.kernel_floats));
    if (g.o * g.weight_cols() > 0) RF_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(float) * (size_t)(g.o * g.weight_cols())));
    return;
  }
  dmu_domega_kernel<<<rf_blocks(pixels), 256>>>(g, x, k, mu, omega, weight, gout, dmu, domega);
  RF_LAUNCH_CHECK("inverse_filter backward (dmu, domega)");
  dx_kernel<<<rf_blocks(pixels * g.c), 256>>>(g, k, mu, omega, weight, gout, dx);
  RF_LAUNCH_CHECK("inverse_filter backward (dx)");
  // Sums over pixels in a fixed number of chunks (set by the size), then added in chunk order.
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(256, (pixels + 1023) / 1024));
  const int64_t combos = g.groups * g.bases * g.c, taps = g.kernel_floats;
  if (combos > 0) {  // no colour channel: no mixing weight to differentiate (and an empty grid is an invalid launch)
    Scratch partial(combos * g.o * chunks), sums(combos * g.o);
    dweight_partial_kernel<<<dim3((unsigned)combos, (unsigned)chunks), 256>>>(g, x, k, mu, omega, gout, chunks, partial.p);
    RF_LAUNCH_CHECK("inverse_filter backward (dweight)");
    reduce_sum(make_reduce_indexer({combos * g.o, chunks}, {false, true}), partial.p, sums.p, 1.f);
    scatter_dweight_kernel<<<rf_blocks(g.o * g.weight_cols()), 256>>>(g, sums.p, dweight);
    RF_LAUNCH_CHECK("inverse_filter backward (dweight scatter)");
  }
  {
    Scratch partial(taps * chunks);
    dk_partial_kernel<<<dim3((unsigned)taps, (unsigned)chunks), 256>>>(g, x, mu, omega, weight, gout, chunks, partial.p);
    RF_LAUNCH_CHECK("inverse_filter backward (dk)");
    reduce_sum(make_reduce_indexer({taps, chunks}, {false, true}), partial.p, dk, 1.f);
  }
}

}  // namespace rf::gpu
