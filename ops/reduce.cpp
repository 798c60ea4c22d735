#include "ops/reduce.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/elementwise_impl.h"
#include "ops/reduce_impl.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rf {

ReduceIndexer make_reduce_indexer(const Shape& in, const std::vector<bool>& reduced) {
  // Merge neighbouring dims that are both kept or both reduced (the input is contiguous).
  std::vector<int64_t> sizes;
  std::vector<bool> flags;
  for (size_t d = 0; d < in.size(); ++d) {
    if (in[d] == 1) continue;
    if (!sizes.empty() && flags.back() == reduced[d]) {
      sizes.back() *= in[d];
    } else {
      sizes.push_back(in[d]);
      flags.push_back(reduced[d]);
    }
  }
  RF_CHECK(sizes.size() <= (size_t)kMaxDims, "reduction over too many interleaved dimensions: ", in);
  std::vector<int64_t> strides = contiguous_strides(sizes);
  ReduceIndexer ix;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (flags[d]) {
      ix.rsize[ix.nr] = sizes[d];
      ix.rstride[ix.nr++] = strides[d];
      ix.nred *= sizes[d];
    } else {
      ix.ksize[ix.nk] = sizes[d];
      ix.kstride[ix.nk++] = strides[d];
      ix.nout *= sizes[d];
    }
  }
  return ix;
}

namespace cpu {

// Contiguous sum with 16 independent float lanes, so the compiler vectorises it without reordering
// anything: the order is fixed by the code, the same on every run.
static float sum_contiguous(const float* p, int64_t n) {
  float lane[16] = {0.f};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) lane[k] += p[j + k];
  float s = 0.f;
  for (int k = 0; k < 16; ++k) s += lane[k];
  for (; j < n; ++j) s += p[j];
  return s;
}

// Sum of rows [r0, r1) x inner [j0, j1) of one output's reduced elements (a row: an index over the reduced
// dims but the innermost); float inside a row, double across rows.
static double reduce_part(const ReduceIndexer& ix, const float* base, int64_t r0, int64_t r1, int64_t j0, int64_t j1) {
  const int64_t inner_stride = ix.nr ? ix.rstride[ix.nr - 1] : 0;
  double acc = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const float* p = base + decompose(ix.nr - 1, ix.rsize, ix.rstride, r);
    if (inner_stride == 1) {
      acc += sum_contiguous(p + j0, j1 - j0);
    } else {
      float part = 0.f;
      for (int64_t j = j0; j < j1; ++j) part += p[j * inner_stride];
      acc += part;
    }
  }
  return acc;
}

// The innermost input dim is kept (e.g. [N, C] -> [C]): whole rows of outputs are added at once, so the loop
// runs along contiguous memory for many outputs together. Each output is summed in float over fixed chunks of
// 256 reduced indices, in order, and the chunk sums in double, in chunk order. A task is (group of outputs,
// block of <= 4096 columns, chunk), so long reductions with few outputs still spread over the threads and read
// memory contiguously; the tasks are set by the shape alone, so any thread count gives the same bits.
static void reduce_kept_inner(const ReduceIndexer& ix, const float* x, float* out, float scale) {
  constexpr int64_t kCols = 4096, kChunk = 256;
  const int64_t run = ix.ksize[ix.nk - 1], groups = ix.nout / run;
  const int64_t cblocks = (run + kCols - 1) / kCols, chunks = (ix.nred + kChunk - 1) / kChunk;
  // One chunk: the float sums are the outputs. More: they go to part[(group * chunks + chunk) * run + column].
  std::vector<float> part(chunks > 1 ? (size_t)(ix.nout * chunks) : 0);
#pragma omp parallel for if (ix.nout * ix.nred > (1 << 15))
  for (int64_t t = 0; t < groups * cblocks * chunks; ++t) {
    const int64_t c = t % chunks, cb = (t / chunks) % cblocks, gi = t / (chunks * cblocks);
    const int64_t o0 = cb * kCols, n = std::min(kCols, run - o0);
    const float* base = x + decompose(ix.nk - 1, ix.ksize, ix.kstride, gi) + o0;
    float acc[kCols];
    std::fill(acc, acc + n, 0.f);
    for (int64_t r = c * kChunk; r < std::min(ix.nred, (c + 1) * kChunk); ++r) {
      const float* row = base + (ix.nr == 1 ? r * ix.rstride[0] : decompose(ix.nr, ix.rsize, ix.rstride, r));
      for (int64_t j = 0; j < n; ++j) acc[j] += row[j];
    }
    if (chunks == 1) {
      for (int64_t j = 0; j < n; ++j) out[gi * run + o0 + j] = (float)((double)acc[j] * scale);
    } else {
      std::copy(acc, acc + n, part.data() + (gi * chunks + c) * run + o0);
    }
  }
  if (chunks == 1) return;
#pragma omp parallel for if (ix.nout * chunks > (1 << 15))
  for (int64_t t = 0; t < groups * cblocks; ++t) {
    const int64_t cb = t % cblocks, gi = t / cblocks, o0 = cb * kCols, n = std::min(kCols, run - o0);
    double total[kCols];
    std::fill(total, total + n, 0.0);
    for (int64_t c = 0; c < chunks; ++c) {
      const float* p = part.data() + (gi * chunks + c) * run + o0;
      for (int64_t j = 0; j < n; ++j) total[j] += p[j];
    }
    for (int64_t j = 0; j < n; ++j) out[gi * run + o0 + j] = (float)(total[j] * scale);
  }
}

