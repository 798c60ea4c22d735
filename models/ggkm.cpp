#include "models/ggkm.h"

#include "models/config.h"

#include <cmath>

#include "layers/init.h"
#include "layers/losses.h"
#include "ops/ops.h"
#include "ops/separable.h"

namespace rf {

// --- configuration -----------------------------------------------------------------------------------------
nlohmann::json GgkmConfig::to_json() const {
  return {{"variant", variant},       {"groups", groups}, {"per_group", per_group},
          {"res_blocks", res_blocks}, {"scales", scales}, {"official_channel_order", official_channel_order}};
}

GgkmConfig GgkmConfig::variant_defaults(const std::string& v) {
  GgkmConfig c;
  c.variant = v;
  if (v == "gkm") {
    c.per_group = 1;
  } else if (v == "ggkm+") {
    c.res_blocks = 7;  // "more residual blocks in the BFE": 7 per block gives 5.9 M parameters (paper: 5.93 M)
  } else {
    RF_CHECK(v == "ggkm", "unknown variant '", v, "' (gkm, ggkm or ggkm+)");
  }
  return c;
}

GgkmConfig GgkmConfig::from_json(const nlohmann::json& j) {
  ConfigReader r(j, "ggkm config");
  std::string variant = "ggkm";
  r.get("variant", variant, {"gkm", "ggkm", "ggkm+"});
  GgkmConfig c = variant_defaults(variant);
  r.get("groups", c.groups, 1, 64);
  r.get("per_group", c.per_group, 1, 16);
  r.get("res_blocks", c.res_blocks, 1, 32);
  r.get("scales", c.scales, 1, 5);
  r.get("official_channel_order", c.official_channel_order);
  r.finish();
  RF_CHECK(c.variant != "gkm" || c.per_group == 1, "gkm config: per_group must be 1 (no groups)");
  RF_CHECK(!c.official_channel_order || (c.variant == "gkm" && c.groups == 21),
           "official_channel_order is GKMNet's released bank (gkm, 21 Gaussians) only");
  return c;
}

// --- the banks ------------------------------------------------------------------------------------------------
// GKMNet's support of Gaussian i (0-based): 3, 3, 3, 5, 5, 7, 7, ... growing by 2 after every even i >= 2, at most 21.
static int gkm_radius(int64_t i) {
  int size = 3;
  for (int64_t k = 0; k < i; ++k)
    if (k >= 2 && k % 2 == 0 && size < 21) size += 2;
  return size / 2;
}

KernelBank gkm_bank(int64_t gaussians) {
  KernelBank b;
  b.taps.push_back({1.f});  // the delta: in-focus pixels pass unchanged
  for (int64_t i = 0; i < gaussians; ++i) b.taps.push_back(gaussian_taps(0.25f * (float)(i + 1), gkm_radius(i)));
  return b;
}

KernelBank ggkm_bank(int64_t groups, int64_t per_group) {
  KernelBank b;
  b.taps.push_back({1.f});
  for (int64_t p = 1; p <= groups; ++p)
    for (int64_t q = 0; q < per_group; ++q)
      b.taps.push_back(gaussian_taps(0.25f * ((float)p + (float)q / (float)per_group), gkm_radius(p - 1)));
  return b;
}

// --- GKMNet's blocks ------------------------------------------------------------------------------------------
AttentionGate::AttentionGate() {
  conv = register_module("conv", std::make_shared<Conv2d>(2, 1, 7, ConvOptions::make(1, 3), false));
  bn = register_module("bn", std::make_shared<BatchNorm2d>(1, 1e-5f, 0.01f));
}

// The released code permutes x so that the pooled dim is dim 1, gates, and permutes back. The same
// without moving x: pool over `dim`, lay the two pooled maps out as the permuted image's [B, 2, *, *], and
// broadcast the gate back over `dim`.
Tensor AttentionGate::forward(const Tensor& x, int64_t dim) {
  const int64_t b = x.size(0), c = x.size(1), w = x.size(3);
  Tensor mx = max(x, dim, true), mn = mean(x, {dim}, true);  // [B, 1, H, W], [B, C, 1, W] or [B, C, H, 1]
  Tensor pooled, gate;
  if (dim == 1) {
    pooled = concat({mx, mn}, 1);  // [B, 2, H, W]
  } else if (dim == 2) {           // permuted image [B, H, C, W]: the planes are [C, W]
    pooled = concat({mx.reshape({b, 1, c, w}), mn.reshape({b, 1, c, w})}, 1);
  } else {  // permuted image [B, W, H, C]: the planes are [H, C]
    pooled = concat({permute(mx, {0, 3, 2, 1}), permute(mn, {0, 3, 2, 1})}, 1);
  }
  gate = sigmoid(bn->forward(conv->forward(pooled)));  // [B, 1, *, *]
  if (dim == 2) gate = gate.reshape({b, c, 1, w});
  if (dim == 3) gate = permute(gate, {0, 3, 2, 1});  // [B, C, H, 1]
  return x * gate;
}

TripletAttention::TripletAttention() {
  cw = register_module("cw", std::make_shared<AttentionGate>());
  hc = register_module("hc", std::make_shared<AttentionGate>());
  hw = register_module("hw", std::make_shared<AttentionGate>());
}

Tensor TripletAttention::forward(const Tensor& x) {
  return (hw->forward(x, 1) + cw->forward(x, 2) + hc->forward(x, 3)) * (1.f / 3.f);
}

static std::shared_ptr<Sequential> conv_bn_relu(std::shared_ptr<UnaryModule> conv, int64_t out) {
  return std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
      conv, std::make_shared<BatchNorm2d>(out), std::make_shared<Activation>(Act::ReLU)});
}

