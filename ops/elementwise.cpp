#include "ops/elementwise.h"

#include <algorithm>
#include <type_traits>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/elementwise_impl.h"
#include "ops/reduce.h"
#include "ops/vector_math.h"

namespace rf {

// ---------------------------------------------------------------------------------------------------
// CPU reference kernels
// ---------------------------------------------------------------------------------------------------
namespace cpu {

constexpr int64_t kParallelMin = 1 << 15;  // below this, threads cost more than they save

// Calls f with the op as a compile-time constant, so that each op gets its own loop free of the switch (the
// simple ones then vectorise).
template <class F>
static void with_unary_op(UnaryOp op, F&& f) {
  switch (op) {
    case UnaryOp::Neg: return f(std::integral_constant<UnaryOp, UnaryOp::Neg>{});
    case UnaryOp::Exp: return f(std::integral_constant<UnaryOp, UnaryOp::Exp>{});
    case UnaryOp::Log: return f(std::integral_constant<UnaryOp, UnaryOp::Log>{});
    case UnaryOp::Sqrt: return f(std::integral_constant<UnaryOp, UnaryOp::Sqrt>{});
    case UnaryOp::Pow: return f(std::integral_constant<UnaryOp, UnaryOp::Pow>{});
    case UnaryOp::Abs: return f(std::integral_constant<UnaryOp, UnaryOp::Abs>{});
    case UnaryOp::Clamp: return f(std::integral_constant<UnaryOp, UnaryOp::Clamp>{});
    case UnaryOp::Relu: return f(std::integral_constant<UnaryOp, UnaryOp::Relu>{});
    case UnaryOp::LeakyRelu: return f(std::integral_constant<UnaryOp, UnaryOp::LeakyRelu>{});
    case UnaryOp::Sigmoid: return f(std::integral_constant<UnaryOp, UnaryOp::Sigmoid>{});
    case UnaryOp::Tanh: return f(std::integral_constant<UnaryOp, UnaryOp::Tanh>{});
    case UnaryOp::Sin: return f(std::integral_constant<UnaryOp, UnaryOp::Sin>{});
    case UnaryOp::Cos: return f(std::integral_constant<UnaryOp, UnaryOp::Cos>{});
    case UnaryOp::Affine: return f(std::integral_constant<UnaryOp, UnaryOp::Affine>{});
    case UnaryOp::Gelu: return f(std::integral_constant<UnaryOp, UnaryOp::Gelu>{});
    case UnaryOp::Softplus: return f(std::integral_constant<UnaryOp, UnaryOp::Softplus>{});
  }
}

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1) {
  with_unary_op(op, [&](auto k) {
    constexpr UnaryOp OP = decltype(k)::value;
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (OP == UnaryOp::Gelu)
        y[i] = gelu_vectorizable(x[i]);  // unary_fwd's erff is a libm call per element
      else
        y[i] = unary_fwd(OP, x[i], p0, p1);
    }
  });
}

void unary_backward(UnaryOp op, const float* x, const float* y, const float* g, float* gx, int64_t n, float p0,
                    float p1) {
  with_unary_op(op, [&](auto k) {
    constexpr UnaryOp OP = decltype(k)::value;
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (OP == UnaryOp::Gelu)
        gx[i] = gelu_backward_vectorizable(x[i], g[i]);
      else
        gx[i] = unary_bwd(OP, x[i], y[i], g[i], p0, p1);
    }
  });
}

// Broadcasting walks the output row by row (a row: the innermost merged dim): one index decomposition per
// row instead of per element, and the inner loop sees constant strides (0 or 1 in practice) it can vectorise.
template <class F>
static void for_rows(const StridedIndexer& ix, int64_t n, F&& row) {
  const int64_t inner = ix.size[ix.nd - 1], rows = inner ? n / inner : 0;
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t oa, ob;
    strided_offsets(ix, r * inner, oa, ob);
    row(r * inner, oa, ob, inner, ix.stride_a[ix.nd - 1], ix.stride_b[ix.nd - 1]);
  }
}

