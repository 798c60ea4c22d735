#include "models/jdrl.h"

#include "models/config.h"

#include <cmath>

#include "layers/init.h"
#include "layers/losses.h"
#include "ops/isotropic_reblur.h"
#include "ops/ops.h"
#include "ops/optical_flow.h"

namespace rf {

// --- the seed networks -----------------------------------------------------------------------------------------
SeedNet::SeedNet(int64_t in, int64_t width, int64_t outputs) {
  ConvOptions same = ConvOptions::make(1, 1);
  conv_first = register_module("conv_first", std::make_shared<Conv2d>(in, width, 3, same));
  struct Block : Module {
    Block(int64_t w, std::shared_ptr<Conv2d>& c1, std::shared_ptr<Conv2d>& c2) {
      c1 = register_module("conv1", std::make_shared<Conv2d>(w, w, 3, ConvOptions::make(1, 1)));
      c2 = register_module("conv2", std::make_shared<Conv2d>(w, w, 3, ConvOptions::make(1, 1)));
    }
  };
  for (int i = 1; i <= 3; ++i) {
    std::shared_ptr<Conv2d> c1, c2;
    register_module(cat("block", i), std::make_shared<Block>(width, c1, c2));
    blocks.push_back({c1, c2});
  }
  out = register_module("out", std::make_shared<Conv2d>(width, outputs, 3, same));
}

Tensor SeedNet::forward(const Tensor& x) {
  Tensor y = conv_first->forward(x);
  for (auto& [c1, c2] : blocks) y = y + c2->forward(relu(c1->forward(y)));
  return out->forward(y);
}

ReblurModule::ReblurModule(int64_t width) {
  kernel_map_gene = register_module("kernel_map_gene", std::make_shared<SeedNet>(6, width, 8));
  kpn = register_module("kpn", std::make_shared<SeedNet>(6, width, kReblurSeeds));
  // The released initialisation: Xavier normal weights, zero biases.
  for (auto& [n, p] : named_parameters()) {
    Tensor t = p;
    if (t.dim() == 4) init::xavier_normal_(t);
    else init::zeros_(t);
  }
}

ReblurModule::Output ReblurModule::forward(const Tensor& im_s, const Tensor& im_b) {
  Tensor x = concat({im_s, im_b}, 1);
  Output o;
  o.seeds = kpn->forward(x);
  o.maps = softmax(kernel_map_gene->forward(x), 1);
  o.reblurred = isotropic_reblur(im_s, o.seeds, o.maps);
  return o;
}

// --- fusion ------------------------------------------------------------------------------------------------------
DeformableFusion::DeformableFusion(int64_t ch, int64_t h, int64_t p, int64_t width) : heads(h), points(p) {
  RF_CHECK(ch % h == 0, "DeformableFusion: ", ch, " channels do not split into ", h, " heads");
  query = register_module("query", std::make_shared<Conv2d>(3, width, 3, ConvOptions::make(1, 1)));
  offsets = register_module("offsets", std::make_shared<Conv2d>(width, h * p * 2, 1));
  weights = register_module("weights", std::make_shared<Conv2d>(width, h * p, 1));
  value = register_module("value", std::make_shared<Conv2d>(ch, ch, 1));
  output = register_module("output", std::make_shared<Conv2d>(ch, ch, 1));
  // Points start on Deformable DETR's pattern (head h looks along angle 2 pi h / heads, point k at k + 1 px) with
  // equal weights, and the projection at zero: F(y, B^) = B^ at first. (All points at the pixel itself would be
  // interchangeable: their offsets would get the same gradient and never separate.)
  offsets->weight.fill_(0.f);
  std::vector<float> start(h * p * 2);
  for (int64_t hd = 0; hd < h; ++hd)
    for (int64_t k = 0; k < p; ++k) {
      const double angle = 2.0 * 3.14159265358979 * (double)hd / (double)h;
      start[(hd * p + k) * 2] = (float)((double)(k + 1) * std::cos(angle));
      start[(hd * p + k) * 2 + 1] = (float)((double)(k + 1) * std::sin(angle));
    }
  offsets->bias.copy_(from_vector(start, {h * p * 2}, offsets->bias.device()));
  weights->weight.fill_(0.f);
  weights->bias.fill_(0.f);
  output->weight.fill_(0.f);
  output->bias.fill_(0.f);
}

Tensor DeformableFusion::forward(const Tensor& image, const Tensor& map) {
  const int64_t b = map.size(0), ch = map.size(1), h = map.size(2), w = map.size(3), per = ch / heads;
  Tensor q = relu(query->forward(image));
  Tensor off = offsets->forward(q);                                                   // [B, heads points 2, H, W] in px
  Tensor att = softmax(weights->forward(q).reshape({b, heads, points, h, w}), 2);    // per head over its points
  Tensor v = value->forward(map);
  std::vector<Tensor> head_out;
  for (int64_t hd = 0; hd < heads; ++hd) {
    Tensor vh = slice(v, 1, hd * per, (hd + 1) * per), acc;
    for (int64_t k = 0; k < points; ++k) {
      const int64_t o = (hd * points + k) * 2;
      Tensor sampled = warp(vh, slice(off, 1, o, o + 2));  // bilinear at p + offset
      Tensor term = sampled * slice(slice(att, 1, hd, hd + 1), 2, k, k + 1).reshape({b, 1, h, w});
      acc = acc.defined() ? acc + term : term;
    }
    head_out.push_back(acc);
  }
  return map + output->forward(concat(head_out, 1));
}

// --- the model -----------------------------------------------------------------------------------------------------
nlohmann::json JdrlConfig::to_json() const {
  return {{"backbone", backbone}, {"width", width}, {"restormer_blocks", restormer_blocks},
          {"restormer_refinement", restormer_refinement}, {"estimator", estimator}, {"heads", heads}, {"points", points},
          {"identity_start", identity_start}, {"global_flow", global_flow}, {"reblur_guides", reblur_guides},
          {"reblur_width", reblur_width}};
}

JdrlConfig JdrlConfig::from_json(const nlohmann::json& j) {
  ConfigReader r(j, "jdrl config");
  JdrlConfig c;
  r.get("backbone", c.backbone, {"unet", "restormer"});
  if (c.backbone == "restormer") c.width = 48;
  r.get("width", c.width, 1, 1024);
  r.get("restormer_blocks", c.restormer_blocks, 4, 1, 64);
  r.get("restormer_refinement", c.restormer_refinement, 0, 64);
  r.get("estimator", c.estimator);
  r.get("heads", c.heads, 1, kReblurSeeds);
  r.get("points", c.points, 1, 16);
  r.get("identity_start", c.identity_start);
  r.get("global_flow", c.global_flow);
  r.get("reblur_guides", c.reblur_guides);
  r.get("reblur_width", c.reblur_width, 1, 1024);
  r.finish();
  RF_CHECK(kReblurSeeds % c.heads == 0, "jdrl config: heads must divide 35, got ", c.heads);
  return c;
}

JdrlModel::JdrlModel(const JdrlConfig& c) : cfg(c) {
  const int64_t in = c.estimator ? 3 + kReblurSeeds : 3;
  if (c.estimator) {
    estimator_ = register_module("estimator", std::make_shared<SeedNet>(3, 32, kReblurSeeds));
    fusion_ = register_module("fusion", std::make_shared<DeformableFusion>(kReblurSeeds, c.heads, c.points));
    se_ = register_module("channel_attention", std::make_shared<SqueezeExcitation>(in, 16, false));
  }
  if (c.backbone == "unet") {
    unet_ = register_module("backbone", std::make_shared<VggDeblur>(in, c.width));
    if (c.identity_start) unet_->zero_output();
  } else {
    RestormerConfig rc;
    rc.in_channels = in;
    rc.dim = c.width;
    rc.blocks = c.restormer_blocks;
    rc.refinement = c.restormer_refinement;
    restormer_ = register_module("backbone", std::make_shared<Restormer>(rc));
    if (c.identity_start) restormer_->zero_output();
  }
  reblur_ = register_module("reblur", std::make_shared<ReblurModule>(c.reblur_width));
}

std::string JdrlModel::description() const {
  return cat("jdrl (", cfg.backbone, " width ", cfg.width, cfg.estimator ? ", estimator + deformable fusion" : ", bare backbone",
             cfg.identity_start ? ", identity start" : "", ")");
}

int64_t JdrlModel::inference_parameters() const { return num_parameters() - reblur_->num_parameters(); }

Tensor JdrlModel::estimate(const Tensor& y) { return estimator_ ? estimator_->forward(y) : Tensor(); }

Tensor JdrlModel::deblur_with(const Tensor& y, Tensor* map) {
  Tensor in = y, est;
  if (estimator_) {
    est = estimate(y);
    in = se_->forward(concat({y, fusion_->forward(y, est)}, 1));
  }
  if (map) *map = est;
  // The residual is the blurry image itself, not its SE-scaled copy among the backbone's input channels.
  if (restormer_) return restormer_->forward_residual(in, y);
  return cfg.identity_start ? unet_->forward_residual(in, y) : unet_->forward(in);
}

Tensor JdrlModel::deblur(const Tensor& input, const Tensor&, const Tensor&) { return deblur_with(input, nullptr); }

NamedTensors JdrlModel::forward_named(const std::map<std::string, Tensor>& in) { return {{"out0", deblur(in.at("im_b"), {}, {})}}; }

namespace {

// Eq. 13: keep pixels whose flow magnitude is within +-lambda of the image's mean magnitude. [ours] Where the mean
// is below 0.1 px (no misalignment to calibrate) every pixel is kept.
Tensor calibration_mask(const Tensor& flow, float lambda = 0.35f) {
  NoGrad ng;
  Tensor mag = sqrt(sum(flow * flow, {1}, true) + 1e-12f);  // [B, 1, H, W]
  auto m = mag.to_vector(), mean = rf::mean(mag, {1, 2, 3}).to_vector();
  const int64_t b = mag.size(0), hw = mag.size(2) * mag.size(3);
  std::vector<float> mask(b * hw);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t p = 0; p < hw; ++p) {
      const float mu = mean[i], v = m[i * hw + p];
      mask[i * hw + p] = (mu < 0.1f || (v >= (1 - lambda) * mu && v <= (1 + lambda) * mu)) ? 1.f : 0.f;
    }
  return from_vector(mask, mag.shape(), flow.device());
}

// B_P of Eq. 8: the seeds of kernel n weighted by the weight map of kernel n, for n = 1..7 (map 0 excluded).
Tensor pseudo_map(const Tensor& seeds, const Tensor& maps) {
  std::vector<Tensor> parts;
  int64_t at = 0;
  for (int64_t r = 1; r <= kReblurSizes; ++r) {
    parts.push_back(slice(seeds, 1, at, at + r + 1) * slice(maps, 1, r, r + 1));
    at += r + 1;
  }
  return concat(parts, 1);
}

}  // namespace