GkmResBlock::GkmResBlock(int64_t ch) {
  conv = register_module("conv", conv_bn_relu(std::make_shared<Conv2d>(ch, ch, 3, ConvOptions::make(1, 1)), ch));
  conv1 = register_module("conv1", conv_bn_relu(std::make_shared<Conv2d>(ch, ch, 3, ConvOptions::make(1, 1)), ch));
}

Tensor GkmResBlock::forward(const Tensor& x) {
  Tensor y = x + conv->forward(x);
  return y + conv1->forward(y);
}

GkmConvBlock::GkmConvBlock(const std::string& kind, int64_t in, int64_t out, int64_t res_blocks) {
  if (kind == "in") {
    conv = std::make_shared<Sequential>();
    conv->push_back(std::make_shared<Conv2d>(in, out, 3, ConvOptions::make(1, 1)));
  } else if (kind == "up") {
    conv = conv_bn_relu(std::make_shared<ConvTranspose2d>(in, out, 2, ConvOptions::make(2, 0)), out);
  } else {
    conv = conv_bn_relu(std::make_shared<Conv2d>(in, out, 3, ConvOptions::make(kind == "down" ? 2 : 1, 1)), out);
  }
  register_module("conv", conv);
  ta = register_module("ta", std::make_shared<TripletAttention>());
  res_block = register_module("res_block", std::make_shared<GkmResBlock>(out));
  if (res_blocks > 1) {
    extra = register_module("extra", std::make_shared<Sequential>());
    for (int64_t i = 1; i < res_blocks; ++i) extra->push_back(std::make_shared<GkmResBlock>(out));
    active_extra = extra->size();
  }
}

Tensor GkmConvBlock::forward(const Tensor& x) {
  Tensor y = res_block->forward(conv->forward(x));
  for (size_t i = 0; i < active_extra; ++i) y = (*extra)[i].forward(y);
  return ta->forward(y);
}

GgkmModel::Apu::Apu(int64_t features, int64_t maps, bool grouped) {
  // A child named "conv" holding a Sequential named "conv": the released code's APU.conv.conv.N names.
  struct Holder : Module {
    explicit Holder(std::shared_ptr<Sequential> s) { register_module("conv", s); }
  };
  if (grouped)  // GGKMNet's path 2: two convolutions at full resolution
    conv_seq = std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
        std::make_shared<Conv2d>(features, maps, 3, ConvOptions::make(1, 1)), std::make_shared<Activation>(Act::ReLU),
        std::make_shared<Conv2d>(maps, maps, 3, ConvOptions::make(1, 1))});
  else
    conv_seq = conv_bn_relu(std::make_shared<Conv2d>(features, maps, 3, ConvOptions::make(1, 1)), maps);
  conv = register_module("conv", std::make_shared<Holder>(conv_seq));
  conv_atten = register_module("conv_atten", std::make_shared<ConvLSTMCell>(features, maps, 5, GateOrder::IFOG));
}

