#include "models/jdrl_backbones.h"

#include <cmath>

#include "layers/init.h"
#include "ops/ops.h"

namespace rf {

Tensor pixel_unshuffle(const Tensor& x, int64_t r) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  RF_CHECK(h % r == 0 && w % r == 0, "pixel_unshuffle: ", describe(x), " does not divide by ", r);
  Tensor t = x.reshape({b, c, h / r, r, w / r, r});
  return permute(t, {0, 1, 3, 5, 2, 4}).reshape({b, c * r * r, h / r, w / r});
}

Tensor pixel_shuffle(const Tensor& x, int64_t r) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  RF_CHECK(c % (r * r) == 0, "pixel_shuffle: ", describe(x), " has no multiple of ", r * r, " channels");
  Tensor t = x.reshape({b, c / (r * r), r, r, h, w});
  return permute(t, {0, 1, 4, 2, 5, 3}).reshape({b, c / (r * r), h * r, w * r});
}

namespace {

// The released repository's "same" convolution for 2x2 kernels: one zero column on the right and one row at the
// bottom, then a valid convolution (the size is kept; the result is half a pixel off centre).
struct SameConv2x2 : UnaryModule {
  SameConv2x2(int64_t in, int64_t out) {
    weight = register_parameter("weight", empty({out, in, 2, 2}));
    bias = register_parameter("bias", empty({out}));
    init::default_conv_linear_(weight, bias, in * 4);
  }
  Tensor forward(const Tensor& x) override { return conv2d(pad2d(x, 0, 1, 0, 1, PadMode::Zeros), weight, bias); }
  Tensor weight, bias;
};

struct Upsample2 : UnaryModule {
  Tensor forward(const Tensor& x) override { return upsample_nearest(x, x.size(2) * 2, x.size(3) * 2); }
};

struct Shuffle : UnaryModule {
  Shuffle(int64_t r, bool down) : r(r), down(down) {}
  Tensor forward(const Tensor& x) override { return down ? pixel_unshuffle(x, r) : pixel_shuffle(x, r); }
  int64_t r;
  bool down;
};

struct Holder : Module {
  Holder(const std::string& name, std::shared_ptr<Module> m) { register_module(name, std::move(m)); }
};

std::shared_ptr<Sequential> double_conv(int64_t in, int64_t out) {
  ConvOptions same = ConvOptions::make(1, 1);
  return std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
      std::make_shared<Conv2d>(in, out, 3, same), std::make_shared<Activation>(Act::ReLU),
      std::make_shared<Conv2d>(out, out, 3, same), std::make_shared<Activation>(Act::ReLU)});
}

}  // namespace

// --- the released U-Net ----------------------------------------------------------------------------------------
VggDeblur::VggDeblur(int64_t in, int64_t w) {
  const int64_t widths[5] = {w, 2 * w, 4 * w, 8 * w, 16 * w};
  int64_t prev = in;
  struct Encoder : Module {  // "encoder.block1" .. "encoder.block5"
    using Module::register_module;
  };
  auto reg = std::make_shared<Encoder>();
  for (int i = 0; i < 5; ++i) {
    enc_.push_back(reg->register_module(cat("block", i + 1), double_conv(prev, widths[i])));
    prev = widths[i];
  }
  encoder = register_module("encoder", std::static_pointer_cast<Module>(reg));
  for (int i = 0; i < 4; ++i) {
    const int64_t hi = widths[4 - i], lo = widths[3 - i];
    up_.push_back(register_module(cat("up", 6 + i), std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                                        std::make_shared<Upsample2>(), std::make_shared<SameConv2x2>(hi, lo)})));
    dec_.push_back(register_module(cat("block", 6 + i), double_conv(2 * lo, lo)));
  }
  out = register_module("out", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                   std::make_shared<Conv2d>(w, 3, 3, ConvOptions::make(1, 1))}));
  // The released initialisation: Kaiming normal (fan out, ReLU) weights; biases keep U(+-1/sqrt(fan_in)).
  for (auto& [n, p] : named_parameters()) {
    Tensor t = p;
    if (t.dim() == 4) init::normal_(t, 0.f, std::sqrt(2.f / (float)init::fan_out(t)));
  }
}