// Deterministic whatever the thread count: an output is summed by one thread, or, when there are few outputs
// and long reductions, in a fixed number of parts (set by the shape, not by the threads) added in order.
void reduce_sum(const ReduceIndexer& ix, const float* x, float* out, float scale) {
  if (ix.nk > 0 && ix.kstride[ix.nk - 1] == 1 && ix.nr > 0) return reduce_kept_inner(ix, x, out, scale);
  const int64_t inner = ix.nr ? ix.rsize[ix.nr - 1] : 1;
  const int64_t rows = inner ? ix.nred / inner : 0;
  if (ix.nout >= 64 || ix.nred < (1 << 16)) {
#pragma omp parallel for if (ix.nout * ix.nred > (1 << 15))
    for (int64_t o = 0; o < ix.nout; ++o) {
      const float* base = x + decompose(ix.nk, ix.ksize, ix.kstride, o);
      out[o] = (float)(reduce_part(ix, base, 0, rows, 0, inner) * scale);
    }
    return;
  }
  constexpr int64_t kParts = 64;
  std::vector<double> part(kParts);
  for (int64_t o = 0; o < ix.nout; ++o) {
    const float* base = x + decompose(ix.nk, ix.ksize, ix.kstride, o);
#pragma omp parallel for
    for (int64_t p = 0; p < kParts; ++p) {
      if (rows >= kParts)  // parts of the rows
        part[p] = reduce_part(ix, base, rows * p / kParts, rows * (p + 1) / kParts, 0, inner);
      else  // parts of the inner dim of every row
        part[p] = reduce_part(ix, base, 0, rows, inner * p / kParts, inner * (p + 1) / kParts);
    }
    double acc = 0;
    for (double v : part) acc += v;
    out[o] = (float)(acc * scale);
  }
}

void max_dim(const float* x, float* out, int32_t* arg, int64_t outer, int64_t d, int64_t inner) {
#pragma omp parallel for if (outer * inner * d > (1 << 15))
  for (int64_t oi = 0; oi < outer * inner; ++oi) {
    int64_t o = oi / inner, i = oi % inner;
    const float* p = x + o * d * inner + i;
    int32_t best = 0;
    for (int64_t k = 1; k < d; ++k)
      if (p[k * inner] > p[best * inner]) best = (int32_t)k;
    out[oi] = p[best * inner];
    arg[oi] = best;
  }
}

void max_dim_backward(const float* g, const int32_t* arg, float* gx, int64_t outer, int64_t d, int64_t inner) {
  std::fill(gx, gx + outer * d * inner, 0.f);
#pragma omp parallel for if (outer * inner > (1 << 15))
  for (int64_t oi = 0; oi < outer * inner; ++oi) {
    int64_t o = oi / inner, i = oi % inner;
    gx[o * d * inner + (int64_t)arg[oi] * inner + i] = g[oi];
  }
}

