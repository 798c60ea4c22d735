// Elementwise ops: arithmetic with NumPy/PyTorch broadcasting, unary math, random fills, dropout.
#pragma once
#include "engine/rng.h"
#include "engine/tensor.h"

namespace rf {

// Output shape of broadcasting a against b (throws naming `op` when they do not broadcast).
Shape broadcast_shape(const Shape& a, const Shape& b, const char* op);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor square(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor clamp(const Tensor& x, float lo, float hi);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, float slope = 0.01f);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor gelu(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor affine(const Tensor& x, float scale, float shift);  // scale * x + shift

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& x, float s) { return affine(x, 1.f, s); }
inline Tensor operator+(float s, const Tensor& x) { return affine(x, 1.f, s); }
inline Tensor operator-(const Tensor& x, float s) { return affine(x, 1.f, -s); }
inline Tensor operator-(float s, const Tensor& x) { return affine(x, -1.f, s); }
inline Tensor operator*(const Tensor& x, float s) { return affine(x, s, 0.f); }
inline Tensor operator*(float s, const Tensor& x) { return affine(x, s, 0.f); }
inline Tensor operator/(const Tensor& x, float s) { return affine(x, 1.f / s, 0.f); }

// In-place, outside autograd: dst += alpha * src (same numel), dst *= s.
void add_(Tensor& dst, const Tensor& src, float alpha = 1.f);
void scale_(Tensor& dst, float s);

// Random tensors from a counter-based generator: identical numbers on CPU and CUDA.
Tensor rand(const Shape& s, Device d = Device::CPU, Generator* gen = nullptr);   // U[0, 1)
Tensor randn(const Shape& s, Device d = Device::CPU, Generator* gen = nullptr);  // N(0, 1)
Tensor uniform(const Shape& s, float lo, float hi, Device d = Device::CPU, Generator* gen = nullptr);

// Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p). The mask is a
// function of (seed, offset) and is recomputed in backward instead of being stored.
Tensor dropout(const Tensor& x, float p, bool training, Generator* gen = nullptr);

}  // namespace rf
