// CUDA passes of ops/kernel_bank.h: a row pass over the whole bank into one scratch tensor, then a column
// pass that mixes the planes' kernels; the backward runs the adjoint passes (flipped taps) the same way and
// gathers each input channel's planes in a fixed order (no atomics).
#include <algorithm>

#include "engine/allocator.h"
#include "ops/cuda_common.cuh"
#include "ops/kernel_bank_impl.h"
#include "ops/reduce_impl.h"

namespace rf::gpu {

namespace {

// rows[(b J + j) q + qi, y, x] = sum_s tap_k[s] x[b, channel[j], y, x + s]   (k = kernel[j q + qi])
__global__ void bank_rows_kernel(BankGeometry g, const float* x, float* rows) {
  const int64_t hw = g.h * g.w, n = g.b * g.j * g.q * hw;
  RF_GRID_STRIDE(i, n) {
    const int64_t plane = i / hw, px = i % hw, y = px / g.w, xx = px % g.w;
    const int64_t qi = plane % g.q, j = (plane / g.q) % g.j, b = plane / (g.q * g.j);
    const int32_t k = g.kernel[j * g.q + qi], r = g.radius[k];
    const float* centre = g.taps + k * g.t + g.t / 2;
    const float* in = x + (b * g.c + g.channel[j]) * hw + y * g.w;
    float acc = 0.f;
    for (int s = -r; s <= r; ++s) {
      const int64_t xs = xx + s;
      if (xs >= 0 && xs < g.w) acc += centre[s] * in[xs];
    }
    rows[i] = acc;
  }
}

// Column pass of every plane's kernels, mixed: out[b, j, y, x] = sum_qi w * sum_s tap_k[s] rows[.., y + s, x].
// With per_kernel, writes each kernel's column pass to its own plane instead (for the weights' gradient).
__global__ void bank_cols_kernel(BankGeometry g, const float* rows, const float* weights, float* out, bool per_kernel) {
  const int64_t hw = g.h * g.w, planes = per_kernel ? g.b * g.j * g.q : g.b * g.j, n = planes * hw;
  RF_GRID_STRIDE(i, n) {
    const int64_t plane = i / hw, px = i % hw, y = px / g.w, xx = px % g.w;
    const int64_t bj = per_kernel ? plane / g.q : plane, j = bj % g.j;
    const int64_t q0 = per_kernel ? plane % g.q : 0, q1 = per_kernel ? q0 + 1 : g.q;
    float acc = 0.f;
    for (int64_t qi = q0; qi < q1; ++qi) {
      const int32_t k = g.kernel[j * g.q + qi], r = g.radius[k];
      const float* centre = g.taps + k * g.t + g.t / 2;
      const float* col = rows + (bj * g.q + qi) * hw + xx;
      float part = 0.f;
      for (int s = -r; s <= r; ++s) {
        const int64_t ys = y + s;
        if (ys >= 0 && ys < g.h) part += centre[s] * col[ys * g.w];
      }
      acc += (per_kernel || !weights) ? part : weights[bj * g.q + qi] * part;
    }
    out[i] = acc;
  }
}

// Adjoint of the column pass, weighted: t[(b J + j) q + qi, y, x] = w * sum_s tap_k[-s] gout[b, j, y + s, x].
__global__ void bank_cols_adjoint_kernel(BankGeometry g, const float* gout, const float* weights, float* t) {
  const int64_t hw = g.h * g.w, n = g.b * g.j * g.q * hw;
  RF_GRID_STRIDE(i, n) {
    const int64_t plane = i / hw, px = i % hw, y = px / g.w, xx = px % g.w;
    const int64_t qi = plane % g.q, bj = plane / g.q, j = bj % g.j;
    const int32_t k = g.kernel[j * g.q + qi], r = g.radius[k];
    const float* centre = g.taps + k * g.t + g.t / 2;
    const float* col = gout + bj * hw + xx;
    float acc = 0.f;
    for (int s = -r; s <= r; ++s) {
      const int64_t ys = y + s;
      if (ys >= 0 && ys < g.h) acc += centre[-s] * col[ys * g.w];
    }
    t[i] = weights ? weights[plane] * acc : acc;
  }
}

// Adjoint of the row pass, gathered per input channel in plane order: one writer per element of gx.
__global__ void bank_rows_adjoint_kernel(BankGeometry g, const float* t, float* gx) {
  const int64_t hw = g.h * g.w, n = g.b * g.c * hw;
  RF_GRID_STRIDE(i, n) {
    const int64_t bc = i / hw, px = i % hw, y = px / g.w, xx = px % g.w, b = bc / g.c, c = bc % g.c;
    float acc = 0.f;
    for (int32_t m = g.plane_offset[c]; m < g.plane_offset[c + 1]; ++m) {
      const int64_t j = g.planes_of[m];
      for (int64_t qi = 0; qi < g.q; ++qi) {
        const int32_t k = g.kernel[j * g.q + qi], r = g.radius[k];
        const float* centre = g.taps + k * g.t + g.t / 2;
        const float* row = t + ((b * g.j + j) * g.q + qi) * hw + y * g.w;
        for (int s = -r; s <= r; ++s) {
          const int64_t xs = xx + s;
          if (xs >= 0 && xs < g.w) acc += centre[-s] * row[xs];
        }
      }
    }
    gx[i] = acc;
  }
}

// filtered[plane] *= gout[b, j] (plane = (b J + j) q + qi), before the per-plane sums.
__global__ void bank_times_gout_kernel(BankGeometry g, const float* gout, float* filtered) {
  const int64_t hw = g.h * g.w, n = g.b * g.j * g.q * hw;
  RF_GRID_STRIDE(i, n) {
    const int64_t plane = i / hw, px = i % hw;
    filtered[i] *= gout[(plane / g.q) * hw + px];
  }
}

struct Scratch {
  float* p = nullptr;
  size_t bytes = 0;
  explicit Scratch(int64_t n) : bytes(sizeof(float) * (size_t)std::max<int64_t>(1, n)) {
    p = static_cast<float*>(device_alloc(Device::CUDA, bytes));
  }
  ~Scratch() { device_free(Device::CUDA, p, bytes); }
};

}  // namespace

void bank_forward(const BankGeometry& g, const float* x, const float* weights, float* out) {
  const int64_t hw = g.h * g.w;
  if (g.b * g.j * hw == 0) return;
  Scratch rows(g.b * g.j * g.q * hw);
  bank_rows_kernel<<<rf_blocks(g.b * g.j * g.q * hw), 256>>>(g, x, rows.p);
  RF_LAUNCH_CHECK("kernel_bank (row pass)");
  bank_cols_kernel<<<rf_blocks(g.b * g.j * hw), 256>>>(g, rows.p, weights, out, false);
  RF_LAUNCH_CHECK("kernel_bank (column pass)");
}

void bank_backward(const BankGeometry& g, const float* x, const float* weights, const float* gout, float* gx, float* gw) {
  const int64_t hw = g.h * g.w, planes = g.b * g.j * g.q;
  if (g.b * g.c * hw == 0) {  // no pixel adds to the mixing weights' gradient: zeros, as on the CPU
    if (gw && planes > 0) RF_CUDA_CHECK(cudaMemsetAsync(gw, 0, sizeof(float) * (size_t)planes));
    return;
  }
  Scratch t(planes * hw);
  bank_cols_adjoint_kernel<<<rf_blocks(planes * hw), 256>>>(g, gout, weights, t.p);
  RF_LAUNCH_CHECK("kernel_bank backward (column adjoint)");
  bank_rows_adjoint_kernel<<<rf_blocks(g.b * g.c * hw), 256>>>(g, t.p, gx);
  RF_LAUNCH_CHECK("kernel_bank backward (row adjoint)");
  if (!gw) return;
  // d weights[b, j, qi] = sum over pixels of (kernel (x) x[b, channel[j]]) * gout[b, j]: the filtered planes
  // again, multiplied by the gradient, then summed per plane with the deterministic reduction.
  Scratch rows(planes * hw);
  bank_rows_kernel<<<rf_blocks(planes * hw), 256>>>(g, x, rows.p);
  RF_LAUNCH_CHECK("kernel_bank backward (row pass)");
  bank_cols_kernel<<<rf_blocks(planes * hw), 256>>>(g, rows.p, nullptr, t.p, true);
  RF_LAUNCH_CHECK("kernel_bank backward (column pass)");
  bank_times_gout_kernel<<<rf_blocks(planes * hw), 256>>>(g, gout, t.p);
  RF_LAUNCH_CHECK("kernel_bank backward (product)");
  ReduceIndexer ix = make_reduce_indexer({planes, hw}, {false, true});
  reduce_sum(ix, t.p, gw, 1.f);
}

}  // namespace rf::gpu
