#include "layers/layers.h"

#include "layers/init.h"

namespace rf {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, ConvOptions o, bool has_bias, PadMode mode)
    : opt(o), padding_mode(mode) {
  RF_CHECK(in % o.groups == 0 && out % o.groups == 0, "Conv2d: ", in, " -> ", out, " channels do not divide into ",
           o.groups, " groups");
  weight = register_parameter("weight", empty({out, in / o.groups, k, k}));
  if (has_bias) bias = register_parameter("bias", empty({out}));
  init::default_conv_linear_(weight, bias, init::fan_in(weight));
}

Tensor Conv2d::forward(const Tensor& x) {
  if (padding_mode == PadMode::Zeros) return conv2d(x, weight, bias, opt);
  ConvOptions unpadded = opt;
  unpadded.pad_h = unpadded.pad_w = 0;
  return conv2d(pad2d(x, opt.pad_w, opt.pad_w, opt.pad_h, opt.pad_h, padding_mode), weight, bias, unpadded);
}

ConvTranspose2d::ConvTranspose2d(int64_t in, int64_t out, int64_t k, ConvOptions o, bool has_bias) : opt(o) {
  RF_CHECK(in % o.groups == 0 && out % o.groups == 0, "ConvTranspose2d: ", in, " -> ", out,
           " channels do not divide into ", o.groups, " groups");
  weight = register_parameter("weight", empty({in, out / o.groups, k, k}));
  if (has_bias) bias = register_parameter("bias", empty({out}));
  init::default_conv_linear_(weight, bias, init::fan_in(weight));  // PyTorch uses size(1) * k * k here too
}

Tensor ConvTranspose2d::forward(const Tensor& x) { return conv_transpose2d(x, weight, bias, opt); }

Linear::Linear(int64_t in, int64_t out, bool has_bias) {
  weight = register_parameter("weight", empty({out, in}));
  if (has_bias) bias = register_parameter("bias", empty({out}));
  init::default_conv_linear_(weight, bias, in);
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

BatchNorm2d::BatchNorm2d(int64_t c, float eps_, float momentum_) : eps(eps_), momentum(momentum_) {
  weight = register_parameter("weight", ones({c}));
  bias = register_parameter("bias", zeros({c}));
  running_mean = register_buffer("running_mean", zeros({c}));
  running_var = register_buffer("running_var", ones({c}));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  if (training()) {
    NoGrad ng;
    Tensor n = num_batches_tracked;
    n.copy_(n + 1.f);
  }
  return batch_norm(x, running_mean, running_var, weight, bias, training(), momentum, eps);
}

LayerNorm::LayerNorm(int64_t features, int64_t dim_, float eps_, bool has_bias) : dim(dim_), eps(eps_) {
  weight = register_parameter("weight", ones({features}));
  if (has_bias) bias = register_parameter("bias", zeros({features}));
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, dim, weight, bias, eps); }

Tensor activate(const Tensor& x, Act a, float slope) {
  switch (a) {
    case Act::Identity: return x;
    case Act::ReLU: return relu(x);
    case Act::LeakyReLU: return leaky_relu(x, slope);
    case Act::GELU: return gelu(x);
    case Act::Sigmoid: return sigmoid(x);
    case Act::Tanh: return tanh(x);
  }
  return x;
}

ResBlock::ResBlock(int64_t c, int64_t k, Act act, bool bias, PadMode mode) {
  ConvOptions same = ConvOptions::make(1, k / 2);
  body = register_module("body", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                     std::make_shared<Conv2d>(c, c, k, same, bias, mode),
                                     std::make_shared<Activation>(act),
                                     std::make_shared<Conv2d>(c, c, k, same, bias, mode)}));
}

Tensor ResBlock::forward(const Tensor& x) { return x + body->forward(x); }

}  // namespace rf
