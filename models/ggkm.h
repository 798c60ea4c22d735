// gkm, ggkm, ggkm+ — "Deep Single Image Defocus Deblurring via Gaussian Kernel Mixture Learning" (paper 001,
// GGKMNet) and its predecessor GKMNet (whose released code fixes the parameter names here).
//
//   for t = 1 (coarsest, y/4) .. 3 (full):                                      weights shared across scales
//     features  = BFE(y_t)                          U-Net 32/64/128, residual blocks, triplet attention
//     GKM:  w   = APU(features, ConvLSTM state)      2 x 22 maps in (-1, 1)
//           x_t = Sum(w (.) [G(y_t), G(x_{t-1} up)])  G: 22 fixed kernels (delta + Gaussians) on every colour
//     GGKM: alpha = alpha-APU(GAP(bottleneck), LSTM states)   per image, softmax within each of P groups
//           beta  = beta-APU(features, ConvLSTM state) = tanh(b1 (.) b2 + b1)
//           z     = group mixtures sum_q alpha_p[q] g_pq (x) [y_t, x_{t-1} up]  (delta + P groups)
//           x_t   = y_t + 1x1 conv(beta (.) z)          Eq. 12-14 (the conv learns x_up - B(x_up))
//           SRM re-synthesises y_t from (features, beta, x_t) for the training loss (Eq. 21)
// Every kernel is separable and runs as row and column passes (ops/kernel_bank.h), never densely.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "layers/blocks.h"
#include "layers/recurrent.h"
#include "models/model.h"
#include "ops/kernel_bank.h"

namespace rf {

struct GgkmConfig {
  std::string variant = "ggkm";       // gkm | ggkm | ggkm+
  int64_t groups = 21;                // P: Gaussian size groups (gkm: its 21 Gaussians)
  int64_t per_group = 4;              // Q: Gaussians per group (gkm: 1)
  int64_t res_blocks = 1;             // residual blocks per BFE block (ggkm+: more)
  int64_t scales = 3;                 // T
  bool official_channel_order = false;  // gkm: the released code's bank order (each colour sees a third of it)
  nlohmann::json to_json() const;
  static GgkmConfig from_json(const nlohmann::json& j);
  static GgkmConfig variant_defaults(const std::string& variant);
  bool grouped() const { return variant != "gkm"; }
  int64_t maps() const { return groups + 1; }  // the delta and one map per Gaussian (gkm) or group (ggkm)
};

// GKMNet's fixed bank: a delta, then 21 normalised Gaussians sigma = 0.25 i (sizes 3 .. 21, as released).
KernelBank gkm_bank(int64_t gaussians = 21);
// GGKMNet's bank [ours: the paper's sigma formula is garbled]: a delta (kernel 0), then group p = 1..P of Q
// Gaussians sigma_pq = 0.25 (p + q / Q), q = 0..Q-1, sharing the support of GKMNet's kernel p (so group p
// spans GKMNet's sigma_p .. sigma_{p+1}). Kernel 1 + (p - 1) Q + q.
KernelBank ggkm_bank(int64_t groups, int64_t per_group);

// --- GKMNet's building blocks, with the released code's names ------------------------------------------
// ZPool (channel max and mean) -> 7x7 conv (no bias) + BatchNorm (momentum 0.01) -> sigmoid, over one of the
// three permutations of TripletAttention.
class AttentionGate : public Module {
 public:
  AttentionGate();
  // the gate pooled over `dim` of x [B, C, H, W] (1: channels, 2: rows, 3: columns), applied to x
  Tensor forward(const Tensor& x, int64_t dim);
  std::shared_ptr<Conv2d> conv;
  std::shared_ptr<BatchNorm2d> bn;
};

// (hw(x) + cw(x) + hc(x)) / 3: gates pooled over channels, rows and columns.
class TripletAttention : public UnaryModule {
 public:
  TripletAttention();
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<AttentionGate> cw, hc, hw;
};

// y = x + CBR(x); out = y + CBR(y)   (CBR: 3x3 conv + BatchNorm + ReLU; children conv, conv1)
class GkmResBlock : public UnaryModule {
 public:
  explicit GkmResBlock(int64_t channels);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Sequential> conv, conv1;
};

// conv (+ BatchNorm + ReLU) -> residual block(s) -> triplet attention. kind: "in" (3x3 conv only), "down"
// (stride-2 3x3), "same" (3x3), "up" (2x2 stride-2 transposed). Children conv, res_block, ta (+ extra.N).
class GkmConvBlock : public UnaryModule {
 public:
  GkmConvBlock(const std::string& kind, int64_t in, int64_t out, int64_t res_blocks);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Sequential> conv, extra;
  std::shared_ptr<GkmResBlock> res_block;
  std::shared_ptr<TripletAttention> ta;
  size_t active_extra = 0;  // how many of `extra` run (all unless the trainer grows the network)
};

// The backbone (BFE): in_block, conv_block1_1, conv_block2_1, bottle_neck_1, conv_block3_1, conv_block4_1.
struct BfeFeatures {
  Tensor bottleneck, out;  // [B, 128, H/4, W/4], [B, 32, H, W]
};

class GgkmModel : public Model {
 public:
  explicit GgkmModel(const GgkmConfig& c);
  GgkmConfig cfg;