template <BinaryOp OP>
static void binary_rows(const StridedIndexer& ix, const float* a, const float* b, float* out, int64_t n) {
  for_rows(ix, n, [&](int64_t o, int64_t oa, int64_t ob, int64_t len, int64_t sa, int64_t sb) {
    float* dst = out + o;
    const float* pa = a + oa;
    const float* pb = b + ob;
    if (sa == 1 && sb == 1)
      for (int64_t j = 0; j < len; ++j) dst[j] = binary_fwd(OP, pa[j], pb[j]);
    else if (sa == 1 && sb == 0)
      for (int64_t j = 0; j < len; ++j) dst[j] = binary_fwd(OP, pa[j], pb[0]);
    else if (sa == 0 && sb == 1)
      for (int64_t j = 0; j < len; ++j) dst[j] = binary_fwd(OP, pa[0], pb[j]);
    else
      for (int64_t j = 0; j < len; ++j) dst[j] = binary_fwd(OP, pa[j * sa], pb[j * sb]);
  });
}

void binary_forward(BinaryOp op, const StridedIndexer& ix, const float* a, const float* b, float* out,
                    int64_t n) {
  switch (op) {  // one instance per op, so that the inner loops are free of the switch
    case BinaryOp::Add: return binary_rows<BinaryOp::Add>(ix, a, b, out, n);
    case BinaryOp::Sub: return binary_rows<BinaryOp::Sub>(ix, a, b, out, n);
    case BinaryOp::Mul: return binary_rows<BinaryOp::Mul>(ix, a, b, out, n);
    case BinaryOp::Div: return binary_rows<BinaryOp::Div>(ix, a, b, out, n);
    case BinaryOp::Max: return binary_rows<BinaryOp::Max>(ix, a, b, out, n);
    case BinaryOp::Min: return binary_rows<BinaryOp::Min>(ix, a, b, out, n);
  }
}

// The gradient towards operand WHICH, over the output's elements, walked row by row like the forward.
template <BinaryOp OP, int WHICH>
static void binary_backward_rows(const StridedIndexer& ix, const float* a, const float* b, const float* g, float* grad,
                                 int64_t n) {
  for_rows(ix, n, [&](int64_t o, int64_t oa, int64_t ob, int64_t len, int64_t sa, int64_t sb) {
    const float* pa = a + oa;
    const float* pb = b + ob;
    const float* pg = g + o;
    float* dst = grad + o;
    if (sa == 1 && sb == 1)
      for (int64_t j = 0; j < len; ++j) dst[j] = binary_bwd(OP, WHICH, pa[j], pb[j], pg[j]);
    else if (sa == 1 && sb == 0)
      for (int64_t j = 0; j < len; ++j) dst[j] = binary_bwd(OP, WHICH, pa[j], pb[0], pg[j]);
    else if (sa == 0 && sb == 1)
      for (int64_t j = 0; j < len; ++j) dst[j] = binary_bwd(OP, WHICH, pa[0], pb[j], pg[j]);
    else
      for (int64_t j = 0; j < len; ++j) dst[j] = binary_bwd(OP, WHICH, pa[j * sa], pb[j * sb], pg[j]);
  });
}

template <BinaryOp OP>
static void binary_backward_op(int which, const StridedIndexer& ix, const float* a, const float* b, const float* g,
                               float* grad, int64_t n) {
  if (which == 0)
    binary_backward_rows<OP, 0>(ix, a, b, g, grad, n);
  else
    binary_backward_rows<OP, 1>(ix, a, b, g, grad, n);
}

void binary_backward(BinaryOp op, int which, const StridedIndexer& ix, const float* a, const float* b,
                     const float* g, float* grad, int64_t n) {
  switch (op) {  // one instance per op and operand, so that the inner loops are free of both tests
    case BinaryOp::Add: return binary_backward_op<BinaryOp::Add>(which, ix, a, b, g, grad, n);
    case BinaryOp::Sub: return binary_backward_op<BinaryOp::Sub>(which, ix, a, b, g, grad, n);
    case BinaryOp::Mul: return binary_backward_op<BinaryOp::Mul>(which, ix, a, b, g, grad, n);
    case BinaryOp::Div: return binary_backward_op<BinaryOp::Div>(which, ix, a, b, g, grad, n);
    case BinaryOp::Max: return binary_backward_op<BinaryOp::Max>(which, ix, a, b, g, grad, n);
    case BinaryOp::Min: return binary_backward_op<BinaryOp::Min>(which, ix, a, b, g, grad, n);
  }
}