void softmax_forward(const float* x, float* y, int64_t outer, int64_t d, int64_t inner, bool log) {
#pragma omp parallel for if (outer * inner * d > (1 << 15))
  for (int64_t oi = 0; oi < outer * inner; ++oi) {
    int64_t o = oi / inner, i = oi % inner;
    const float* p = x + o * d * inner + i;
    float* q = y + o * d * inner + i;
    float m = p[0];
    for (int64_t k = 1; k < d; ++k) m = std::max(m, p[k * inner]);
    double s = 0;
    for (int64_t k = 0; k < d; ++k) s += std::exp((double)p[k * inner] - m);
    if (log) {
      float lse = m + (float)std::log(s);
      for (int64_t k = 0; k < d; ++k) q[k * inner] = p[k * inner] - lse;
    } else {
      for (int64_t k = 0; k < d; ++k) q[k * inner] = (float)(std::exp((double)p[k * inner] - m) / s);
    }
  }
}

void softmax_backward(const float* y, const float* g, float* gx, int64_t outer, int64_t d, int64_t inner,
                      bool log) {
#pragma omp parallel for if (outer * inner * d > (1 << 15))
  for (int64_t oi = 0; oi < outer * inner; ++oi) {
    int64_t o = oi / inner, i = oi % inner;
    int64_t base = o * d * inner + i;
    double s = 0;
    for (int64_t k = 0; k < d; ++k)
      s += log ? g[base + k * inner] : (double)g[base + k * inner] * y[base + k * inner];
    for (int64_t k = 0; k < d; ++k) {
      int64_t j = base + k * inner;
      gx[j] = log ? g[j] - std::exp(y[j]) * (float)s : y[j] * (g[j] - (float)s);
    }
  }
}

}  // namespace cpu

// ---------------------------------------------------------------------------------------------------

static std::vector<bool> reduced_flags(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> red(x.dim(), false);
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    RF_CHECK(!red[w], op, ": dimension ", d, " is listed twice");
    red[w] = true;
  }
  return red;
}

static Tensor sum_impl(const Tensor& x, const std::vector<bool>& red, bool keepdim, float scale, const char* op) {
  Shape kept_shape, out_shape;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (red[d]) {
      kept_shape.push_back(1);
    } else {
      kept_shape.push_back(x.size(d));
      out_shape.push_back(x.size(d));
    }
  }
  Tensor out = empty(keepdim ? kept_shape : out_shape, x.device());
  ReduceIndexer ix = make_reduce_indexer(x.shape(), red);
  if (x.is_cuda())
    RF_GPU_OP("sum", (x), gpu::reduce_sum(ix, x.data(), out.data(), scale));
  else
    cpu::reduce_sum(ix, x.data(), out.data(), scale);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(out, op, {x}, [in_shape, kept_shape, scale](const Tensor& g) {
      Tensor e = expand(g.reshape(kept_shape), in_shape);
      return std::vector<Tensor>{scale == 1.f ? e : e * scale};
    });
  }
  return out;
}

Tensor sum(const Tensor& x) { return sum_impl(x, std::vector<bool>(x.dim(), true), false, 1.f, "sum"); }

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_impl(x, reduced_flags(x, dims, "sum"), keepdim, 1.f, "sum");
}

