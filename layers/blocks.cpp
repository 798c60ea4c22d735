#include "layers/blocks.h"

#include <algorithm>

#include "ops/attention.h"

namespace rf {

TransformerBlock::TransformerBlock(int64_t dim_, int64_t heads_, int64_t ffn_mult) : dim(dim_), heads(heads_) {
  RF_CHECK(heads >= 1 && dim % heads == 0 && dim / heads <= 64, "TransformerBlock: dim ", dim, " must split into ", heads,
           " heads of at most 64");
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(dim));
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim));
  proj = register_module("proj", std::make_shared<Linear>(dim, dim));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(dim));
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, ffn_mult * dim));
  fc2 = register_module("fc2", std::make_shared<Linear>(ffn_mult * dim, dim));
}

Tensor TransformerBlock::forward(const Tensor& x_in, int64_t window) {
  RF_CHECK((x_in.dim() == 2 || x_in.dim() == 3) && x_in.size(-1) == dim, "TransformerBlock: tokens ", describe(x_in),
           " should be [N, ", dim, "] or [B, N, ", dim, "]");
  const bool batched = x_in.dim() == 3;
  Tensor x = batched ? x_in : unsqueeze(x_in, 0);
  const int64_t b = x.size(0), n = x.size(1), hd = dim / heads;
  Tensor qkv_t = permute(qkv->forward(ln1->forward(x)).reshape({b, n, 3, heads, hd}), {2, 0, 3, 1, 4});  // [3, B, heads, N, hd]
  Tensor att = attention(qkv_t[0], qkv_t[1], qkv_t[2], window);                                            // [B, heads, N, hd]
  att = permute(att, {0, 2, 1, 3}).reshape({b, n, dim});
  x = x + proj->forward(att);
  x = x + fc2->forward(gelu(fc1->forward(ln2->forward(x))));
  return batched ? x : x[0];
}

static std::shared_ptr<Sequential> res_blocks(int64_t channels, const UNetBlockOptions& o) {
  auto s = std::make_shared<Sequential>();
  for (int64_t i = 0; i < o.res_blocks; ++i) s->push_back(std::make_shared<ResBlock>(channels, 3, o.act, o.bias, o.padding));
  return s;
}

UNetDown::UNetDown(int64_t in, int64_t out, UNetBlockOptions o) : opt(o) {
  down = register_module("down", std::make_shared<Conv2d>(in, out, 3, ConvOptions::make(2, 1), o.bias, o.padding));
  body = register_module("body", res_blocks(out, o));
}

Tensor UNetDown::forward(const Tensor& x) { return body->forward(activate(down->forward(x), opt.act)); }

UNetUp::UNetUp(int64_t in, int64_t out, bool add, UNetBlockOptions o) : opt(o), add_skip(add) {
  up = register_module("up", std::make_shared<ConvTranspose2d>(in, out, 4, ConvOptions::make(2, 1), o.bias));
  if (!add_skip) merge = register_module("merge", std::make_shared<Conv2d>(2 * out, out, 3, ConvOptions::make(1, 1), o.bias, o.padding));
  body = register_module("body", res_blocks(out, o));
}

Tensor UNetUp::forward(const Tensor& x, const Tensor& skip) {
  Tensor u = activate(up->forward(x), opt.act);
  RF_CHECK(u.shape() == skip.shape(), "UNetUp: the upsampled ", describe(u), " does not match the skip ", describe(skip),
           " (sizes must be even at every level)");
  Tensor y = add_skip ? u + skip : activate(merge->forward(concat({u, skip}, 1)), opt.act);
  return body->forward(y);
}

SqueezeExcitation::SqueezeExcitation(int64_t channels, int64_t reduction, bool bias) {
  const int64_t squeezed = std::max<int64_t>(1, channels / reduction);
  fc1 = register_module("fc1", std::make_shared<Conv2d>(channels, squeezed, 1, ConvOptions{}, bias));
  fc2 = register_module("fc2", std::make_shared<Conv2d>(squeezed, channels, 1, ConvOptions{}, bias));
}

Tensor SqueezeExcitation::forward(const Tensor& x) {
  Tensor s = mean(x, {2, 3}, true);  // [B, C, 1, 1]
  return x * sigmoid(fc2->forward(relu(fc1->forward(s))));
}

}  // namespace rf