Tensor VggDeblur::trunk(const Tensor& x) {
  RF_CHECK(x.size(2) % 16 == 0 && x.size(3) % 16 == 0, "VGG_Deblur: sides must be multiples of 16, got ", describe(x));
  std::vector<Tensor> skips;
  Tensor h = x;
  for (int i = 0; i < 5; ++i) {
    if (i > 0) h = max_pool2d(h, 2, 2);
    h = enc_[i]->forward(h);
    if (i >= 3) h = dropout(h, 0.4f, training());  // the dropped tensor is also the skip
    skips.push_back(h);
  }
  for (int i = 0; i < 4; ++i) h = dec_[i]->forward(concat({up_[i]->forward(h), skips[3 - i]}, 1));
  return out->forward(h);
}

Tensor VggDeblur::forward(const Tensor& x) { return sigmoid(trunk(x)); }

Tensor VggDeblur::forward_residual(const Tensor& x, const Tensor& base) {
  // Clamped so that black and white pixels stay finite (logit(1e-3) = -6.9).
  Tensor b = clamp(base, 1e-3f, 1.f - 1e-3f);
  return sigmoid(log(b) - log(1.f - b) + trunk(x));
}

void VggDeblur::zero_output() { init::zeros_(*out); }

// --- Restormer -------------------------------------------------------------------------------------------------
RestormerBlock::Attention::Attention(int64_t dim, int64_t h) : heads(h) {
  temperature = register_parameter("temperature", ones({h, 1, 1}));
  qkv = register_module("qkv", std::make_shared<Conv2d>(dim, 3 * dim, 1, ConvOptions{}, false));
  qkv_dwconv = register_module("qkv_dwconv", std::make_shared<Conv2d>(3 * dim, 3 * dim, 3, ConvOptions::make(1, 1, 1, 3 * dim), false));
  project_out = register_module("project_out", std::make_shared<Conv2d>(dim, dim, 1, ConvOptions{}, false));
}

// MDTA: attention across channels (C/heads x C/heads per head) of L2-normalised q and k, scaled by a learned
// temperature.
Tensor RestormerBlock::Attention::forward(const Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), ch = c / heads;
  Tensor t = qkv_dwconv->forward(qkv->forward(x));
  auto part = [&](int64_t i) { return slice(t, 1, i * c, (i + 1) * c).reshape({b * heads, ch, h * w}); };
  auto normalize = [](const Tensor& v) { return v / maximum(sqrt(sum(v * v, {2}, true)), full({1}, 1e-12f, v.device())); };
  Tensor q = normalize(part(0)), k = normalize(part(1)), v = part(2);
  Tensor scores = matmul(q, k, false, true).reshape({b, heads, ch, ch}) * temperature;
  Tensor attn = softmax(scores, 3).reshape({b * heads, ch, ch});
  return project_out->forward(matmul(attn, v).reshape({b, c, h, w}));
}

RestormerBlock::FeedForward::FeedForward(int64_t dim, float expansion) {
  const int64_t hidden = (int64_t)((float)dim * expansion);
  project_in = register_module("project_in", std::make_shared<Conv2d>(dim, 2 * hidden, 1, ConvOptions{}, false));
  dwconv = register_module("dwconv", std::make_shared<Conv2d>(2 * hidden, 2 * hidden, 3, ConvOptions::make(1, 1, 1, 2 * hidden), false));
  project_out = register_module("project_out", std::make_shared<Conv2d>(hidden, dim, 1, ConvOptions{}, false));
}

// GDFN: gelu(x1) * x2 of the depthwise-convolved expansion.
Tensor RestormerBlock::FeedForward::forward(const Tensor& x) {
  Tensor t = dwconv->forward(project_in->forward(x));
  const int64_t hidden = t.size(1) / 2;
  return project_out->forward(gelu(slice(t, 1, 0, hidden)) * slice(t, 1, hidden, 2 * hidden));
}

RestormerBlock::RestormerBlock(int64_t dim, int64_t heads, float expansion) {
  norm1_ = register_module("norm1", std::make_shared<Norm>(dim));
  attn_ = register_module("attn", std::make_shared<Attention>(dim, heads));
  norm2_ = register_module("norm2", std::make_shared<Norm>(dim));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(dim, expansion));
}

Tensor RestormerBlock::forward(const Tensor& x) {
  Tensor y = x + attn_->forward(norm1_->body->forward(x));
  return y + ffn_->forward(norm2_->body->forward(y));
}

