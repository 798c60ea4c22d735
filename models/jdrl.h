// jdrl — "Reblurring-Guided Single Image Defocus Deblurring: A Learning Framework with Misaligned Training Pairs"
// (paper 004), as its Fig. 3 draws it:
//
//   deblurring model:  blurry y --estimator E--> B^ (35 per-pixel kernel seeds)
//                      (y, B^) --fusion F (deformable cross-attention, 5 heads x 4 points)--> fused map
//                      cat(y, fused) --SE--> backbone D (the released U-Net or Restormer) --> x^
//   training only:     reblurring module R(x^, y) = W0 x^ + sum_n W_n (k_n * x^)   (KPN seeds -> isotropic kernels;
//                      WPN -> 8 softmax maps; ops/isotropic_reblur.h), pseudo map B_P = Repmat(W_1..7) (.) S
//   losses (Eq. 14):   L_D (masked, both warp directions) + 0.5 Charb(R(x^, y), y) + 0.5 Charb(B^, B_P), after a
//                      warm-up against the ground truth warped onto the blurry input; flow from ops/optical_flow.h.
// The released conference modules are models of their own: jdrl_reblur (Reblur_Model: inputs im_s, im_b) and
// jdrl_unet (VGG_Deblur: input im_b), with the released names.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "layers/blocks.h"
#include "models/jdrl_backbones.h"
#include "models/model.h"

namespace rf {

// conv_first (in -> width) -> block1..3 (y + conv2(relu(conv1(y)))) -> out (width -> outputs): the trunk of the
// released KPN and WPN and of the draft's estimator.
class SeedNet : public UnaryModule {
 public:
  SeedNet(int64_t in, int64_t width, int64_t outputs);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv_first, out;
  std::vector<std::pair<std::shared_ptr<Conv2d>, std::shared_ptr<Conv2d>>> blocks;
};

// Reblur_Model: kernel_map_gene (WPN, 8 maps) and kpn (35 seeds), both on cat(im_s, im_b). 474,987 parameters at the
// released width 64.
class ReblurModule : public Module {
 public:
  explicit ReblurModule(int64_t width = 64);
  struct Output {
    Tensor reblurred, seeds, maps;
  };
  Output forward(const Tensor& im_s, const Tensor& im_b);
  std::shared_ptr<SeedNet> kernel_map_gene, kpn;
};

// Eq. 10: queries from the image, 5 heads x 4 sampling points each, offsets and attention weights predicted per
// pixel, values the estimated map sampled bilinearly; the output projection starts at zero (F starts as B^).
class DeformableFusion : public Module {
 public:
  DeformableFusion(int64_t channels, int64_t heads, int64_t points, int64_t width = 32);
  Tensor forward(const Tensor& image, const Tensor& map);
  std::shared_ptr<Conv2d> query, offsets, weights, value, output;
  int64_t heads, points;
};

struct JdrlConfig {
  std::string backbone = "unet";  // unet (the released U-Net) | restormer
  int64_t width = 64;             // U-Net width (64 as released) or Restormer dim (48 stock)
  std::vector<int64_t> restormer_blocks = {4, 6, 6, 8};
  int64_t restormer_refinement = 4;
  bool estimator = true;          // E + F (the paper); false: the bare backbone on the image (JDRL's conference model)
  int64_t heads = 5, points = 4;  // F
  // [ours] The backbone's output conv starts at zero, so that a fresh jdrl returns its input (the U-Net then
  // corrects the blurry image under its sigmoid; Restormer adds to it anyway). Off: the released initialisation.
  bool identity_start = false;
  // [ours] The alignment losses' flow is the affine fit of a smooth Horn-Schunck field (pair_alignment_flow): the
  // dense field moved sharp edges onto blurred ones (0.42 px error on 96 px crops of ~1 px misalignments, against
  // 0.06 px for the fit) and jdrl learned nothing. Off: the dense field of the same smoothness.
  bool global_flow = true;
  // Whether L_R's gradient reaches the deblurred image (the paper: R(x^, y) ~ y guides D). false [ours, ablation]:
  // R trains on a detached x^; a reblurring module still learning pulls x^ towards whatever it can blur into y.
  bool reblur_guides = true;
  // R's width (64 as released). [ours] R is a training aid that runs at full resolution; the CPU recipe narrows it.
  int64_t reblur_width = 64;
  nlohmann::json to_json() const;
  static JdrlConfig from_json(const nlohmann::json& j);
};

class JdrlModel : public Model {
 public:
  explicit JdrlModel(const JdrlConfig& c);
  JdrlConfig cfg;
  std::string name() const override { return "jdrl"; }
  nlohmann::json config() const override { return cfg.to_json(); }
  std::string description() const override;
  Tensor deblur(const Tensor& input, const Tensor&, const Tensor&) override;
  // Stages: "warmup" (Charbonnier to the GT warped onto the blurry input), "main" (Eq. 14: L_D + 0.5 L_R + 0.5 L_P),
  // "naive" (Charbonnier to the unaligned GT: the baseline the paper argues against).
  LossTerms loss(const Batch& batch, const std::string& stage) override;
  std::vector<std::string> forward_inputs() const override { return {"im_b"}; }
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;
  int64_t size_multiple() const override { return 16; }
  int64_t inference_parameters() const;  // without R (a training aid)

  Tensor estimate(const Tensor& y);                  // B^ [B, 35, H, W] (undefined without the estimator)
  Tensor deblur_with(const Tensor& y, Tensor* map);  // x^ and, when asked, B^

 private:
  std::shared_ptr<SeedNet> estimator_;
  std::shared_ptr<DeformableFusion> fusion_;
  std::shared_ptr<SqueezeExcitation> se_;
  std::shared_ptr<VggDeblur> unet_;
  std::shared_ptr<Restormer> restormer_;
  std::shared_ptr<ReblurModule> reblur_;
};

// The released conference modules alone (registry: jdrl_reblur, jdrl_unet), for `forward` and `convert`.
class JdrlReblurModel : public Model {
 public:
  JdrlReblurModel();
  std::string name() const override { return "jdrl_reblur"; }
  nlohmann::json config() const override { return nlohmann::json::object(); }
  Tensor deblur(const Tensor&, const Tensor&, const Tensor&) override;
  std::vector<std::string> forward_inputs() const override { return {"im_s", "im_b"}; }
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;

 private:
  std::shared_ptr<ReblurModule> reblur_;  // registered under "": the released names at the top level
};

class JdrlUnetModel : public Model {
 public:
  explicit JdrlUnetModel(int64_t width = 64);
  std::string name() const override { return "jdrl_unet"; }
  nlohmann::json config() const override { return {{"width", width_}}; }
  Tensor deblur(const Tensor& input, const Tensor&, const Tensor&) override { return net_->forward(input); }
  std::vector<std::string> forward_inputs() const override { return {"im_b"}; }
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;
  int64_t size_multiple() const override { return 16; }

 private:
  int64_t width_;
  std::shared_ptr<VggDeblur> net_;
};

// Strip DataParallel's "module." prefix (released checkpoints carry it) and return the config.
nlohmann::json jdrl_unet_config_from_official(std::map<std::string, Tensor>& tensors);
nlohmann::json jdrl_reblur_config_from_official(std::map<std::string, Tensor>& tensors);

}  // namespace rf
