#include "models/gs.h"

#include "models/config.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "engine/safetensors.h"
#include "ops/attention.h"
#include "ops/ops.h"
#include "ops/separable.h"
#include "engine/progress.h"
#include "layers/losses.h"
#include "data/metrics.h"
#include "layers/optim.h"

namespace rf {

constexpr float kMinScale = 0.1f;  // px; the deblurrer's lower bound (Eq. 7)

namespace {
// Centres of the cell grid covering an h x w image, [gh * gw, 2] in pixels (row-major cells).
Tensor cell_centres(int64_t h, int64_t w, int64_t cell, Device d) {
  const int64_t gh = (h + cell - 1) / cell, gw = (w + cell - 1) / cell;
  std::vector<float> m(2 * gh * gw);
  for (int64_t j = 0; j < gh; ++j)
    for (int64_t i = 0; i < gw; ++i) {
      m[2 * (j * gw + i)] = std::fmin(((float)i + 0.5f) * (float)cell, (float)w - 0.5f);
      m[2 * (j * gw + i) + 1] = std::fmin(((float)j + 0.5f) * (float)cell, (float)h - 0.5f);
    }
  return from_vector(m, {gh * gw, 2}, d);
}
}  // namespace

Blobs FitParams::blobs() const {
  return Blobs{means, theta, exp(log_scales) + kMinScale, colors, sigmoid(opacity_logit)};
}

NamedTensors FitParams::named() const {
  NamedTensors n = {{"means", means}, {"theta", theta}, {"log_scales", log_scales}, {"colors", colors},
                    {"opacity_logit", opacity_logit}};
  if (d1.defined()) n.emplace_back("d1", d1);
  if (log_k.defined()) n.emplace_back("log_k", log_k);
  return n;
}

FitParams analytic_init(const Tensor& image, int64_t cell) {
  NoGrad ng;
  RF_CHECK(image.dim() == 3 && image.size(0) == 3, "analytic_init: expected an image [3, H, W], got ", describe(image));
  RF_CHECK(cell >= 1, "analytic_init: cell must be at least 1");
  const int64_t h = image.size(1), w = image.size(2), gh = (h + cell - 1) / cell, gw = (w + cell - 1) / cell;
  const Device d = image.device();
  Tensor padded = pad2d(image, 0, gw * cell - w, 0, gh * cell - h, PadMode::Replicate);
  Tensor cell_mean = avg_pool2d(unsqueeze(padded, 0), cell, cell)[0];  // [3, gh, gw]
  const float s = 0.5f * (float)cell, o = 0.8f;
  const float coverage = 2.f * 3.14159265f * s * s / (float)(cell * cell);  // sum of the grid's Gaussians at a pixel
  FitParams p;
  p.colors = (permute(cell_mean, {1, 2, 0}).reshape({gh * gw, 3}) / (o * coverage)).detach();
  const int64_t n = gh * gw;
  p.means = cell_centres(h, w, cell, d);
  p.theta = zeros({n}, d);
  p.log_scales = full({n, 2}, std::log(s - kMinScale), d);
  p.opacity_logit = full({n}, std::log(o / (1.f - o)), d);
  return p;
}

Tensor normalise_depth(const Tensor& depth) {
  NoGrad ng;
  float mx = max(depth.flatten(), 0).item();
  RF_CHECK(mx > 0.f, "depth map is all zeros or negative: cannot normalise it");
  return depth / mx;
}

// A [C, H, W] (or [1, C, H, W]) map bilinearly sampled at the blob centres moved by `offset` px -> [C, N];
// differentiable in the map, not in the centres.
static Tensor sample_map(const Tensor& map, const Tensor& means, float offset) {
  const int64_t c = map.size(-3), h = map.size(-2), w = map.size(-1), n = means.size(0);
  // Pixel coordinates [0, W] map onto grid_sample's [-1, 1] (align_corners = false).
  Tensor scale = from_vector({2.f / (float)w, 2.f / (float)h}, {1, 2}, means.device());
  Tensor at = offset != 0.f ? means.detach() + offset : means.detach();
  Tensor grid = (at * scale - 1.f).reshape({1, n, 1, 2});
  return grid_sample(map.reshape({1, c, h, w}), grid, false, GridPadding::Border).reshape({c, n});
}

// The same without gradient, at the centres themselves.
static Tensor sample_at_centres(const Tensor& map, const Tensor& means) {
  NoGrad ng;
  return sample_map(map, means, 0.f);
}

Tensor depth_at_blobs(const Tensor& depth_norm, const Tensor& means) {
  return sample_at_centres(depth_norm.reshape({1, depth_norm.size(-2), depth_norm.size(-1)}), means).reshape({means.size(0)});
}

Tensor depth_regulariser(const Tensor& d2, const Tensor& scales, const Tensor& d1, const Tensor& k, float side) {
  Tensor s = scales / side;
  Tensor s1s2 = slice(s, 1, 0, 1).reshape({-1}) * slice(s, 1, 1, 2).reshape({-1});
  Tensor d2sq = d2 * d2;
  Tensor rhs = s1s2 * d2sq / (k * k) + 2.f * d1 * d2 - d1 * d1;
  return mean(square(d2sq - rhs));
}

FitResult fit_blobs(const Tensor& image, const Tensor& depth, FitParams p, const FitOptions& o) {
  EnableGrad grad_on;  // fitting is an optimisation, also at test time under NoGrad
  const int64_t h = image.size(1), w = image.size(2);
  const Device dev = image.device();
  const float side = (float)std::max(h, w);
  Tensor d2;
  if (depth.defined()) {
    Tensor dn = normalise_depth(depth);
    d2 = depth_at_blobs(dn, p.means);
    if (!p.d1.defined()) p.d1 = mean(dn).reshape({1}).detach();
    if (!p.log_k.defined()) p.log_k = full({1}, std::log(0.05f), dev);
  }
  for (auto& [name, t] : p.named()) {
    Tensor leaf = t;
    leaf.set_requires_grad(true);
  }
  NamedTensors named = p.named();
  Adam opt(named, AdamOptions{o.lr});
  const float scale[] = {o.lr_means, o.lr_theta, o.lr_scales, o.lr_colors, o.lr_opacity, o.lr_image_level, o.lr_image_level};
  for (size_t i = 0; i < named.size(); ++i) opt.set_lr_scale(i, scale[i]);
  double t0 = now_seconds();
  FitResult res;
  Progress progress("gs_fit", o.iters);
  for (int it = 0; it < o.iters; ++it) {
    opt.zero_grad();
    Blobs b = p.blobs();
    Tensor r = rasterize(b, h, w);
    Tensor loss = mse_loss(r, image) + o.lambda_ssim * (1.f - ssim_index(r, image));
    if (d2.defined() && o.lambda_reg > 0)
      loss = loss + o.lambda_reg * depth_regulariser(d2, b.scales, p.d1, exp(p.log_k), side);
    loss.backward();
    opt.step();
    if (o.verbose && (it % 50 == 0 || it == o.iters - 1)) progress.update(it + 1, cat("loss ", loss.item()));
    if (it == o.iters - 1) res.final_loss = loss.item();
  }
  for (auto& [name, t] : p.named()) {  // hand back plain tensors, cut from the fit's graph
    Tensor leaf = t;
    leaf.set_requires_grad(false);
    leaf.zero_grad();
  }
  res.seconds = now_seconds() - t0;
  {
    NoGrad ng;
    res.psnr = psnr(clamp(rasterize(p.blobs(), h, w), 0.f, 1.f).cpu(), image.cpu());
  }
  res.params = p;
  return res;
}

// --- configuration -------------------------------------------------------------------------------------
nlohmann::json GsConfig::to_json() const {
  return {{"cell", cell},         {"use_depth", use_depth},           {"init_width", init_width},
          {"dim", dim},           {"heads", heads},                   {"blocks", blocks},
          {"ffn_mult", ffn_mult}, {"window", window},                 {"max_full_tokens", max_full_tokens},
          {"window_beyond", window_beyond}, {"fit_iters", fit_iters}, {"residual", residual},
          {"color_change", color_change}, {"context", context}, {"context_scales", context_scales},
          {"context_source", context_source}, {"context_patch", context_patch}, {"defocus", defocus}, {"defocus_width", defocus_width},
          {"photo_encoder", photo_encoder}, {"shrink", shrink}, {"keep_light", keep_light},
          {"exposure_floor", exposure_floor}};
}

std::vector<float> GsConfig::half_octave_scales(int64_t n) {
  std::vector<float> s;
  for (int64_t k = 0; k < n; ++k) s.push_back(std::pow(2.f, 0.5f * (float)k - 0.5f));
  return s;
}

GsConfig GsConfig::from_json(const nlohmann::json& j) {
  ConfigReader r(j, "gs config");
  GsConfig c;
  r.get("cell", c.cell, 2, 2);  // the initializer places one blob per 2x2 cell
  r.get("use_depth", c.use_depth);
  r.get("init_width", c.init_width, 4, 512);
  r.get("dim", c.dim, 8, 1024);
  r.get("heads", c.heads, 1, 64);
  r.get("blocks", c.blocks, 0, 64);
  r.get("ffn_mult", c.ffn_mult, 1, 16);
  r.get("window", c.window, 0, 1 << 20);
  r.get("max_full_tokens", c.max_full_tokens, 1, int64_t(1) << 26);
  r.get("window_beyond", c.window_beyond, 16, 1 << 20);
  r.get("fit_iters", c.fit_iters, 1, 10'000'000);
  r.get("residual", c.residual);
  r.get("color_change", c.color_change);
  r.get("context", c.context);
  r.get("context_scales", c.context_scales, 1, 16, 0.25, 32);  // configs before session 15: 1, 2, 4
  r.get("context_source", c.context_source, {"render", "image", "both"});  // before session 16: render
  r.get("context_patch", c.context_patch, 0, 16);  // before session 17: none
  r.get("defocus", c.defocus);
  r.get("defocus_width", c.defocus_width, 4, 512);
  r.get("photo_encoder", c.photo_encoder, 0, 512);  // before session 18: none
  r.get("shrink", c.shrink, {"relu", "softplus"});     // before session 18: relu
  r.get("keep_light", c.keep_light);
  r.get("exposure_floor", c.exposure_floor, 0.f, 1.f);
  r.finish();
  RF_CHECK(c.dim % c.heads == 0 && c.dim / c.heads <= 64, "gs config: dim ", c.dim, " must split into ", c.heads,
           " heads of at most 64");
  return c;
}

// --- initializer ------------------------------------------------------------------------------------------
namespace {
std::shared_ptr<Sequential> conv_relu_stack(std::vector<std::array<int64_t, 3>> layers) {  // {in, out, stride}
  auto s = std::make_shared<Sequential>();
  for (auto [in, out, stride] : layers) {
    s->push_back(std::make_shared<Conv2d>(in, out, 3, ConvOptions::make(stride, 1)));
    s->push_back(std::make_shared<Activation>(Act::ReLU));
  }
  return s;
}

}  // namespace

GsInitializer::GsInitializer(const GsConfig& c) : cfg_(c) {
  RF_CHECK(c.cell == 2, "the gs initializer predicts one blob per 2x2 cell (config cell = ", c.cell, ")");
  const int64_t w = c.init_width, in = c.use_depth ? 4 : 3;
  enc1_ = register_module("enc1", conv_relu_stack({{in, w, 1}, {w, w, 1}}));             // H
  down1_ = register_module("down1", conv_relu_stack({{w, 2 * w, 2}, {2 * w, 2 * w, 1}}));  // H/2
  down2_ = register_module("down2", conv_relu_stack({{2 * w, 4 * w, 2}, {4 * w, 4 * w, 1}}));  // H/4
  up_ = register_module("up", conv_relu_stack({{4 * w, 2 * w, 1}}));                     // after x2 upsampling
  merge_ = register_module("merge", conv_relu_stack({{4 * w, 2 * w, 1}, {2 * w, 2 * w, 1}}));  // [up, down1]
  head_ = register_module("head", std::make_shared<Conv2d>(2 * w, 9, 1));
  // Start from small, faint blobs at the cell centres: offset 0, s = 0.5 px, theta 0, grey, opacity 0.2.
  head_->weight.fill_(0.f);
  head_->bias.copy_(from_vector({0, 0, std::log(0.4f), std::log(0.4f), 0, 0, 0, 0, std::log(0.2f / 0.8f)}, {9}));
}

FitParams GsInitializer::forward(const Tensor& image, const Tensor& depth_norm) {
  const int64_t h = image.size(1), w = image.size(2), gh = (h + 1) / 2, gw = (w + 1) / 2;
  Tensor x = image;
  if (cfg_.use_depth) {
    RF_CHECK(depth_norm.defined(), "the gs initializer was configured with depth, but none was given");
    x = concat({image, depth_norm}, 0);
  }
  const int64_t ph = (4 - h % 4) % 4, pw = (4 - w % 4) % 4;  // two stride-2 levels
  x = unsqueeze(pad2d(x, 0, pw, 0, ph, PadMode::Replicate), 0);
  Tensor e1 = enc1_->forward(x), d1 = down1_->forward(e1), d2 = down2_->forward(d1);
  Tensor u = up_->forward(upsample_nearest(d2, d1.size(2), d1.size(3)));
  Tensor raw = head_->forward(merge_->forward(concat({u, d1}, 1)));
  raw = slice(slice(raw[0], 1, 0, gh), 2, 0, gw);                 // [9, gh, gw]
  Tensor t = permute(raw, {1, 2, 0}).reshape({gh * gw, 9});       // one row per blob
  auto col = [&](int64_t a, int64_t b) { return slice(t, 1, a, b); };
  FitParams p;
  p.means = cell_centres(h, w, 2, image.device()) + tanh(col(0, 2));  // within one pixel of the centre
  p.log_scales = col(2, 4);
  p.theta = col(4, 5).reshape({gh * gw});
  p.colors = sigmoid(col(5, 8));
  p.opacity_logit = col(8, 9).reshape({gh * gw});
  return p;
}

Tensor GsInitializer::deblur(const Tensor&, const Tensor&, const Tensor&) {
  throw Error("gs_initializer is a part of gs: it places blobs and does not deblur by itself (use --model gs)");
}

std::vector<std::string> GsInitializer::forward_inputs() const {
  return cfg_.use_depth ? std::vector<std::string>{"x", "depth"} : std::vector<std::string>{"x"};
}

NamedTensors GsInitializer::forward_named(const std::map<std::string, Tensor>& in) {
  const Tensor& x = in.at("x");
  RF_CHECK(x.dim() == 4 && x.size(0) == 1 && x.size(1) == 3, "gs_initializer: x must be [1, 3, H, W], got ", describe(x));
  FitParams p = forward(x[0], cfg_.use_depth ? in.at("depth")[0] : Tensor());
  return {{"out0", p.means}, {"out1", p.theta}, {"out2", p.log_scales}, {"out3", p.colors}, {"out4", p.opacity_logit}};
}

// --- defocus estimator ------------------------------------------------------------------------------------
Tensor GsImageMap::deblur(const Tensor&, const Tensor&, const Tensor&) {
  throw Error(name() + " is a part of gs: it maps an image to what gs needs and does not deblur by itself (use --model gs)");
}

NamedTensors GsImageMap::forward_named(const std::map<std::string, Tensor>& in) { return {{"out0", forward(in.at("x"))}}; }

GsDefocusEstimator::GsDefocusEstimator(const GsConfig& c) : GsImageMap(c) {
  const int64_t w = c.defocus_width;
  enc_ = register_module("enc", conv_relu_stack({{3, w, 1}, {w, w, 1}}));                        // H
  down1_ = register_module("down1", conv_relu_stack({{w, 2 * w, 2}, {2 * w, 2 * w, 1}}));        // H/2
  down2_ = register_module("down2", conv_relu_stack({{2 * w, 4 * w, 2}, {4 * w, 4 * w, 1}}));    // H/4
  down3_ = register_module("down3", conv_relu_stack({{4 * w, 4 * w, 2}, {4 * w, 4 * w, 1}}));    // H/8
  up_ = register_module("up", conv_relu_stack({{4 * w, 4 * w, 1}}));                             // after x2
  merge_ = register_module("merge", conv_relu_stack({{8 * w, 4 * w, 1}}));                       // [up, down2]
  head_ = register_module("head", std::make_shared<Conv2d>(4 * w, 1, 1));
}

Tensor GsDefocusEstimator::forward(const Tensor& images) {
  RF_CHECK(images.dim() == 4 && images.size(1) == 3, "gs defocus estimator: images must be [B, 3, H, W], got ", describe(images));
  const int64_t h = images.size(2), w = images.size(3), ph = (8 - h % 8) % 8, pw = (8 - w % 8) % 8;
  Tensor x = pad2d(images, 0, pw, 0, ph, PadMode::Replicate);
  Tensor d2 = down2_->forward(down1_->forward(enc_->forward(x))), d3 = down3_->forward(d2);
  Tensor u = up_->forward(upsample_nearest(d3, d2.size(2), d2.size(3)));
  Tensor coarse = softplus(head_->forward(merge_->forward(concat({u, d2}, 1))));  // [B, 1, (H + ph) / 4, ...]
  Tensor full = resize_bilinear(coarse, h + ph, w + pw);
  return slice(slice(full, 2, 0, h), 3, 0, w);
}

// --- photo encoder ---------------------------------------------------------------------------------------
GsPhotoEncoder::GsPhotoEncoder(const GsConfig& c) : GsImageMap(c) {
  const int64_t w = c.photo_encoder;
  RF_CHECK(w > 0, "gs photo encoder: the config has no photo_encoder width");
  conv0_ = register_module("conv0", std::make_shared<Conv2d>(3, w, 3, ConvOptions::make(1, 1, 1)));
  conv1_ = register_module("conv1", std::make_shared<Conv2d>(w, w, 3, ConvOptions::make(1, 2, 2)));
  conv2_ = register_module("conv2", std::make_shared<Conv2d>(w, w, 3, ConvOptions::make(1, 4, 4)));
}

Tensor GsPhotoEncoder::forward(const Tensor& images) {
  RF_CHECK(images.dim() == 4 && images.size(1) == 3, "gs photo encoder: images must be [B, 3, H, W], got ", describe(images));
  return conv2_->forward(relu(conv1_->forward(relu(conv0_->forward(images)))));
}

// --- blob deblurrer -------------------------------------------------------------------------------------------
BlobDeblurrer::BlobDeblurrer(const GsConfig& c) : cfg_(c) {
  embed_ = register_module("embed", std::make_shared<Linear>(c.token_features(), c.dim));
  for (int64_t i = 0; i < c.blocks; ++i)
    blocks_.push_back(register_module("blocks." + std::to_string(i), std::make_shared<TransformerBlock>(c.dim, c.heads, c.ffn_mult)));
  ln_out_ = register_module("ln_out", std::make_shared<LayerNorm>(c.dim));
  RF_CHECK(c.shrink == "relu" || c.shrink == "softplus", "gs config: shrink must be relu or softplus, got '", c.shrink, "'");
  head_ = register_module("head", std::make_shared<Linear>(c.dim, c.head_outputs()));
  head_->weight.fill_(0.f);
  std::vector<float> bias(c.head_outputs(), 0.f);
  // A shrink of 1e-3 px at the start, so that ReLU(ds) has a gradient (softplus(-6.907) = 1e-3 too).
  bias[1] = bias[2] = c.shrink == "softplus" ? -6.907f : 1e-3f;
  head_->bias.copy_(from_vector(bias, {c.head_outputs()}));
}

// Morton (Z-order) index of each blob centre: neighbours in the order are neighbours in the image.
static std::vector<int64_t> morton_order(const Tensor& means, int64_t h, int64_t w) {
  auto m = means.to_vector();
  const int64_t n = means.size(0);
  std::vector<std::pair<uint64_t, int64_t>> keys(n);
  const float side = (float)std::max(h, w);
  auto spread = [](uint32_t v) {
    uint64_t x = v;
    x = (x | (x << 16)) & 0x0000FFFF0000FFFFull;
    x = (x | (x << 8)) & 0x00FF00FF00FF00FFull;
    x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0Full;
    x = (x | (x << 2)) & 0x3333333333333333ull;
    x = (x | (x << 1)) & 0x5555555555555555ull;
    return x;
  };
  for (int64_t i = 0; i < n; ++i) {
    // One scale for both axes, so that a window covers a square patch of a non-square image too.
    uint32_t qx = (uint32_t)(std::fmin(std::fmax(m[2 * i] / side, 0.f), 1.f) * 65535.f);
    uint32_t qy = (uint32_t)(std::fmin(std::fmax(m[2 * i + 1] / side, 0.f), 1.f) * 65535.f);
    keys[i] = {spread(qx) | (spread(qy) << 1), i};
  }
  std::sort(keys.begin(), keys.end());
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = keys[i].second;
  return order;
}

Blobs BlobDeblurrer::forward(const Blobs& b, const Tensor& d2, const Tensor& d1, const Tensor& log_k, int64_t h,
                             int64_t w, const Tensor& extra) {
  const int64_t n = b.size();
  const Device dev = b.means.device();
  // Token features (31, + 9 with cfg.context, + 1 with cfg.defocus): a Fourier encoding of the position in pixels (periods 4 to 64 px: the same
  // features for a blob in a training crop and in a whole test image, and fine enough to tell neighbours
  // apart), orientation (mod pi), log-scales, colour, opacity, depth at the centre, image-level d1 and
  // log K (zeros without depth). The image size itself is deliberately not a feature.
  std::vector<Tensor> f;
  for (int k = 0; k < 5; ++k) {
    Tensor a = b.means * (2.f * 3.14159265f / (float)(4 << k));
    f.push_back(sin(a));
    f.push_back(cos(a));
  }
  Tensor th = b.theta.reshape({n, 1});
  f.push_back(sin(th * 2.f));
  f.push_back(cos(th * 2.f));
  f.push_back(log(b.scales));
  f.push_back(b.colors);
  f.push_back(b.opacity.reshape({n, 1}));
  Tensor zero = zeros({n, 1}, dev);
  f.push_back(d2.defined() ? d2.reshape({n, 1}) : zero);
  f.push_back(d1.defined() ? expand(d1.reshape({1, 1}), {n, 1}) : zero);
  f.push_back(log_k.defined() ? expand(log_k.reshape({1, 1}), {n, 1}) : zero);
  if (cfg_.extra_features() > 0) {
    RF_CHECK(!extra.defined() || (extra.dim() == 2 && extra.size(0) == n && extra.size(1) == cfg_.extra_features()),
             "blob deblurrer: per-blob features must be [", n, ", ", cfg_.extra_features(), "], got ", describe(extra));
    RF_CHECK(extra.defined() || (!cfg_.defocus && cfg_.context_source == "render" && cfg_.context_patch == 0 &&
                                 cfg_.photo_encoder == 0),
             "blob deblurrer: the ",
             cfg_.defocus ? "defocus feature" : cfg_.photo_encoder > 0 ? "photo encoder's features" : "local contrast or patch of the image",
             " needs the image (GsModel::blob_features, GsModel::with_encoder_features)");
    f.push_back(extra.defined() ? extra : blob_context(b, h, w, cfg_.context_scales));
  }
  Tensor tokens = concat(f, 1);

  std::vector<int64_t> order = morton_order(b.means, h, w), inverse(n);
  for (int64_t i = 0; i < n; ++i) inverse[order[i]] = i;
  const int64_t window = cfg_.window_for(n);
  Tensor x = embed_->forward(gather_rows(tokens, order));  // [N, dim], blobs in Z-order
  for (auto& block : blocks_) x = block->forward(x, window);
  Tensor out = gather_rows(head_->forward(ln_out_->forward(x)), inverse);  // [N, 4 or 7], original order
  // Eq. 5-8 (+ the colour change).
  Tensor dphi = clamp(slice(out, 1, 0, 1).reshape({n}), 0.f, 3.14159265f);
  Tensor ds = cfg_.shrink == "softplus" ? softplus(slice(out, 1, 1, 3)) : relu(slice(out, 1, 1, 3));
  Tensor dop = slice(out, 1, 3, 4).reshape({n});
  Tensor colors = cfg_.color_change ? b.colors + slice(out, 1, 4, 7) : b.colors;
  Tensor scales = clamp(b.scales - ds, kMinScale, 1e30f);
  if (cfg_.keep_light) {
    Tensor area = slice(b.scales, 1, 0, 1) * slice(b.scales, 1, 1, 2);  // [N, 1]
    colors = colors * (area / (slice(scales, 1, 0, 1) * slice(scales, 1, 1, 2)));
  }
  return Blobs{b.means, b.theta + dphi, scales, colors, clamp(b.opacity + dop, 0.f, 1.f)};
}

Tensor BlobDeblurrer::deblur(const Tensor&, const Tensor&, const Tensor&) {
  throw Error("gs_deblurrer is a part of gs: it adjusts fitted blobs and does not take an image (use --model gs)");
}

std::vector<std::string> BlobDeblurrer::forward_inputs() const {
  std::vector<std::string> in = {"means", "theta", "scales", "colors", "opacity", "image_size"};
  if (cfg_.use_depth) in.insert(in.end(), {"d2", "d1", "log_k"});
  if (cfg_.extra_features() > 0) in.push_back("extra");
  return in;
}

NamedTensors BlobDeblurrer::forward_named(const std::map<std::string, Tensor>& in) {
  auto get = [&](const char* k) { return in.count(k) ? in.at(k) : Tensor(); };
  Blobs b{in.at("means"), in.at("theta"), in.at("scales"), in.at("colors"), in.at("opacity")};
  const int64_t n = b.size();
  RF_CHECK(b.means.shape() == Shape({n, 2}) && b.theta.shape() == Shape({n}) && b.scales.shape() == Shape({n, 2}) &&
               b.colors.shape() == Shape({n, 3}) && b.opacity.shape() == Shape({n}),
           "gs_deblurrer: blobs must be means [N, 2], theta [N], scales [N, 2], colors [N, 3], opacity [N]; got ",
           describe(b.means), ", ", describe(b.theta), ", ", describe(b.scales), ", ", describe(b.colors), ", ",
           describe(b.opacity));
  const Tensor& size = in.at("image_size");
  RF_CHECK(size.numel() == 2, "gs_deblurrer: image_size must hold (H, W), got ", describe(size));
  auto hw = size.to_vector();
  RF_CHECK(hw[0] >= 1 && hw[1] >= 1, "gs_deblurrer: image_size must be positive, got ", hw[0], " x ", hw[1]);
  Blobs out = forward(b, get("d2"), get("d1"), get("log_k"), (int64_t)hw[0], (int64_t)hw[1], get("extra"));
  return {{"out0", out.means}, {"out1", out.theta}, {"out2", out.scales}, {"out3", out.colors}, {"out4", out.opacity}};
}

Tensor local_contrast(const Tensor& image, const Tensor& means, const std::vector<float>& sigmas) {
  NoGrad ng;
  RF_CHECK(image.dim() == 3 && image.size(0) == 3, "local_contrast: image must be [3, H, W], got ", describe(image));
  Tensor img = unsqueeze(image, 0);  // [1, 3, H, W]
  Tensor centre = sample_at_centres(img, means);
  std::vector<Tensor> f;
  for (float sigma : sigmas) {
    const int radius = (int)std::ceil(3.f * sigma);
    std::vector<float> taps = gaussian_taps(sigma, radius);
    Tensor blurred = separable_filter(pad2d(img, radius, radius, radius, radius, PadMode::Replicate), taps, taps);
    f.push_back((centre - sample_at_centres(blurred, means)) * 4.f);
  }
  return permute(concat(f, 0), {1, 0});  // [N, 3 x sigmas]
}

Tensor blob_context(const Blobs& b, int64_t h, int64_t w, const std::vector<float>& sigmas) {
  NoGrad ng;  // the render is a constant of the blobs
  return local_contrast(rasterize(b, h, w), b.means, sigmas);
}

GsModel::GsModel(const GsConfig& c) : cfg(c) {
  initializer = register_module("initializer", std::make_shared<GsInitializer>(c));
  deblurrer = register_module("deblurrer", std::make_shared<BlobDeblurrer>(c));
  if (c.defocus) estimator = register_module("estimator", std::make_shared<GsDefocusEstimator>(c));
  if (c.photo_encoder > 0) encoder = register_module("encoder", std::make_shared<GsPhotoEncoder>(c));
}

Tensor GsModel::pad_for_encoder(const Tensor& image, int64_t pad) {
  RF_CHECK(image.dim() == 3, "gs photo encoder: the image must be [3, H, W], got ", describe(image));
  return pad2d(unsqueeze(image, 0), pad, pad, pad, pad, PadMode::Replicate)[0];
}

Tensor GsModel::with_encoder_features(const Tensor& fixed, const Tensor& photo, const Tensor& means, int64_t pad) {
  if (!encoder) return fixed;
  RF_CHECK(photo.dim() == 3 && photo.size(0) == 3 && photo.size(1) > 2 * pad && photo.size(2) > 2 * pad,
           "gs photo encoder: the photo must be [3, H + ", 2 * pad, ", W + ", 2 * pad, "] (padded by ", pad, " px), got ",
           describe(photo));
  Tensor features = encoder->forward(unsqueeze(photo, 0));                             // [1, C, H + 2 pad, ...]
  Tensor learned = permute(sample_map(features, means, (float)pad), {1, 0});          // [N, C], with gradient
  return fixed.defined() ? concat({fixed, learned}, 1) : learned;
}

Tensor GsModel::blob_features(const Blobs& b, const Tensor& image) {
  NoGrad ng;
  std::vector<Tensor> f;
  if (cfg.context && cfg.context_source != "render") f.push_back(local_contrast(image, b.means, cfg.context_scales));
  if (cfg.context && cfg.context_source != "image")
    f.push_back(blob_context(b, image.size(1), image.size(2), cfg.context_scales));
  if (cfg.context_patch > 0) f.push_back(image_patches(image, b.means, cfg.context_patch));
  if (cfg.defocus) {
    Tensor coc = estimator->forward(unsqueeze(image, 0));  // [1, 1, H, W]
    f.push_back(log(sample_at_centres(coc, b.means) + 1.f).reshape({b.size(), 1}));
  }
  if (f.empty()) return Tensor();
  return f.size() == 1 ? f[0] : concat(f, 1);
}

std::string GsModel::description() const {
  return cat("gs (", cfg.use_depth ? "with depth maps" : "w/o depth", cfg.defocus ? ", defocus from its own estimator" : "",
             cfg.photo_encoder > 0 ? cat(", a ", cfg.photo_encoder, "-channel photo encoder") : std::string(),
             cfg.shrink == "softplus" ? ", softplus shrink" : "", cfg.keep_light ? " keeping the light" : "", ", ",
             cfg.fit_iters, " fitting iterations)");
}

Tensor GsModel::deblur(const Tensor& input, const Tensor& depth, const Tensor& defocus) {
  std::vector<Tensor> out;
  for (int64_t i = 0; i < input.size(0); ++i) {
    GsResult r = gs_deblur(*this, input[i], cfg.use_depth ? depth[i] : Tensor(), cfg.fit_iters);
    double ds1, ds2;
    scale_change(r.fitted.blobs(), r.deblurred, &ds1, &ds2);
    images_++;
    sum_ds1_ += ds1;
    sum_ds2_ += ds2;
    sum_fit_psnr_ += r.fit_psnr;
    sum_fit_seconds_ += r.fit_seconds;
    brightened_ += r.exposure_gain != 1.f;
    out.push_back(unsqueeze(r.sharp, 0));
  }
  return concat(out, 0);
}

Tensor GsModel::predict_defocus(const Tensor& input) { return estimator ? estimator->forward(input) : Tensor(); }

std::vector<std::string> GsModel::forward_inputs() const {
  return cfg.use_depth ? std::vector<std::string>{"x", "depth"} : std::vector<std::string>{"x"};
}

NamedTensors GsModel::forward_named(const std::map<std::string, Tensor>& in) {
  return {{"out0", deblur(in.at("x"), cfg.use_depth ? in.at("depth") : Tensor(), Tensor())}};
}

nlohmann::json GsModel::stats() const {
  if (!images_) return nlohmann::json::object();
  const double n = (double)images_;
  return {{"images", images_},
          {"mean_s1_change", sum_ds1_ / n},
          {"mean_s2_change", sum_ds2_ / n},
          {"mean_fit_psnr_db", sum_fit_psnr_ / n},
          {"mean_fit_seconds", sum_fit_seconds_ / n},
          {"brightened_images", brightened_}};
}

nlohmann::json gs_config_from_state_dict(std::map<std::string, Tensor>& t) {
  auto need = [&](const std::string& k) -> const Tensor& {
    auto it = t.find(k);
    RF_CHECK(it != t.end(), "gs: the state dict has no '", k, "'");
    return it->second;
  };
  GsConfig c;
  const Tensor& enc = need("initializer.enc1.0.weight");  // [width, 3 (+1 depth), 3, 3]
  c.init_width = enc.size(0);
  c.use_depth = enc.size(1) == 4;
  const Tensor& embed = need("deblurrer.embed.weight");  // [dim, token features]
  c.dim = embed.size(0);
  c.blocks = 0;
  while (t.count(cat("deblurrer.blocks.", c.blocks, ".fc1.weight"))) c.blocks++;
  RF_CHECK(c.blocks > 0, "gs: the state dict has no deblurrer blocks (deblurrer.blocks.0.fc1.weight)");
  c.ffn_mult = need("deblurrer.blocks.0.fc1.weight").size(0) / c.dim;
  GsConfig with_colour = c;
  with_colour.color_change = true;
  c.color_change = need("deblurrer.head.weight").size(0) == with_colour.head_outputs();
  c.defocus = t.count("estimator.enc.0.weight") > 0;
  if (t.count("encoder.conv0.weight")) c.photo_encoder = t["encoder.conv0.weight"].size(0);
  if (c.defocus) c.defocus_width = t["estimator.enc.0.weight"].size(0);
  // The local contrast's scales from the embedding's width: 9 features (3 scales) -> the octaves 1, 2, 4 px; other
  // counts -> that many half octaves.
  const int64_t context_features = embed.size(1) - c.token_features();
  RF_CHECK(context_features >= 0 && context_features % 3 == 0, "gs: deblurrer.embed.weight has ", embed.size(1),
           " token features, which no gs configuration gives");
  c.context = context_features > 0;
  if (context_features > 0 && context_features != 9) c.context_scales = GsConfig::half_octave_scales(context_features / 3);
  // Not visible in the shapes: what the local contrast is taken of (read as the render, as the twins' files and
  // those before session 16 are), a patch (read as none), the shrink and the kept light (read as the paper's ReLU
  // without) and the head count (the default, when it divides dim).
  if (c.dim % c.heads != 0) c.heads = 1;
  return c.to_json();
}

float exposure_gain(const Tensor& image, float floor) {
  const float level = mean(image).item();
  return level > 0.f && level < floor ? floor / level : 1.f;
}

GsResult gs_deblur(GsModel& m, const Tensor& photo, const Tensor& depth_in, int fit_iters, bool verbose) {
  const int64_t h = photo.size(1), w = photo.size(2);
  // A dark photo is fitted brightened, its highlights clipped as every training image's are; the deblurrer's change
  // is darkened back and added to the photo itself, so that a clipped lamp comes back as it was.
  const float gain = exposure_gain(photo, m.cfg.exposure_floor);
  const Tensor image = gain != 1.f ? clamp(photo * gain, 0.f, 1.f) : photo;
  Tensor depth = m.cfg.use_depth ? depth_in : Tensor();
  RF_CHECK(!m.cfg.use_depth || depth.defined(), "this gs model uses depth (trained with it), but no depth map was given");
  Tensor dn = depth.defined() ? normalise_depth(depth) : Tensor();
  FitParams init;
  {
    NoGrad ng;
    init = m.initializer->forward(image, dn);
    for (Tensor* t : {&init.means, &init.theta, &init.log_scales, &init.colors, &init.opacity_logit}) *t = t->detach();
  }
  FitOptions fo;
  fo.iters = fit_iters;
  fo.verbose = verbose;
  FitResult fit = fit_blobs(image, depth, init, fo);
  GsResult r;
  r.fitted = fit.params;
  r.fit_psnr = fit.psnr;
  r.fit_seconds = fit.seconds;
  NoGrad ng;
  Blobs b = fit.params.blobs();
  Tensor d2 = dn.defined() ? depth_at_blobs(dn, b.means) : Tensor();
  Tensor extra = m.blob_features(b, image);
  if (m.encoder) extra = m.with_encoder_features(extra, GsModel::pad_for_encoder(image), b.means, GsPhotoEncoder::kPad);
  r.deblurred = m.deblurrer->forward(b, d2, fit.params.d1, fit.params.log_k, h, w, extra);
  Tensor out = rasterize(r.deblurred, h, w);
  if (m.cfg.residual) out = out - rasterize(b, h, w);  // the change
  if (gain != 1.f) out = out * (1.f / gain);
  if (m.cfg.residual) out = photo + out;
  r.exposure_gain = gain;
  r.sharp = clamp(out, 0.f, 1.f);
  return r;
}

namespace {
// crop_square's output -> crop map, in continuous coordinates (pixel p spans [p, p + 1), so s - 1 - p becomes s - X).
void crop_to_source(int k, bool flip_x, bool flip_y, float s, float X, float Y, float& cx, float& cy) {
  switch (k) {
    case 1: cy = X; cx = s - Y; break;
    case 2: cy = s - Y; cx = s - X; break;
    case 3: cy = s - X; cx = Y; break;
    default: cy = Y; cx = X; break;
  }
  if (flip_x) cx = s - cx;
  if (flip_y) cy = s - cy;
}

// The same map as source = A crop + t, A a signed permutation (columns: the images of the unit vectors).
struct CropMap {
  float a00, a10, a01, a11, tx, ty;
};
CropMap crop_map(int k, bool flip_x, bool flip_y, float s) {
  float tx, ty, ax, ay, bx, by;
  crop_to_source(k, flip_x, flip_y, s, 0.f, 0.f, tx, ty);
  crop_to_source(k, flip_x, flip_y, s, 1.f, 0.f, ax, ay);
  crop_to_source(k, flip_x, flip_y, s, 0.f, 1.f, bx, by);
  return {ax - tx, ay - ty, bx - tx, by - ty, tx, ty};
}
}  // namespace

Tensor image_patches(const Tensor& image, const Tensor& means, int64_t p) {
  NoGrad ng;
  RF_CHECK(image.dim() == 3 && image.size(0) == 3, "image_patches: image must be [3, H, W], got ", describe(image));
  RF_CHECK(p >= 1 && p <= 16, "image_patches: the patch side must be 1...16, got ", p);
  const int64_t n = means.size(0);
  const float half = 0.5f * (float)(p - 1);
  std::vector<float> grid;  // (dx, dy) per sample, row-major over the p x p grid
  for (int64_t r = 0; r < p; ++r)
    for (int64_t c = 0; c < p; ++c) grid.insert(grid.end(), {(float)c - half, (float)r - half});
  Tensor offsets = from_vector(grid, {1, p * p, 2}, means.device());
  Tensor at = (means.reshape({n, 1, 2}) + offsets).reshape({n * p * p, 2});  // every sample point in one call
  Tensor img = unsqueeze(image, 0);
  Tensor samples = sample_at_centres(img, at).reshape({3, n, p * p});
  Tensor centre = sample_at_centres(img, means).reshape({3, n, 1});
  return permute((samples - centre) * 4.f, {1, 2, 0}).reshape({n, p * p * 3});
}

Tensor orient_patches(const Tensor& extra, int64_t first, int64_t p, int k, bool flip_x, bool flip_y) {
  NoGrad ng;
  RF_CHECK(extra.dim() == 2 && first >= 0 && first + 3 * p * p <= extra.size(1), "orient_patches: ", describe(extra),
           " has no ", p, "x", p, " patch at column ", first);
  const int64_t features = extra.size(1);
  const CropMap a = crop_map(k, flip_x, flip_y, 0.f);  // only its axes: offsets do not translate
  std::vector<int64_t> column(features);
  for (int64_t i = 0; i < features; ++i) column[i] = i;
  const float half = 0.5f * (float)(p - 1);
  for (int64_t r = 0; r < p; ++r)
    for (int64_t c = 0; c < p; ++c) {
      const float ox = (float)c - half, oy = (float)r - half;  // the sample's offset in the crop
      const int64_t sc = std::lround(a.a00 * ox + a.a01 * oy + half), sr = std::lround(a.a10 * ox + a.a11 * oy + half);
      for (int64_t ch = 0; ch < 3; ++ch) column[first + (r * p + c) * 3 + ch] = first + (sr * p + sc) * 3 + ch;
    }
  return permute(gather_rows(permute(extra, {1, 0}), column), {1, 0});
}

Blobs crop_blobs(const Blobs& b, const Tensor& d2, int64_t top, int64_t left, int64_t size, int k, bool flip_x,
                 bool flip_y, float margin, Tensor* d2_out, const Tensor& extra, Tensor* extra_out) {
  const float s = (float)size;
  const CropMap map = crop_map(k, flip_x, flip_y, s);  // in = A out + t
  const float a00 = map.a00, a10 = map.a10, a01 = map.a01, a11 = map.a11, tx = map.tx, ty = map.ty;
  auto m = b.means.to_vector(), th = b.theta.to_vector(), sc = b.scales.to_vector(), co = b.colors.to_vector(),
       op = b.opacity.to_vector();
  std::vector<float> dv = d2.defined() ? d2.to_vector() : std::vector<float>();
  std::vector<float> nm, nth, nsc, nco, nop, nd;
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < b.size(); ++i) {
    float cx = m[2 * i] - (float)left, cy = m[2 * i + 1] - (float)top;
    if (cx < -margin || cy < -margin || cx >= s + margin || cy >= s + margin) continue;
    kept.push_back(i);
    // out = A^T (in - t), A orthogonal; the blob's axis turns the same way.
    float ix = cx - tx, iy = cy - ty;
    nm.push_back(a00 * ix + a10 * iy);
    nm.push_back(a01 * ix + a11 * iy);
    float ux = std::cos(th[i]), uy = std::sin(th[i]);
    nth.push_back(std::atan2(a01 * ux + a11 * uy, a00 * ux + a10 * uy));
    nsc.insert(nsc.end(), {sc[2 * i], sc[2 * i + 1]});
    nco.insert(nco.end(), {co[3 * i], co[3 * i + 1], co[3 * i + 2]});
    nop.push_back(op[i]);
    if (!dv.empty()) nd.push_back(dv[i]);
  }
  const int64_t n = (int64_t)nop.size();
  Device d = b.means.device();
  if (d2_out) *d2_out = dv.empty() ? Tensor() : from_vector(nd, {n}, d);
  // Local contrast and defocus are isotropic: rotations and flips leave them as they are (a patch turns with the
  // crop: orient_patches).
  if (extra_out) *extra_out = extra.defined() ? gather_rows(extra, kept) : Tensor();
  return Blobs{from_vector(nm, {n, 2}, d), from_vector(nth, {n}, d), from_vector(nsc, {n, 2}, d),
               from_vector(nco, {n, 3}, d), from_vector(nop, {n}, d)};
}

