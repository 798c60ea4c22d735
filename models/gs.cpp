#include "models/gs.h"

#include <cmath>

#include "engine/safetensors.h"
#include "ops/ops.h"
#include "train/cli.h"
#include "train/losses.h"
#include "train/metrics.h"
#include "train/optim.h"

namespace rf {

constexpr float kMinScale = 0.1f;  // px; the deblurrer's lower bound (Eq. 7)

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
  std::vector<float> m(2 * gh * gw);
  for (int64_t j = 0; j < gh; ++j)
    for (int64_t i = 0; i < gw; ++i) {
      m[2 * (j * gw + i)] = std::fmin(((float)i + 0.5f) * (float)cell, (float)w - 0.5f);
      m[2 * (j * gw + i) + 1] = std::fmin(((float)j + 0.5f) * (float)cell, (float)h - 0.5f);
    }
  const int64_t n = gh * gw;
  p.means = from_vector(m, {n, 2}, d);
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

Tensor depth_at_blobs(const Tensor& depth_norm, const Tensor& means) {
  NoGrad ng;
  const int64_t h = depth_norm.size(-2), w = depth_norm.size(-1), n = means.size(0);
  // Pixel coordinates [0, W] map onto grid_sample's [-1, 1] (align_corners = false).
  Tensor scale = from_vector({2.f / (float)w, 2.f / (float)h}, {1, 2}, means.device());
  Tensor grid = (means.detach() * scale - 1.f).reshape({1, n, 1, 2});
  return grid_sample(depth_norm.reshape({1, 1, h, w}), grid, false, GridPadding::Border).reshape({n});
}

Tensor depth_regulariser(const Tensor& d2, const Tensor& scales, const Tensor& d1, const Tensor& k, float side) {
  Tensor s = scales / side;
  Tensor s1s2 = slice(s, 1, 0, 1).reshape({-1}) * slice(s, 1, 1, 2).reshape({-1});
  Tensor d2sq = d2 * d2;
  Tensor rhs = s1s2 * d2sq / (k * k) + 2.f * d1 * d2 - d1 * d1;
  return mean(square(d2sq - rhs));
}

FitResult fit_blobs(const Tensor& image, const Tensor& depth, FitParams p, const FitOptions& o) {
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