GgkmModel::Sum::Sum(int64_t in) { conv = register_module("conv", std::make_shared<Conv2d>(in, 3, 1)); }

GgkmModel::AlphaApu::AlphaApu(int64_t features, int64_t outputs) {
  lstm1 = register_module("lstm1", std::make_shared<LSTMCell>(features, features / 4));
  lstm2 = register_module("lstm2", std::make_shared<LSTMCell>(features / 4, outputs));
}

// --- the network ------------------------------------------------------------------------------------------------
GgkmModel::GgkmModel(const GgkmConfig& c) : cfg(c) {
  const int64_t rb = c.res_blocks, maps = c.maps();
  in_block = register_module("in_block", std::make_shared<GkmConvBlock>("in", 3, 32, rb));
  conv_block1_1 = register_module("conv_block1_1", std::make_shared<GkmConvBlock>("down", 32, 64, rb));
  conv_block2_1 = register_module("conv_block2_1", std::make_shared<GkmConvBlock>("down", 64, 128, rb));
  bottle_neck_1 = register_module("bottle_neck_1", std::make_shared<GkmConvBlock>("same", 128, 128, rb));
  conv_block3_1 = register_module("conv_block3_1", std::make_shared<GkmConvBlock>("up", 128, 64, rb));
  conv_block4_1 = register_module("conv_block4_1", std::make_shared<GkmConvBlock>("up", 64, 32, rb));
  apu_ = register_module("APU", std::make_shared<Apu>(32, 2 * maps, c.grouped()));
  sum_ = register_module("SumLayer", std::make_shared<Sum>(2 * 3 * maps));
  if (c.grouped()) {
    alpha_apu_ = register_module("alpha_APU", std::make_shared<AlphaApu>(128, c.groups * c.per_group));
    srm_ = register_module("SRM", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                      std::make_shared<Conv2d>(32 + 2 * maps + 3, 32, 3, ConvOptions::make(1, 1)),
                                      std::make_shared<Activation>(Act::ReLU),
                                      std::make_shared<Conv2d>(32, 32, 3, ConvOptions::make(1, 1)),
                                      std::make_shared<Activation>(Act::ReLU),
                                      std::make_shared<Conv2d>(32, 3, 3, ConvOptions::make(1, 1))}));
    // GGKMNet initialises every learnable weight with Xavier (Sec. 5.1); the biases of convolutions, linear
    // maps and LSTMs start at zero (BatchNorm keeps its ones and zeros).
    std::map<std::string, Tensor> by_name;
    for (auto& [n, p] : named_parameters()) by_name[n] = p;
    for (auto& [n, p] : by_name) {
      Tensor t = p;
      if (t.dim() >= 2) {
        init::xavier_uniform_(t);
        continue;
      }
      const size_t dot = n.rfind('.');
      std::string leaf = n.substr(dot + 1), base = n.substr(0, dot + 1);
      std::string weight = leaf == "bias" ? base + "weight" : leaf == "bias_ih" ? base + "weight_ih" : leaf == "bias_hh" ? base + "weight_hh" : "";
      if (!weight.empty() && by_name.count(weight) && by_name[weight].dim() >= 2) init::zeros_(t);
    }
    // Eq. 14's correction starts at zero: the network starts as the identity x_t = y_t.
    init::zeros_(sum_->conv->weight);
    init::zeros_(sum_->conv->bias);
  }
  // The bank and which kernels make each of the 3 x maps planes (colour-major: plane c * maps + m).
  bank_ = c.grouped() ? ggkm_bank(c.groups, c.per_group) : gkm_bank(c.groups);
  plan_.q = c.per_group;
  for (int64_t colour = 0; colour < 3; ++colour)
    for (int64_t m = 0; m < maps; ++m) {
      const int64_t j = colour * maps + m;
      plan_.channel.push_back((int32_t)colour);
      for (int64_t q = 0; q < c.per_group; ++q) {
        int64_t k = m == 0 ? 0 : 1 + (m - 1) * c.per_group + q;     // the delta, or group m's q'th Gaussian
        if (c.official_channel_order) k = j / 3;                    // the released code's np.repeat order
        plan_.kernel.push_back((int32_t)k);
      }
    }
}

