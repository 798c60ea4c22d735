// The standard layers, each a thin Module over an op with PyTorch's parameter names and defaults.
#pragma once
#include "layers/module.h"
#include "ops/ops.h"

namespace rf {

// Conv2d(in, out, k, ConvOptions::make(stride, padding, dilation, groups), bias, padding_mode).
// Weight [out, in/groups, k, k]. Reflect/replicate padding pads explicitly, then convolves unpadded.
class Conv2d : public UnaryModule {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, ConvOptions o = {}, bool bias = true,
         PadMode padding_mode = PadMode::Zeros);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  ConvOptions opt;
  PadMode padding_mode;
};

// Weight [in, out/groups, k, k] (PyTorch's layout for transposed convolutions).
class ConvTranspose2d : public UnaryModule {
 public:
  ConvTranspose2d(int64_t in, int64_t out, int64_t kernel, ConvOptions o = {}, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  ConvOptions opt;
};

class Linear : public UnaryModule {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
};

class BatchNorm2d : public UnaryModule {
 public:
  explicit BatchNorm2d(int64_t channels, float eps = 1e-5f, float momentum = 0.1f);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  float eps, momentum;
};

// Normalises over `dim` (1: channels of NCHW; -1: features of tokens) with weight and bias.
class LayerNorm : public UnaryModule {
 public:
  explicit LayerNorm(int64_t features, int64_t dim = -1, float eps = 1e-5f, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int64_t dim;
  float eps;
};

enum class Act { Identity, ReLU, LeakyReLU, GELU, Sigmoid, Tanh };
Tensor activate(const Tensor& x, Act a, float slope = 0.2f);

class Activation : public UnaryModule {
 public:
  explicit Activation(Act a, float slope = 0.2f) : act(a), slope(slope) {}
  Tensor forward(const Tensor& x) override { return activate(x, act, slope); }
  Act act;
  float slope;
};

// x + conv(act(conv(x))): two k x k convolutions of `channels` channels with "same" padding.
// Parameters: body.0.{weight,bias}, body.2.{weight,bias} (a Sequential, as in most PyTorch code).
class ResBlock : public UnaryModule {
 public:
  ResBlock(int64_t channels, int64_t kernel = 3, Act act = Act::ReLU, bool bias = true,
           PadMode padding_mode = PadMode::Zeros);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Sequential> body;
};

}  // namespace rf