void axpy(float* dst, const float* src, float alpha, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] += alpha * src[i];
}

void scale(float* dst, float s, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] *= s;
}

void fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = lo + (hi - lo) * philox_uniform(seed, offset + (uint64_t)i);
}

void fill_normal(float* out, int64_t n, uint64_t seed, uint64_t offset) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = philox_normal(seed, offset + (uint64_t)i);
}

void dropout_apply(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t offset) {
  const float keep_scale = 1.f / (1.f - p);
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = philox_uniform(seed, offset + (uint64_t)i) >= p ? x[i] * keep_scale : 0.f;
}

void copy_strided(const StridedIndexer& ix, float* dst, const float* src, int64_t n) {
  for_rows(ix, n, [&](int64_t, int64_t od, int64_t os, int64_t len, int64_t sd, int64_t ss) {
    if (sd == 1 && ss == 1)
      std::copy(src + os, src + os + len, dst + od);
    else
      for (int64_t j = 0; j < len; ++j) dst[od + j * sd] = src[os + j * ss];
  });
}

}  // namespace cpu

// ---------------------------------------------------------------------------------------------------
// Broadcasting
// ---------------------------------------------------------------------------------------------------
Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    int64_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    int64_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    RF_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b, " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

StridedIndexer make_strided_indexer(const Shape& sizes, const std::vector<int64_t>& sa, const std::vector<int64_t>& sb) {
  // Drop size-1 dims and merge neighbours that are contiguous for both stride sets.
  StridedIndexer ix;
  ix.nd = 0;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 1) continue;
    if (ix.nd > 0) {
      int p = ix.nd - 1;
      if (ix.stride_a[p] == sa[d] * sizes[d] && ix.stride_b[p] == sb[d] * sizes[d]) {
        ix.size[p] *= sizes[d];
        ix.stride_a[p] = sa[d];
        ix.stride_b[p] = sb[d];
        continue;
      }
    }
    RF_CHECK(ix.nd < kMaxDims, "at most ", kMaxDims, " non-mergeable dimensions are supported, got ", sizes);
    ix.size[ix.nd] = sizes[d];
    ix.stride_a[ix.nd] = sa[d];
    ix.stride_b[ix.nd] = sb[d];
    ix.nd++;
  }
  if (ix.nd == 0) {
    ix.nd = 1;
    ix.size[0] = 1;
    ix.stride_a[0] = ix.stride_b[0] = 0;
  }
  return ix;
}

StridedIndexer make_broadcast_indexer(const Shape& out, const Shape& a, const Shape& b) {
  // Strides of a and b in the output's coordinates (0 where broadcast).
  auto strides = [&](const Shape& s) {
    std::vector<int64_t> st(out.size());
    int64_t run = 1;
    for (int d = (int)out.size() - 1; d >= 0; --d) {
      int k = d - ((int)out.size() - (int)s.size());
      int64_t sz = k >= 0 ? s[k] : 1;
      st[d] = (sz == 1) ? 0 : run;
      run *= sz;
    }
    return st;
  };
  return make_strided_indexer(out, strides(a), strides(b));
}

// ---------------------------------------------------------------------------------------------------
// Differentiable ops
// ---------------------------------------------------------------------------------------------------
static const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Max: return "maximum";
    case BinaryOp::Min: return "minimum";
  }
  return "binary";
}

