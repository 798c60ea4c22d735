// sft — "Single-image Defocus Deblurring by Integration of Defocus Map Prediction Tracing the Inverse Problem
// Computation" (Ye, Suganuma, Okatani; paper 002), as its Fig. 1 draws it:
//
//   blurry image --map net (DID-ANet's branch)--> defocus map --condition net (3 convs)--> conditions
//   blurry image --conv--> features --SFT residual blocks (conditioned)--> SFT --conv--> + long skip --conv--> + image
//
// SFT-Dec (Sec. 3.3): F' = gamma (.) F + beta with gamma = gamma_channel [C x 1 x 1] (SE-like, from the pooled
// conditions) x gamma_spatial [1 x H x W] (from the conditions at each pixel) and beta full [C x H x W]. The
// generators' last layers start at gamma = 1, beta = 0, so a fresh network passes its features through.
// Ablations: "sft" (gamma full C x H x W) and "concat" (no SFT: the map concatenated to the image, DID-ANet).
//
// Map units: one map unit is map_unit_px pixels of CoC radius (synthetic sets: 1% of the image's longer side,
// e.g. 2.56 px at 256 px; DED's maps are already normalised: 1). There is no official code for this paper; the
// map net keeps DID-ANet's released names (conv01a, convRes01a..04a, conv02a, conv03a).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "layers/layers.h"
#include "models/model.h"

namespace rf {

struct SftConfig {
  int64_t map_width = 64, map_blocks = 4;  // DID-ANet's defocus branch
  int64_t cond_width = 32;                 // the condition net (3 convolutions)
  int64_t width = 128, blocks = 16;        // the deblurring net (DID-ANet's 16 x 128)
  std::string modulation = "sft_dec";      // sft_dec | sft | concat
  float map_unit_px = 1.f;                 // CoC radius (px) per map unit of the ground truth
  nlohmann::json to_json() const;
  static SftConfig from_json(const nlohmann::json& j);
};

// The SFT layer: gamma and beta generated from the conditions by 1x1 convolutions (LeakyReLU 0.1 between).
class SftLayer : public Module {
 public:
  SftLayer(int64_t cond, int64_t channels, bool decomposed);
  Tensor forward(const Tensor& f, const Tensor& cond);
  std::shared_ptr<Sequential> gamma, gamma_c, gamma_s, beta;  // gamma (full) or gamma_c + gamma_s
  bool decomposed;
};

// x + scale * conv1(relu(conv0(sft0(x)))) with sft1 between relu and conv1 (SFTGAN's ResBlock_SFT), or a plain
// residual block when there is no modulation.
class SftResBlock : public Module {
 public:
  SftResBlock(int64_t cond, int64_t channels, const std::string& modulation, float scale);
  Tensor forward(const Tensor& x, const Tensor& cond);
  std::shared_ptr<SftLayer> sft0, sft1;
  std::shared_ptr<Conv2d> conv0, conv1;
  float scale;
};

class SftModel : public Model {
 public:
  explicit SftModel(const SftConfig& c);
  SftConfig cfg;

  std::string name() const override { return "sft"; }
  nlohmann::json config() const override { return cfg.to_json(); }
  std::string description() const override;
  ModelInputs training_inputs() const override { return {false, true}; }  // ground-truth defocus maps
  Tensor deblur(const Tensor& input, const Tensor&, const Tensor&) override;
  // Stages (Eq. 7-8): "gt_map" (the GT map conditions the deblurring; 0.2 L_dme + 0.9 L_df), "pred_map" (the
  // predicted one; same loss), "finetune" (0.9 L_df + 0.1 L_wd), "end_to_end" (the predicted map, 0.2 L_dme +
  // 0.9 L_df from the start: the paper's single-stage ablation).
  LossTerms loss(const Batch& batch, const std::string& stage) override;
  std::vector<std::string> forward_inputs() const override { return {"x"}; }
  // out0: the deblurred image; out1: the predicted defocus map (in map units).
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;
  Tensor predict_defocus(const Tensor& input) override { return predict_map(input) * cfg.map_unit_px; }

  Tensor predict_map(const Tensor& x);                                   // [B, 1, H, W] in map units
  Tensor deblur_with_map(const Tensor& x, const Tensor& map);           // the deblurring net given a map

 private:
  // map net
  std::shared_ptr<Conv2d> conv01a, conv02a, conv03a;
  std::vector<std::shared_ptr<Sequential>> map_blocks_;
  // condition net, deblurring net
  std::shared_ptr<Sequential> cond_;
  std::shared_ptr<Conv2d> conv01b, conv02b, conv03b;
  std::vector<std::shared_ptr<SftResBlock>> blocks_;
  std::shared_ptr<SftLayer> sft_out_;
};

}  // namespace rf
