// Blocks the networks share, with PyTorch-style child names so that state dicts carry over by name.
#pragma once
#include <memory>

#include "layers/layers.h"

namespace rf {

// Pre-norm Transformer block over tokens x [N, dim] or [B, N, dim]:
//   x += proj(attention(qkv(ln1(x))));  x += fc2(gelu(fc1(ln2(x))))
// Children ln1, qkv, proj, ln2, fc1, fc2. window > 0: attention within consecutive windows of that many
// tokens (ops/attention.h).
class TransformerBlock : public Module {
 public:
  TransformerBlock(int64_t dim, int64_t heads, int64_t ffn_mult = 4);
  Tensor forward(const Tensor& x, int64_t window = 0);
  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<Linear> qkv, proj, fc1, fc2;
  int64_t dim, heads;
};

// What a U-Net level does besides resampling.
struct UNetBlockOptions {
  int64_t res_blocks = 2;           // ResBlocks after the resampling (children body.0, body.1, ...)
  bool bias = true;
  PadMode padding = PadMode::Zeros;
  Act act = Act::ReLU;
};

// Encoder level: a stride-2 3x3 convolution ("down") + act, then res_blocks ResBlocks ("body").
class UNetDown : public UnaryModule {
 public:
  UNetDown(int64_t in, int64_t out, UNetBlockOptions o = {});
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> down;
  std::shared_ptr<Sequential> body;
  UNetBlockOptions opt;
};

// Decoder level: a 4x4 stride-2 transposed convolution ("up") + act to `out` channels, the skip concatenated
// and a 3x3 convolution ("merge") back to `out` channels + act — or, with add_skip, the skip added and no
// merge — then res_blocks ResBlocks ("body").
class UNetUp : public Module {
 public:
  UNetUp(int64_t in, int64_t out, bool add_skip = false, UNetBlockOptions o = {});
  Tensor forward(const Tensor& x, const Tensor& skip);
  std::shared_ptr<ConvTranspose2d> up;
  std::shared_ptr<Conv2d> merge;  // null with add_skip
  std::shared_ptr<Sequential> body;
  UNetBlockOptions opt;
  bool add_skip;
};

// Squeeze-and-excitation channel attention (torchvision's names): x * sigmoid(fc2(relu(fc1(mean_hw(x))))),
// fc1/fc2 1x1 convolutions channels -> max(1, channels / reduction) -> channels. bias = false is the SENet
// reference SELayer (JDRL's draft: Linear layers fc.0/fc.2 without bias; a converter reshapes [out, in] to
// [out, in, 1, 1]).
class SqueezeExcitation : public UnaryModule {
 public:
  SqueezeExcitation(int64_t channels, int64_t reduction = 16, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> fc1, fc2;
};

}  // namespace rf