std::string GgkmModel::description() const {
  return cat(cfg.variant, " (", cfg.grouped() ? cat(cfg.groups, " groups x ", cfg.per_group, " Gaussians") : cat(cfg.groups, " Gaussians"),
             ", ", cfg.scales, " scales", cfg.official_channel_order ? ", released channel order" : "", ")");
}

int64_t GgkmModel::inference_parameters() const {
  int64_t n = num_parameters();
  if (srm_) n -= srm_->num_parameters();
  return n;
}

std::vector<std::shared_ptr<GkmConvBlock>> GgkmModel::bfe_blocks() const {
  return {in_block, conv_block1_1, conv_block2_1, bottle_neck_1, conv_block3_1, conv_block4_1};
}

void GgkmModel::run_extra_blocks(bool on) {
  for (auto& b : bfe_blocks()) b->active_extra = on && b->extra ? b->extra->size() : 0;
}

void GgkmModel::start_extra_blocks_near_identity() {
  for (auto& b : bfe_blocks()) {
    for (size_t i = 0; b->extra && i < b->extra->size(); ++i) {
      auto& rb = dynamic_cast<GkmResBlock&>((*b->extra)[i]);
      for (auto& branch : {rb.conv, rb.conv1}) {  // conv -> BatchNorm -> ReLU
        auto& bn = dynamic_cast<BatchNorm2d&>((*branch)[1]);
        bn.weight.fill_(1e-3f);
        bn.bias.fill_(0.f);
      }
    }
  }
}

BfeFeatures GgkmModel::bfe(const Tensor& y) {
  Tensor fi = in_block->forward(y), f1 = conv_block1_1->forward(fi), f2 = conv_block2_1->forward(f1);
  Tensor bn = bottle_neck_1->forward(f2);
  Tensor f3 = conv_block3_1->forward(bn + f2);
  return {bn, conv_block4_1->forward(f3 + f1)};
}

std::vector<Tensor> GgkmModel::pyramid(const Tensor& x) const {
  std::vector<Tensor> p = {x};
  for (int64_t s = 1; s < cfg.scales; ++s) {
    const Tensor& f = p.front();
    p.insert(p.begin(), resize_bilinear(f, f.size(2) / 2, f.size(3) / 2));
  }
  return p;
}

std::vector<GgkmModel::Scale> GgkmModel::run(const std::vector<Tensor>& pyr, bool with_srm) {
  const int64_t maps = cfg.maps(), b = pyr[0].size(0);
  RF_CHECK(pyr[0].size(2) % 4 == 0 && pyr[0].size(3) % 4 == 0, cfg.variant, ": the coarsest input ", describe(pyr[0]),
           " must have sides that are multiples of 4 (full-size sides: multiples of ", size_multiple(), ")");
  std::vector<Scale> out;
  LstmState state, a1, a2;  // the ConvLSTM's state; the alpha-APU's two LSTM states (all carried across scales)
  Tensor prev;
  for (size_t t = 0; t < pyr.size(); ++t) {
    const Tensor& y = pyr[t];
    const int64_t h = y.size(2), w = y.size(3);
    Tensor x_up = t == 0 ? y : resize_bilinear(prev, h, w);
    if (t > 0) state = {resize_bilinear(state.h, h / 2, w / 2), resize_bilinear(state.c, h / 2, w / 2)};
    BfeFeatures f = bfe(y);
    // The per-pixel maps: path 1 (pooled, recurrent, smooth) x path 2 (full resolution).
    Tensor path2 = apu_->conv_seq->forward(f.out);
    state = apu_->conv_atten->forward(avg_pool2d(f.out, 2, 2), state);
    Tensor path1 = upsample_nearest(state.h, h, w);
    Tensor maps_yx = cfg.grouped() ? tanh(path1 * path2 + path1) : sigmoid(path1 * path2 + path1) * 2.f - 1.f;
    auto per_colour = [&](int64_t from) {  // maps [B, maps] of y or x -> one per plane (colour-major)
      Tensor m = slice(maps_yx, 1, from, from + maps);
      return concat({m, m, m}, 1);
    };
    Tensor weights;  // GGKM: the per-image group mixtures
    if (cfg.grouped()) {
      Tensor pooled = mean(f.bottleneck, {2, 3});  // [B, 128]
      a1 = alpha_apu_->lstm1->forward(pooled, a1);
      a2 = alpha_apu_->lstm2->forward(relu(a1.h), a2);
      Tensor alpha = softmax(a2.h.reshape({b, cfg.groups, cfg.per_group}), 2);
      std::vector<float> one_hot(cfg.per_group, 0.f);
      one_hot[0] = 1.f;
      Tensor delta = expand(from_vector(one_hot, {1, 1, cfg.per_group}, y.device()), {b, 1, cfg.per_group});
      Tensor per_map = concat({delta, alpha}, 1);  // [B, maps, Q]
      weights = expand(unsqueeze(per_map, 1), {b, 3, maps, cfg.per_group}).reshape({b, 3 * maps, cfg.per_group});
    }
    Tensor zy = kernel_bank(y, bank_, plan_, weights), zx = kernel_bank(x_up, bank_, plan_, weights);
    Tensor mixed = sum_->conv->forward(concat({zy * per_colour(0), zx * per_colour(maps)}, 1));
    Scale s;
    s.out = cfg.grouped() ? y + mixed : mixed;  // GGKM: Eq. 14 around the input; GKM: the released sum as is
    if (with_srm && srm_) s.y_resynth = sigmoid(srm_->forward(concat({f.out, maps_yx, s.out}, 1)));
    prev = s.out;
    out.push_back(s);
  }
  return out;
}

