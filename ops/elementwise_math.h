// The formulas of the elementwise ops, written once and shared by the CPU loops and the CUDA kernels.
#pragma once
#include <cmath>

#include "engine/error.h"

namespace rf {

enum class UnaryOp : int {
  Neg, Exp, Log, Sqrt, Pow, Abs, Clamp, Relu, LeakyRelu, Sigmoid, Tanh, Sin, Cos, Affine, Gelu, Softplus
};
// p0/p1: Pow exponent; Clamp lo/hi; LeakyRelu slope; Affine scale/shift.

enum class BinaryOp : int { Add, Sub, Mul, Div, Max, Min };

RF_HD float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

RF_HD float unary_fwd(UnaryOp op, float x, float p0, float p1) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return expf(x);
    case UnaryOp::Log: return logf(x);
    case UnaryOp::Sqrt: return sqrtf(x);
    case UnaryOp::Pow: return powf(x, p0);
    case UnaryOp::Abs: return fabsf(x);
    case UnaryOp::Clamp: return fminf(fmaxf(x, p0), p1);
    case UnaryOp::Relu: return x > 0.f ? x : 0.f;
    case UnaryOp::LeakyRelu: return x > 0.f ? x : p0 * x;
    case UnaryOp::Sigmoid: return sigmoidf_(x);
    case UnaryOp::Tanh: return tanhf(x);
    case UnaryOp::Sin: return sinf(x);
    case UnaryOp::Cos: return cosf(x);
    case UnaryOp::Affine: return p0 * x + p1;
    case UnaryOp::Gelu: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));  // exact (erf) form
    case UnaryOp::Softplus: return x > 20.f ? x : log1pf(expf(x));
  }
  return 0.f;
}

// What a unary op's backward reads: nothing, its input x, or its output y. Autograd keeps only that one
// (an activation's input is often freed that way: relu keeps its output, which the next layer keeps anyway).
enum class UnarySaves { Nothing, Input, Output };
inline UnarySaves unary_saves(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg:
    case UnaryOp::Affine: return UnarySaves::Nothing;
    case UnaryOp::Exp:
    case UnaryOp::Sqrt:
    case UnaryOp::Relu:
    case UnaryOp::Sigmoid:
    case UnaryOp::Tanh: return UnarySaves::Output;
    default: return UnarySaves::Input;
  }
}

// d(out)/d(x) times the incoming gradient g; y is the forward output. Only the value unary_saves() names is
// read (the other argument may hold anything).
RF_HD float unary_bwd(UnaryOp op, float x, float y, float g, float p0, float p1) {
  switch (op) {
    case UnaryOp::Neg: return -g;
    case UnaryOp::Exp: return g * y;
    case UnaryOp::Log: return g / x;
    case UnaryOp::Sqrt: return g * 0.5f / y;
    case UnaryOp::Pow: return g * p0 * powf(x, p0 - 1.f);
    case UnaryOp::Abs: return x > 0.f ? g : (x < 0.f ? -g : 0.f);
    case UnaryOp::Clamp: return (x >= p0 && x <= p1) ? g : 0.f;
    case UnaryOp::Relu: return y > 0.f ? g : 0.f;  // y > 0 exactly where x > 0
    case UnaryOp::LeakyRelu: return x > 0.f ? g : p0 * g;
    case UnaryOp::Sigmoid: return g * y * (1.f - y);
    case UnaryOp::Tanh: return g * (1.f - y * y);
    case UnaryOp::Sin: return g * cosf(x);
    case UnaryOp::Cos: return -g * sinf(x);
    case UnaryOp::Affine: return g * p0;
    case UnaryOp::Gelu: {
      float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
      float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
      return g * (cdf + x * pdf);
    }
    case UnaryOp::Softplus: return x > 20.f ? g : g * sigmoidf_(x);
  }
  return 0.f;
}

RF_HD float binary_fwd(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Max: return a > b ? a : b;
    case BinaryOp::Min: return a < b ? a : b;
  }
  return 0.f;
}

// Gradient reaching operand `which` (0: a, 1: b) before any reduction over broadcast dimensions.
// Max/Min split the gradient evenly on ties, as PyTorch does.
RF_HD float binary_bwd(BinaryOp op, int which, float a, float b, float g) {
  switch (op) {
    case BinaryOp::Add: return g;
    case BinaryOp::Sub: return which == 0 ? g : -g;
    case BinaryOp::Mul: return which == 0 ? g * b : g * a;
    case BinaryOp::Div: return which == 0 ? g / b : -g * a / (b * b);
    case BinaryOp::Max:
    case BinaryOp::Min: {
      float mine = which == 0 ? a : b, other = which == 0 ? b : a;
      if (mine == other) return 0.5f * g;
      bool wins = op == BinaryOp::Max ? mine > other : mine < other;
      return wins ? g : 0.f;
    }
  }
  return 0.f;
}

// An index space walked with two sets of strides. Broadcasting: the output index is split into
// coordinates, and each operand has stride 0 along the dimensions where it has size 1 (dimensions are
// coalesced first, so the common cases have 1–2 dims). Strided copies (permute, slice, concat) use
// the same walk with destination and source strides.
constexpr int kMaxDims = 8;

struct StridedIndexer {
  int nd = 0;
  int64_t size[kMaxDims];
  int64_t stride_a[kMaxDims];
  int64_t stride_b[kMaxDims];
};

RF_HD void strided_offsets(const StridedIndexer& ix, int64_t i, int64_t& oa, int64_t& ob) {
  oa = 0;
  ob = 0;
  for (int d = ix.nd - 1; d >= 0; --d) {
    int64_t c = i % ix.size[d];
    i /= ix.size[d];
    oa += c * ix.stride_a[d];
    ob += c * ix.stride_b[d];
  }
}

}  // namespace rf