// Gradient for one operand of div, maximum or minimum, summed over the dimensions it was broadcast along.
static Tensor binary_grad(BinaryOp op, int which, const Tensor& a, const Tensor& b, const Tensor& g) {
  const Tensor& mine = which == 0 ? a : b;
  Tensor full = empty_like(g);
  StridedIndexer ix = make_broadcast_indexer(g.shape(), a.shape(), b.shape());
  if (g.is_cuda())
    RF_GPU_OP(binary_name(op), (a, b, g),
              gpu::binary_backward(op, which, ix, a.data(), b.data(), g.data(), full.data(), g.numel()));
  else
    cpu::binary_backward(op, which, ix, a.data(), b.data(), g.data(), full.data(), g.numel());
  return full.shape() == mine.shape() ? full : sum_to(full, mine.shape());
}

static Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  Device dev = same_device(name, {a, b});
  Shape os = broadcast_shape(a.shape(), b.shape(), name);
  Tensor out = empty(os, dev);
  StridedIndexer ix = make_broadcast_indexer(os, a.shape(), b.shape());
  if (dev == Device::CUDA)
    RF_GPU_OP(name, (a, b), gpu::binary_forward(op, ix, a.data(), b.data(), out.data(), out.numel()));
  else
    cpu::binary_forward(op, ix, a.data(), b.data(), out.data(), out.numel());
  if (needs_grad({a, b})) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    if (op == BinaryOp::Add || op == BinaryOp::Sub) {  // the gradients need only the shapes
      Shape sa = a.shape(), sb = b.shape();
      record(out, name, {a, b}, [op, ga, gb, sa, sb](const Tensor& g) {
        Tensor gb_full = gb ? (op == BinaryOp::Sub ? neg(g) : g) : Tensor();
        return std::vector<Tensor>{ga ? (g.shape() == sa ? g : sum_to(g, sa)) : Tensor(),
                                   gb ? (g.shape() == sb ? gb_full : sum_to(gb_full, sb)) : Tensor()};
      });
    } else if (op == BinaryOp::Mul) {  // each gradient needs only the other operand
      Tensor a_kept = gb ? a.detach() : Tensor(), b_kept = ga ? b.detach() : Tensor();
      Shape sa = a.shape(), sb = b.shape();
      record(out, name, {a, b}, [a_kept, b_kept, sa, sb](const Tensor& g) {
        Tensor da = b_kept.defined() ? mul(g, b_kept) : Tensor(), db = a_kept.defined() ? mul(g, a_kept) : Tensor();
        if (da.defined() && da.shape() != sa) da = sum_to(da, sa);
        if (db.defined() && db.shape() != sb) db = sum_to(db, sb);
        return std::vector<Tensor>{da, db};
      });
    } else {
      Tensor ak = a.detach(), bk = b.detach();
      record(out, name, {a, b}, [op, ga, gb, ak, bk](const Tensor& g) {
        return std::vector<Tensor>{ga ? binary_grad(op, 0, ak, bk, g) : Tensor(), gb ? binary_grad(op, 1, ak, bk, g) : Tensor()};
      });
    }
  }
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Max, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Min, a, b); }

static Tensor unary(UnaryOp op, const char* name, const Tensor& x, float p0 = 0.f, float p1 = 0.f) {
  Tensor y = empty_like(x);
  if (x.is_cuda())
    RF_GPU_OP(name, (x), gpu::unary_forward(op, x.data(), y.data(), x.numel(), p0, p1));
  else
    cpu::unary_forward(op, x.data(), y.data(), x.numel(), p0, p1);
  if (needs_grad({x})) {
    // The one value the backward reads (unary_saves), passed for both x and y.
    UnarySaves saves = unary_saves(op);
    Tensor kept = saves == UnarySaves::Input ? x.detach() : saves == UnarySaves::Output ? y.detach() : Tensor();
    record(y, name, {x}, [op, kept, p0, p1](const Tensor& g) {
      Tensor gx = empty_like(g);
      const float* v = kept.defined() ? kept.data() : g.data();
      if (g.is_cuda())
        RF_GPU(gpu::unary_backward(op, v, v, g.data(), gx.data(), g.numel(), p0, p1));
      else
        cpu::unary_backward(op, v, v, g.data(), gx.data(), g.numel(), p0, p1);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, "neg", x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, "exp", x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::Log, "log", x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, "sqrt", x); }
Tensor pow(const Tensor& x, float e) { return unary(UnaryOp::Pow, "pow", x, e); }
Tensor square(const Tensor& x) { return mul(x, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::Abs, "abs", x); }
Tensor clamp(const Tensor& x, float lo, float hi) { return unary(UnaryOp::Clamp, "clamp", x, lo, hi); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, "relu", x); }
Tensor leaky_relu(const Tensor& x, float s) { return unary(UnaryOp::LeakyRelu, "leaky_relu", x, s); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, "sigmoid", x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::Tanh, "tanh", x); }
Tensor sin(const Tensor& x) { return unary(UnaryOp::Sin, "sin", x); }
Tensor cos(const Tensor& x) { return unary(UnaryOp::Cos, "cos", x); }
Tensor gelu(const Tensor& x) { return unary(UnaryOp::Gelu, "gelu", x); }
Tensor softplus(const Tensor& x) { return unary(UnaryOp::Softplus, "softplus", x); }
Tensor affine(const Tensor& x, float scale, float shift) { return unary(UnaryOp::Affine, "affine", x, scale, shift); }