Tensor GgkmModel::deblur(const Tensor& input, const Tensor&, const Tensor&) {
  return run(pyramid(input), false).back().out;
}

NamedTensors GgkmModel::forward_named(const std::map<std::string, Tensor>& in) {
  RF_CHECK(cfg.scales == 3, "forward: the released interface has three scales; this model has ", cfg.scales);
  auto res = run({in.at("input_blur_64"), in.at("input_blur_128"), in.at("input_blur_256")}, false);
  return {{"out0", res[2].out}, {"out1", res[1].out}, {"out2", res[0].out}};  // db256, db128, db64
}

// Eq. 17-21: sum over scales of w_t (MSE + 0.1 FFT-L1 + 0.1 (1 - SSIM) + 0.1 SR-L1), w_t = 2^(1 - t) with
// t = 1 the coarsest scale; each term a mean over its pixels [ours: the paper leaves the reduction open].
LossTerms GgkmModel::loss(const Batch& batch, const std::string&) {
  std::vector<Tensor> inputs = pyramid(batch.input), targets = pyramid(batch.target);
  auto res = run(inputs, true);
  Tensor total;
  double mse_full = 0, sr = 0;
  for (size_t t = 0; t < res.size(); ++t) {
    const float w = std::pow(2.f, -(float)t);
    const Tensor& x = res[t].out;
    Tensor l = mse_loss(x, targets[t]) + 0.1f * fft_l1_loss(x, targets[t]);
    if (std::min(x.size(2), x.size(3)) >= 11) l = l + 0.1f * (1.f - ssim_index(x, targets[t]));
    if (res[t].y_resynth.defined()) {
      Tensor lsr = l1_loss(res[t].y_resynth, inputs[t]);
      sr += lsr.item();
      l = l + 0.1f * lsr;
    }
    total = total.defined() ? total + w * l : w * l;
    if (t + 1 == res.size()) mse_full = mse_loss(x, targets[t]).item();
  }
  std::vector<std::pair<std::string, float>> parts = {{"mse_full", (float)mse_full}};
  if (srm_) parts.push_back({"sr_l1", (float)sr});
  return {total, parts};
}

// Official GKMNet state dict -> refocus: the names are the released ones; the bank is the released order.
nlohmann::json gkm_config_from_official(std::map<std::string, Tensor>& t) {
  RF_CHECK(t.count("SumLayer.conv.weight") && t.count("APU.conv_atten.conv.weight"),
           "not a GKMNet state dict (no SumLayer.conv.weight or APU.conv_atten.conv.weight)");
  GgkmConfig c = GgkmConfig::variant_defaults("gkm");
  c.groups = t["SumLayer.conv.weight"].size(1) / 6 - 1;
  c.official_channel_order = c.groups == 21;
  return c.to_json();
}

}  // namespace rf