LossTerms JdrlModel::loss(const Batch& b, const std::string& stage) {
  RF_CHECK(stage == "warmup" || stage == "main" || stage == "naive", "jdrl: unknown stage '", stage, "'");
  Tensor est;
  Tensor out = deblur_with(b.input, &est);
  if (stage == "naive") {  // the backbone trained on the misaligned pairs as they are
    Tensor l = charbonnier_loss(out, b.target);
    return {l, {{"charbonnier", l.item()}}};
  }
  FlowOptions flow = pair_alignment_flow();
  flow.global_affine = cfg.global_flow;
  if (stage == "warmup") {  // the ground truth warped onto the blurry input: blur-independent alignment
    Tensor gt_w = warp_bicubic(b.target, estimate_flow(b.input, b.target, flow));
    Tensor l = charbonnier_loss(out, gt_w);
    return {l, {{"l_d", l.item()}}};
  }
  // Eq. 14: both warp directions, masked; Eq. 6 and 8 through R.
  Tensor flow_to_gt, flow_to_out;
  {
    NoGrad ng;
    Tensor o = out.detach();
    flow_to_gt = estimate_flow(o, b.target, flow);   // warp(GT, .) ~ output
    flow_to_out = estimate_flow(b.target, o, flow);  // warp(output, .) ~ GT
  }
  // [ours] Bicubic: a bilinear warp blurs what it moves by about as much as the defocus of a nearly sharp image.
  Tensor gt_on_out = warp_bicubic(b.target, flow_to_gt), out_on_gt = warp_bicubic(out, flow_to_out);
  Tensor l_d;
  if (cfg.global_flow) {  // [ours] no calibration mask: under an affine field its magnitude test measures the zoom, not errors
    l_d = charbonnier_loss(out, gt_on_out) + charbonnier_loss(b.target, out_on_gt);
  } else {
    Tensor m1 = calibration_mask(flow_to_gt), m2 = calibration_mask(flow_to_out);
    l_d = charbonnier_loss(out * m1, gt_on_out * m1) + charbonnier_loss(b.target * m2, out_on_gt * m2);
  }
  ReblurModule::Output r = reblur_->forward(cfg.reblur_guides ? out : out.detach(), b.input);
  Tensor l_r = charbonnier_loss(r.reblurred, b.input);
  Tensor total = l_d + 0.5f * l_r;
  std::vector<std::pair<std::string, float>> parts = {{"l_d", l_d.item()}, {"l_r", l_r.item()}};
  if (est.defined()) {
    Tensor l_p = charbonnier_loss(est, pseudo_map(r.seeds, r.maps));
    total = total + 0.5f * l_p;
    parts.push_back({"l_p", l_p.item()});
  }
  return {total, parts};
}