void add_(Tensor& dst, const Tensor& src, float alpha) {
  RF_CHECK(dst.numel() == src.numel(), "add_: ", describe(src), " does not match ", describe(dst));
  same_device("add_", {dst, src});
  if (dst.is_cuda())
    RF_GPU_OP("add_", (dst, src), gpu::axpy(dst.data(), src.data(), alpha, dst.numel()));
  else
    cpu::axpy(dst.data(), src.data(), alpha, dst.numel());
}

void scale_(Tensor& dst, float s) {
  if (dst.is_cuda())
    RF_GPU_OP("scale_", (dst), gpu::scale(dst.data(), s, dst.numel()));
  else
    cpu::scale(dst.data(), s, dst.numel());
}

Tensor uniform(const Shape& s, float lo, float hi, Device d, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(s, d);
  uint64_t off = g.advance((uint64_t)t.numel());
  if (d == Device::CUDA)
    RF_GPU_OP("uniform", (t), gpu::fill_uniform(t.data(), t.numel(), g.seed(), off, lo, hi));
  else
    cpu::fill_uniform(t.data(), t.numel(), g.seed(), off, lo, hi);
  return t;
}

Tensor rand(const Shape& s, Device d, Generator* gen) { return uniform(s, 0.f, 1.f, d, gen); }

Tensor randn(const Shape& s, Device d, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty(s, d);
  uint64_t off = g.advance((uint64_t)t.numel());
  if (d == Device::CUDA)
    RF_GPU_OP("randn", (t), gpu::fill_normal(t.data(), t.numel(), g.seed(), off));
  else
    cpu::fill_normal(t.data(), t.numel(), g.seed(), off);
  return t;
}

static void dropout_kernel(const Tensor& in, Tensor& out, float p, uint64_t seed, uint64_t off) {
  if (in.is_cuda())
    RF_GPU_OP("dropout", (in), gpu::dropout_apply(in.data(), out.data(), in.numel(), p, seed, off));
  else
    cpu::dropout_apply(in.data(), out.data(), in.numel(), p, seed, off);
}

Tensor dropout(const Tensor& x, float p, bool training, Generator* gen) {
  RF_CHECK(p >= 0.f && p < 1.f, "dropout: probability ", p, " is outside [0, 1)");
  if (!training || p == 0.f) return x;
  Generator& g = gen ? *gen : default_generator();
  uint64_t seed = g.seed(), off = g.advance((uint64_t)x.numel());
  Tensor y = empty_like(x);
  dropout_kernel(x, y, p, seed, off);
  if (needs_grad({x}))
    record(y, "dropout", {x}, [p, seed, off](const Tensor& gy) {
      Tensor gx = empty_like(gy);
      dropout_kernel(gy, gx, p, seed, off);  // the same mask, recomputed from the counter
      return std::vector<Tensor>{gx};
    });
  return y;
}

Generator& default_generator() {
  static Generator g;
  return g;
}
void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace rf