Restormer::Restormer(const RestormerConfig& c) : cfg_(c) {
  RF_CHECK(c.blocks.size() == 4 && c.heads.size() == 4, "Restormer: blocks and heads need 4 entries");
  const int64_t d = c.dim;
  auto level = [&](int64_t dim, int64_t n, int64_t heads) {
    auto s = std::make_shared<Sequential>();
    for (int64_t i = 0; i < n; ++i) s->push_back(std::make_shared<RestormerBlock>(dim, heads, c.expansion));
    return s;
  };
  auto resample = [&](const std::string& name, int64_t in, int64_t out_conv, bool down, std::shared_ptr<Conv2d>& conv) {
    conv = std::make_shared<Conv2d>(in, out_conv, 3, ConvOptions::make(1, 1), false);
    auto body = std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{conv, std::make_shared<Shuffle>(2, down)});
    return register_module(name, std::static_pointer_cast<Module>(std::make_shared<Holder>("body", body)));
  };
  embed_ = std::make_shared<Conv2d>(c.in_channels, d, 3, ConvOptions::make(1, 1), false);
  patch_embed_ = register_module("patch_embed", std::static_pointer_cast<Module>(std::make_shared<Holder>("proj", embed_)));
  enc1_ = register_module("encoder_level1", level(d, c.blocks[0], c.heads[0]));
  down12_ = resample("down1_2", d, d / 2, true, down12c_);
  enc2_ = register_module("encoder_level2", level(2 * d, c.blocks[1], c.heads[1]));
  down23_ = resample("down2_3", 2 * d, d, true, down23c_);
  enc3_ = register_module("encoder_level3", level(4 * d, c.blocks[2], c.heads[2]));
  down34_ = resample("down3_4", 4 * d, 2 * d, true, down34c_);
  latent_ = register_module("latent", level(8 * d, c.blocks[3], c.heads[3]));
  up43_ = resample("up4_3", 8 * d, 16 * d, false, up43c_);
  reduce3_ = register_module("reduce_chan_level3", std::make_shared<Conv2d>(8 * d, 4 * d, 1, ConvOptions{}, false));
  dec3_ = register_module("decoder_level3", level(4 * d, c.blocks[2], c.heads[2]));
  up32_ = resample("up3_2", 4 * d, 8 * d, false, up32c_);
  reduce2_ = register_module("reduce_chan_level2", std::make_shared<Conv2d>(4 * d, 2 * d, 1, ConvOptions{}, false));
  dec2_ = register_module("decoder_level2", level(2 * d, c.blocks[1], c.heads[1]));
  up21_ = resample("up2_1", 2 * d, 4 * d, false, up21c_);
  dec1_ = register_module("decoder_level1", level(2 * d, c.blocks[0], c.heads[0]));
  refine_ = register_module("refinement", level(2 * d, c.refinement, c.heads[0]));
  output_ = register_module("output", std::make_shared<Conv2d>(2 * d, 3, 3, ConvOptions::make(1, 1), false));
}

Tensor Restormer::forward_residual(const Tensor& x, const Tensor& base) {
  RF_CHECK(x.size(2) % 8 == 0 && x.size(3) % 8 == 0, "Restormer: sides must be multiples of 8, got ", describe(x));
  auto shuffle_conv = [](const std::shared_ptr<Conv2d>& conv, const Tensor& t, bool down) {
    return down ? pixel_unshuffle(conv->forward(t), 2) : pixel_shuffle(conv->forward(t), 2);
  };
  Tensor e1 = enc1_->forward(embed_->forward(x));
  Tensor e2 = enc2_->forward(shuffle_conv(down12c_, e1, true));
  Tensor e3 = enc3_->forward(shuffle_conv(down23c_, e2, true));
  Tensor l = latent_->forward(shuffle_conv(down34c_, e3, true));
  Tensor d3 = dec3_->forward(reduce3_->forward(concat({shuffle_conv(up43c_, l, false), e3}, 1)));
  Tensor d2 = dec2_->forward(reduce2_->forward(concat({shuffle_conv(up32c_, d3, false), e2}, 1)));
  Tensor d1 = dec1_->forward(concat({shuffle_conv(up21c_, d2, false), e1}, 1));
  return output_->forward(refine_->forward(d1)) + base;
}

Tensor Restormer::forward(const Tensor& x) { return forward_residual(x, slice(x, 1, 0, 3)); }

void Restormer::zero_output() { init::zeros_(*output_); }

}  // namespace rf
