// The deblurring backbones of jdrl (paper 004): the released JDRL U-Net (`VGG_Deblur`, DPDNet-style, 31,033,411
// parameters at width 64, the released names) and Restormer (Zamir et al., the paper's best backbone: stock
// settings dim 48, blocks 4/6/6/8 + 4 refinement, heads 1/2/4/8, expansion 2.66, no bias, LayerNorm with bias).
// Both take a width so that a CPU recipe can train a narrow copy of the same structure.
#pragma once
#include <memory>

#include "layers/layers.h"

namespace rf {

// The released U-Net: encoder.block1..5 (conv-ReLU-conv-ReLU, max-pool between, dropout 0.4 after levels 4 and 5),
// up6..up9 (nearest x2, 2x2 "same" conv padded right and bottom, no activation), block6..9 on cat(up, skip), out
// (3x3 conv) and a sigmoid. Sides must be multiples of 16.
class VggDeblur : public UnaryModule {
 public:
  VggDeblur(int64_t in_channels = 3, int64_t width = 64);
  Tensor forward(const Tensor& x) override;
  // [ours] sigmoid(logit(base) + out(...)): the U-Net predicts a correction of `base` (the blurry image) under its
  // sigmoid, so that with the out conv at zero (zero_output()) it starts as the identity.
  Tensor forward_residual(const Tensor& x, const Tensor& base);
  void zero_output();
  std::shared_ptr<Module> encoder;
  std::vector<std::shared_ptr<Sequential>> enc_, up_, dec_;
  std::shared_ptr<Sequential> out;

 private:
  Tensor trunk(const Tensor& x);  // everything before the sigmoid
};

// Restormer's Transformer block: x + MDTA(LN(x)); x + GDFN(LN(x)). Children norm1.body, attn.{temperature, qkv,
// qkv_dwconv, project_out}, norm2.body, ffn.{project_in, dwconv, project_out}.
class RestormerBlock : public UnaryModule {
 public:
  RestormerBlock(int64_t dim, int64_t heads, float expansion);
  Tensor forward(const Tensor& x) override;

 private:
  struct Norm : Module {
    explicit Norm(int64_t d) { body = register_module("body", std::make_shared<LayerNorm>(d, 1)); }
    std::shared_ptr<LayerNorm> body;
  };
  struct Attention : Module {
    Attention(int64_t dim, int64_t heads);
    Tensor forward(const Tensor& x);
    Tensor temperature;
    std::shared_ptr<Conv2d> qkv, qkv_dwconv, project_out;
    int64_t heads;
  };
  struct FeedForward : Module {
    FeedForward(int64_t dim, float expansion);
    Tensor forward(const Tensor& x);
    std::shared_ptr<Conv2d> project_in, dwconv, project_out;
  };
  std::shared_ptr<Norm> norm1_, norm2_;
  std::shared_ptr<Attention> attn_;
  std::shared_ptr<FeedForward> ffn_;
};

struct RestormerConfig {
  int64_t in_channels = 3, dim = 48;
  std::vector<int64_t> blocks = {4, 6, 6, 8};
  int64_t refinement = 4;
  std::vector<int64_t> heads = {1, 2, 4, 8};
  float expansion = 2.66f;
};

// Restormer with the stock names (patch_embed.proj, encoder_level1..3, down1_2 .. up2_1, reduce_chan_level2/3,
// decoder_level1..3, latent, refinement, output); the input residual is added to the first 3 input channels.
class Restormer : public UnaryModule {
 public:
  explicit Restormer(const RestormerConfig& c);
  Tensor forward(const Tensor& x) override;  // the residual is the first 3 input channels
  Tensor forward_residual(const Tensor& x, const Tensor& base);
  void zero_output();

 private:
  RestormerConfig cfg_;
  std::shared_ptr<Module> patch_embed_;
  std::shared_ptr<Conv2d> embed_, reduce3_, reduce2_, output_;
  std::shared_ptr<Sequential> enc1_, enc2_, enc3_, latent_, dec3_, dec2_, dec1_, refine_;
  std::shared_ptr<Module> down12_, down23_, down34_, up43_, up32_, up21_;
  std::shared_ptr<Conv2d> down12c_, down23c_, down34c_, up43c_, up32c_, up21c_;
};

Tensor pixel_unshuffle(const Tensor& x, int64_t r);
Tensor pixel_shuffle(const Tensor& x, int64_t r);

}  // namespace rf