void scale_change(const Blobs& before, const Blobs& after, double* ds1, double* ds2) {
  NoGrad ng;
  Tensor mb = mean(before.scales, {0}), ma = mean(after.scales, {0});
  auto b = mb.to_vector(), a = ma.to_vector();
  *ds1 = (a[0] - b[0]) / b[0];
  *ds2 = (a[1] - b[1]) / b[1];
}

void save_blobs(const std::string& path, const FitParams& p, int64_t h, int64_t w) {
  NoGrad ng;
  Blobs b = p.blobs();
  NamedTensors t = {{"means", b.means}, {"theta", b.theta}, {"scales", b.scales}, {"colors", b.colors},
                    {"opacity", b.opacity}};
  if (p.d1.defined()) t.emplace_back("d1", p.d1);
  if (p.log_k.defined()) t.emplace_back("K", exp(p.log_k));
  save_safetensors(path, t, {{"format", "refocus gs blobs"}, {"height", std::to_string(h)}, {"width", std::to_string(w)}});
}

FitParams load_blobs(const std::string& path, int64_t* h, int64_t* w) {
  SafeTensors st = load_safetensors(path);
  for (const char* k : {"means", "theta", "scales", "colors", "opacity"})
    RF_CHECK(st.tensors.count(k), path, ": not a blob file (no '", k, "' tensor)");
  RF_CHECK(st.metadata.count("height") && st.metadata.count("width"), path, ": the image size is missing from the metadata");
  *h = std::stoll(st.metadata["height"]);
  *w = std::stoll(st.metadata["width"]);
  FitParams p;
  p.means = st.tensors["means"];
  p.theta = st.tensors["theta"];
  p.log_scales = log(clamp(st.tensors["scales"] - kMinScale, 1e-6f, 1e6f));
  p.colors = st.tensors["colors"];
  Tensor op = clamp(st.tensors["opacity"], 1e-6f, 1.f - 1e-6f);
  p.opacity_logit = log(op / (1.f - op));
  if (st.tensors.count("d1")) p.d1 = st.tensors["d1"];
  if (st.tensors.count("K")) p.log_k = log(st.tensors["K"]);
  return p;
}

}  // namespace rf