// --- the released modules alone ------------------------------------------------------------------------------------
JdrlReblurModel::JdrlReblurModel() { reblur_ = register_module("", std::make_shared<ReblurModule>()); }

Tensor JdrlReblurModel::deblur(const Tensor&, const Tensor&, const Tensor&) {
  throw Error("jdrl_reblur is JDRL's reblurring module (training only): it reblurs, it does not deblur (use --model jdrl)");
}

NamedTensors JdrlReblurModel::forward_named(const std::map<std::string, Tensor>& in) {
  return {{"out0", reblur_->forward(in.at("im_s"), in.at("im_b")).reblurred}};
}

JdrlUnetModel::JdrlUnetModel(int64_t width) : width_(width) { net_ = register_module("", std::make_shared<VggDeblur>(3, width)); }

NamedTensors JdrlUnetModel::forward_named(const std::map<std::string, Tensor>& in) { return {{"out0", net_->forward(in.at("im_b"))}}; }

static void strip_module_prefix(std::map<std::string, Tensor>& t) {
  std::map<std::string, Tensor> out;
  for (auto& [k, v] : t) out[k.rfind("module.", 0) == 0 ? k.substr(7) : k] = v;
  t = out;
}

nlohmann::json jdrl_unet_config_from_official(std::map<std::string, Tensor>& t) {
  strip_module_prefix(t);
  RF_CHECK(t.count("encoder.block1.0.weight"), "not a JDRL VGG_Deblur state dict (no encoder.block1.0.weight)");
  return {{"width", t["encoder.block1.0.weight"].size(0)}};
}

nlohmann::json jdrl_reblur_config_from_official(std::map<std::string, Tensor>& t) {
  strip_module_prefix(t);
  RF_CHECK(t.count("kpn.conv_first.weight"), "not a JDRL Reblur_Model state dict (no kpn.conv_first.weight)");
  return nlohmann::json::object();
}

}  // namespace rf