Tensor mean(const Tensor& x) {
  RF_CHECK(x.numel() > 0, "mean of an empty tensor ", describe(x));
  return sum_impl(x, std::vector<bool>(x.dim(), true), false, 1.f / (float)x.numel(), "mean");
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  auto red = reduced_flags(x, dims, "mean");
  int64_t n = 1;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (red[d]) n *= x.size(d);
  RF_CHECK(n > 0, "mean over an empty dimension of ", describe(x));
  return sum_impl(x, red, keepdim, 1.f / (float)n, "mean");
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  RF_CHECK(shape.size() <= x.shape().size(), "sum_to: cannot reduce ", x.shape(), " to ", shape);
  size_t lead = x.shape().size() - shape.size();
  std::vector<bool> red(x.dim(), false);
  for (size_t d = 0; d < x.shape().size(); ++d) {
    if (d < lead) {
      red[d] = true;
    } else {
      int64_t want = shape[d - lead];
      RF_CHECK(want == x.shape()[d] || want == 1, "sum_to: cannot reduce ", x.shape(), " to ", shape);
      red[d] = (want == 1 && x.shape()[d] != 1);
    }
  }
  return sum_impl(x, red, true, 1.f, "sum_to").reshape(shape);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  Shape os = broadcast_shape(x.shape(), shape, "expand");
  RF_CHECK(os == shape, "expand: ", x.shape(), " cannot be broadcast to ", shape);
  Tensor out = empty(shape, x.device());
  Tensor zero = zeros({}, x.device());  // expand = x + 0, broadcast to shape
  StridedIndexer ix = make_broadcast_indexer(shape, x.shape(), {});
  if (x.is_cuda())
    RF_GPU_OP("expand", (x), gpu::binary_forward(BinaryOp::Add, ix, x.data(), zero.data(), out.data(), out.numel()));
  else
    cpu::binary_forward(BinaryOp::Add, ix, x.data(), zero.data(), out.data(), out.numel());
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(out, "expand", {x}, [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
  }
  return out;
}

// View x as [outer, D, inner] around dimension `dim`.
static void split_around(const Tensor& x, int64_t dim, int64_t& outer, int64_t& d, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t k = 0; k < dim; ++k) outer *= x.size(k);
  d = x.size(dim);
  for (int64_t k = dim + 1; k < x.dim(); ++k) inner *= x.size(k);
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  int64_t w = wrap_dim(dim, x.dim(), "max");
  RF_CHECK(x.size(w) > 0, "max over an empty dimension of ", describe(x));
  int64_t outer, d, inner;
  split_around(x, w, outer, d, inner);
  Shape os = x.shape();
  os[w] = 1;
  Tensor out = empty(os, x.device());
  Tensor arg = empty(os, x.device());  // int32 argmax held in a float-sized buffer
  int32_t* argp = reinterpret_cast<int32_t*>(arg.data());
  if (x.is_cuda())
    RF_GPU_OP("max", (x), gpu::max_dim(x.data(), out.data(), argp, outer, d, inner));
  else
    cpu::max_dim(x.data(), out.data(), argp, outer, d, inner);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(out, "max", {x}, [arg, in_shape, outer, d, inner](const Tensor& g) {
      Tensor gx = empty(in_shape, g.device());
      const int32_t* a = reinterpret_cast<const int32_t*>(arg.data());
      if (g.is_cuda())
        RF_GPU(gpu::max_dim_backward(g.data(), a, gx.data(), outer, d, inner));
      else
        cpu::max_dim_backward(g.data(), a, gx.data(), outer, d, inner);
      return std::vector<Tensor>{gx};
    });
  }
  if (!keepdim) {
    Shape squeezed = x.shape();
    squeezed.erase(squeezed.begin() + w);
    return out.reshape(squeezed);
  }
  return out;
}

static Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  int64_t w = wrap_dim(dim, x.dim(), op);
  int64_t outer, d, inner;
  split_around(x, w, outer, d, inner);
  Tensor y = empty_like(x);
  if (x.is_cuda())
    RF_GPU_OP(op, (x), gpu::softmax_forward(x.data(), y.data(), outer, d, inner, log));
  else
    cpu::softmax_forward(x.data(), y.data(), outer, d, inner, log);
  if (needs_grad({x})) {
    Tensor ys = y.detach();
    record(y, op, {x}, [ys, outer, d, inner, log](const Tensor& g) {
      Tensor gx = empty_like(g);
      if (g.is_cuda())
        RF_GPU(gpu::softmax_backward(ys.data(), g.data(), gx.data(), outer, d, inner, log));
      else
        cpu::softmax_backward(ys.data(), g.data(), gx.data(), outer, d, inner, log);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace rf
