// Parameter initialisation (PyTorch's formulas). All draw from the counter-based generator, so a seed
// gives the same weights on every machine and device.
#pragma once
#include "engine/rng.h"
#include "engine/tensor.h"
#include "layers/module.h"

namespace rf::init {

// fan_in / fan_out of a weight: [out, in] or [out, in, kh, kw] (PyTorch's _calculate_fan_in_and_fan_out).
int64_t fan_in(const Tensor& w);
int64_t fan_out(const Tensor& w);

void uniform_(Tensor& t, float lo, float hi, Generator* gen = nullptr);
void normal_(Tensor& t, float mean, float std, Generator* gen = nullptr);
void constant_(Tensor& t, float v);
void zeros_(Tensor& t);
void ones_(Tensor& t);
// Every parameter of a module to zero (an output layer that makes a network start as the identity).
void zeros_(Module& m);
// gain * sqrt(6 / (fan_in + fan_out)) bound.
void xavier_uniform_(Tensor& t, float gain = 1.f, Generator* gen = nullptr);
void xavier_normal_(Tensor& t, float gain = 1.f, Generator* gen = nullptr);
// He initialisation for a leaky-ReLU with negative slope a (a = 0: ReLU), fan-in mode.
void kaiming_uniform_(Tensor& t, float a = 0.f, Generator* gen = nullptr);
void kaiming_normal_(Tensor& t, float a = 0.f, Generator* gen = nullptr);
// PyTorch's default for Conv and Linear: kaiming_uniform_(a = sqrt(5)) on the weight, i.e. bound
// 1/sqrt(fan_in), and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on the bias.
void default_conv_linear_(Tensor& weight, Tensor& bias, int64_t fan_in_value, Generator* gen = nullptr);

}  // namespace rf::init