  std::string name() const override { return cfg.variant; }
  nlohmann::json config() const override { return cfg.to_json(); }
  std::string description() const override;
  Tensor deblur(const Tensor& input, const Tensor&, const Tensor&) override;
  LossTerms loss(const Batch& batch, const std::string& stage) override;
  std::vector<std::string> forward_inputs() const override { return {"input_blur_256", "input_blur_128", "input_blur_64"}; }
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;
  int64_t size_multiple() const override { return int64_t(4) << cfg.scales; }  // stride-2 twice at the coarsest scale
  // Parameters of the deblurring network alone (the SRM is a training aid, not counted, as in the paper).
  int64_t inference_parameters() const;

  // [ours] Growth training (ggkm+'s cpu recipe, train/recipe_ggkm.cpp): first every BFE block runs only its
  // first residual block (ggkm's depth, at the cost of a ggkm step); then the extra blocks join, started near
  // the identity (BatchNorm scales 1e-3: each adds almost nothing to the trained function, yet gets gradients).
  void run_extra_blocks(bool on);
  void start_extra_blocks_near_identity();
  static bool extra_block_parameter(const std::string& name) { return name.find(".extra.") != std::string::npos; }

  struct Scale {
    Tensor out, y_resynth, target;  // y_resynth: the SRM's output (ggkm, training)
  };
  // pyramid: inputs from the coarsest to the finest; returns one result per scale, coarsest first.
  std::vector<Scale> run(const std::vector<Tensor>& pyramid, bool with_srm);
  // The input pyramid of x [B, 3, H, W]: bilinear halvings, coarsest first.
  std::vector<Tensor> pyramid(const Tensor& x) const;

 private:
  BfeFeatures bfe(const Tensor& y);
  std::vector<std::shared_ptr<GkmConvBlock>> bfe_blocks() const;
  std::shared_ptr<GkmConvBlock> in_block, conv_block1_1, conv_block2_1, bottle_neck_1, conv_block3_1, conv_block4_1;
  // The (beta-)APU: path 1 avg-pool -> ConvLSTM (conv_atten) -> nearest x2; path 2 conv.conv (GKM: 3x3 conv +
  // BN + ReLU; GGKM: two 3x3 convs). SumLayer.conv: the 1x1 sum. alpha_apu: two LSTM cells (GGKM). srm: GGKM.
  struct Apu : Module {
    Apu(int64_t features, int64_t maps, bool grouped);
    std::shared_ptr<Module> conv;
    std::shared_ptr<Sequential> conv_seq;
    std::shared_ptr<ConvLSTMCell> conv_atten;
  };
  struct Sum : Module {
    explicit Sum(int64_t in);
    std::shared_ptr<Conv2d> conv;
  };
  struct AlphaApu : Module {
    AlphaApu(int64_t features, int64_t outputs);
    std::shared_ptr<LSTMCell> lstm1, lstm2;
  };
  std::shared_ptr<Apu> apu_;
  std::shared_ptr<Sum> sum_;
  std::shared_ptr<AlphaApu> alpha_apu_;
  std::shared_ptr<Sequential> srm_;
  KernelBank bank_;
  BankPlan plan_;
};

// `convert --official` for gkm: a released GKMNet state dict (its names are this file's) -> the config with
// the released bank order.
nlohmann::json gkm_config_from_official(std::map<std::string, Tensor>& tensors);

}  // namespace rf
