#include "models/inik.h"

#include "models/config.h"

#include <cmath>

#include "layers/losses.h"
#include "ops/ops.h"

namespace rf {

nlohmann::json InikConfig::to_json() const {
  return {{"base", base},         {"res_unet", res_unet}, {"res_lstm", res_lstm}, {"bases", bases},
          {"max_kernel", max_kernel}, {"hidden", hidden}, {"freq_min", freq_min}, {"freq_max", freq_max},
          {"bgr", bgr}};
}

InikConfig InikConfig::from_json(const nlohmann::json& j) {
  ConfigReader r(j, "inik config");
  InikConfig c;
  r.get("base", c.base, 1, 512);
  r.get("res_unet", c.res_unet, 0, 32);
  r.get("res_lstm", c.res_lstm, 0, 32);
  r.get("bases", c.bases, 1, 16);
  r.get("max_kernel", c.max_kernel, 3, 31);
  r.get("hidden", c.hidden, 1, 1024);
  r.get("freq_min", c.freq_min, 0.0, 1000.0);
  r.get("freq_max", c.freq_max, 0.0, 1000.0);
  r.get("bgr", c.bgr);
  r.finish();
  RF_CHECK(c.max_kernel % 2 == 1, "inik config: max_kernel must be odd, got ", c.max_kernel);
  RF_CHECK(c.freq_min <= c.freq_max, "inik config: freq_min must not exceed freq_max");
  return c;
}

InverseFilterShape InikConfig::filter_shape() const {
  InverseFilterShape s;
  s.bases = bases;
  for (int64_t k = 3; k <= max_kernel; k += 2) s.sizes.push_back(k);
  return s;
}

// --- blocks ---------------------------------------------------------------------------------------------------
InikConv::InikConv(int64_t in, int64_t out, int64_t k, int64_t stride, bool relu, bool transposed) {
  main = std::make_shared<Sequential>();
  if (transposed)
    main->push_back(std::make_shared<ConvTranspose2d>(in, out, 4, ConvOptions::make(2, 1), false));
  else
    main->push_back(std::make_shared<Conv2d>(in, out, k, ConvOptions::make(stride, k / 2), false, PadMode::Reflect));
  if (relu) main->push_back(std::make_shared<Activation>(Act::ReLU));
  register_module("main", main);
}

Tensor InikConv::forward(const Tensor& x) { return main->forward(x); }

InikResBlock::InikResBlock(int64_t ch) {
  main = register_module("main", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                     std::make_shared<InikConv>(ch, ch, 3, 1, true), std::make_shared<InikConv>(ch, ch, 3, 1, false)}));
}

Tensor InikResBlock::forward(const Tensor& x) { return x + main->forward(x); }

InikResStack::InikResStack(int64_t ch, int64_t n) {
  layers = register_module("layers", std::make_shared<Sequential>());
  for (int64_t i = 0; i < n; ++i) layers->push_back(std::make_shared<InikResBlock>(ch));
}

InikUNet::InikUNet(int64_t b, int64_t res) {
  Encoder = register_module("Encoder", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                           std::make_shared<InikResStack>(b, res), std::make_shared<InikResStack>(2 * b, res),
                                           std::make_shared<InikResStack>(4 * b, res)}));
  Decoder = register_module("Decoder", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                                           std::make_shared<InikResStack>(2 * b, res), std::make_shared<InikResStack>(b, res)}));
  feat_extract = register_module(
      "feat_extract", std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
                          std::make_shared<InikConv>(3, b, 3, 1, true), std::make_shared<InikConv>(b, 2 * b, 3, 2, true),
                          std::make_shared<InikConv>(2 * b, 4 * b, 3, 2, true), std::make_shared<InikConv>(4 * b, 2 * b, 3, 1, true),
                          std::make_shared<InikConv>(2 * b, b, 3, 1, true)}));
  up1 = register_module("up1", std::make_shared<InikConv>(4 * b, 2 * b, 4, 2, true, true));
  up2 = register_module("up2", std::make_shared<InikConv>(2 * b, b, 4, 2, true, true));
}

Tensor InikUNet::forward(const Tensor& x) {
  auto& fe = *feat_extract;
  Tensor res1 = (*Encoder)[0](fe[0](x));
  Tensor res2 = (*Encoder)[1](fe[1](res1));
  Tensor res3 = (*Encoder)[2](fe[2](res2));
  Tensor z = (*Decoder)[0](fe[3](concat({up1->forward(res3), res2}, 1)));  // upsampled first, skip second
  return (*Decoder)[1](fe[4](concat({up2->forward(z), res1}, 1)));
}

InikLstmCell::InikLstmCell(int64_t h, int64_t res) : hidden(h) {
  layers = register_module("layers", std::make_shared<InikResStack>(2 * h, res));
  conv = register_module("conv", std::make_shared<Conv2d>(2 * h, 4 * h, 1));
}

LstmState InikLstmCell::forward(const Tensor& x, const LstmState& s) {
  LstmState st = s.defined() ? s : zero_lstm_state({x.size(0), hidden, x.size(2), x.size(3)}, x.device());
  return lstm_update(conv->forward(layers->forward(concat({x, st.h}, 1))), st.c, GateOrder::IFOG);
}

InikBiLstm::InikBiLstm(int64_t hidden, int64_t res) {
  left2right_ = register_module("left2right", std::make_shared<Cell>(hidden, res));
  right2left_ = register_module("right2left", std::make_shared<Cell>(hidden, res));
  norm_ = register_module("norm", std::make_shared<Norm>(hidden));
}

// One direction over the scales; the state is resampled to each next scale (bilinear, x0.5 or x2).
std::vector<Tensor> InikBiLstm::pass(InikLstmCell& cell, const std::vector<Tensor>& in, bool fine_to_coarse) {
  std::vector<Tensor> h(in.size());
  LstmState s;
  for (size_t k = 0; k < in.size(); ++k) {
    const size_t i = fine_to_coarse ? in.size() - 1 - k : k;
    const int64_t hh = in[i].size(2), ww = in[i].size(3);
    if (s.defined()) s = {resize_bilinear(s.h, hh, ww), resize_bilinear(s.c, hh, ww)};
    s = cell.forward(in[i], s);
    h[i] = s.h;
  }
  return h;
}

std::vector<Tensor> InikBiLstm::forward(const std::vector<Tensor>& u) {
  std::vector<Tensor> xn;
  for (auto& f : u) xn.push_back(norm_->norm->forward(f));
  std::vector<Tensor> h1 = pass(*right2left_->cell, xn, true);   // pass 1: fine -> coarse on the normalised features
  std::vector<Tensor> h2 = pass(*left2right_->cell, h1, false);  // pass 2: coarse -> fine on pass 1's states
  std::vector<Tensor> out;
  for (size_t i = 0; i < u.size(); ++i) out.push_back(u[i] + h2[i]);
  return out;
}

// --- atoms ---------------------------------------------------------------------------------------------------
namespace {
// sin(w0 * x), w0 one scalar shared by the MLP's two sine layers.
struct Sine : UnaryModule {
  explicit Sine(Tensor w) : w0(register_parameter("w0", std::move(w))) {}
  Tensor forward(const Tensor& x) override { return sin(w0 * x); }
  Tensor w0;
};

// One atom: its MLP under "layers".
struct Atom : UnaryModule {
  explicit Atom(std::shared_ptr<Sequential> s) : layers(register_module("layers", std::move(s))) {}
  Tensor forward(const Tensor& x) override { return layers->forward(x); }
  std::shared_ptr<Sequential> layers;
};

// (r / sqrt 2, (cos theta + 1) / 2, (sin theta + 1) / 2) of u + i v, u the row and v the column in [-1, 1].
Tensor polar_grid(int64_t s) {
  std::vector<float> c;
  for (int64_t i = 0; i < s; ++i)
    for (int64_t j = 0; j < s; ++j) {
      const float u = (float)i / (float)(s - 1) * 2.f - 1.f, v = (float)j / (float)(s - 1) * 2.f - 1.f;
      const float r = std::sqrt(u * u + v * v) / std::sqrt(2.f), th = std::atan2(v, u);
      c.insert(c.end(), {r, (std::cos(th) + 1.f) / 2.f, (std::sin(th) + 1.f) / 2.f});
    }
  return from_vector(c, {s * s, 3});
}
}  // namespace

InikAtoms::InikAtoms(const InikConfig& c) : cfg_(c) {
  auto list = std::make_shared<Sequential>();
  for (int64_t n = 0; n < c.bases; ++n) {
    const float w = c.bases == 1 ? c.freq_min : c.freq_min + (c.freq_max - c.freq_min) * (float)n / (float)(c.bases - 1);
    Tensor w0 = full({}, w);
    auto l0 = std::make_shared<Linear>(3, c.hidden), l2 = std::make_shared<Linear>(c.hidden, c.hidden);
    auto l4 = std::make_shared<Linear>(c.hidden, 1, false);
    auto atom = std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
        l0, std::make_shared<Sine>(w0), l2, std::make_shared<Sine>(w0), l4});
    list->push_back(std::make_shared<Atom>(atom));
    l0_.push_back(l0);
    l2_.push_back(l2);
    l4_.push_back(l4);
    w0_.push_back(w0);
  }
  list_ = register_module("kernelINR_list", list);
  for (int64_t s : c.filter_shape().sizes) coords_.push_back(polar_grid(s));
}

Tensor InikAtoms::kernels() {
  InverseFilterShape shape = cfg_.filter_shape();
  Device d = l0_[0]->weight.device();
  std::vector<Tensor> all_coords;
  for (auto& c : coords_) all_coords.push_back(c.to(d));
  Tensor grid = concat(all_coords, 0);  // every size's grid in one batch: [sum s^2, 3]
  std::vector<Tensor> per_atom;
  for (size_t n = 0; n < l0_.size(); ++n) per_atom.push_back((*list_)[n](grid).reshape({-1}));
  std::vector<Tensor> pieces;  // group by group, atom by atom, each x 9 / s^2
  int64_t at = 0;
  for (int64_t s : shape.sizes) {
    for (auto& a : per_atom) pieces.push_back(slice(a, 0, at, at + s * s) * (9.f / (float)(s * s)));
    at += s * s;
  }
  return concat(pieces, 0);
}

// --- the network ----------------------------------------------------------------------------------------------
InikModel::InikModel(const InikConfig& c) : cfg(c) {
  unet_ = register_module("unet", std::make_shared<InikUNet>(c.base, c.res_unet));
  basis_ = register_module("lstms_basis_select", std::make_shared<InikBiLstm>(c.base, c.res_lstm));
  scale_ = register_module("lstms_scale_select", std::make_shared<InikBiLstm>(c.base, c.res_lstm));
  const int64_t groups = (int64_t)c.filter_shape().sizes.size();
  scale_select_ = register_module("scale_select", std::make_shared<Conv2d>(c.base, groups + 1, 1));
  basis_select_ = register_module("basis_select", std::make_shared<Conv2d>(c.base, c.bases, 1));
  atoms_ = register_module("inr_conv", std::make_shared<InikAtoms>(c));
  sum_ = register_module("sum", std::make_shared<Conv2d>((groups + 1) * 3 * c.bases, 3, 1));
}

std::string InikModel::description() const {
  return cat("inik (", cfg.bases, " atoms, kernels 3..", cfg.max_kernel, ", frequencies ", cfg.freq_min, "..", cfg.freq_max,
             cfg.bgr ? ", BGR" : "", ")");
}

std::vector<Tensor> InikModel::run(const Tensor& x_rgb) {
  RF_CHECK(x_rgb.dim() == 4 && x_rgb.size(1) == 3 && x_rgb.size(2) % 16 == 0 && x_rgb.size(3) % 16 == 0,
           "inik: input ", describe(x_rgb), " must be [B, 3, H, W] with H and W multiples of 16");
  auto flip = [&](const Tensor& t) { return cfg.bgr ? concat({slice(t, 1, 2, 3), slice(t, 1, 1, 2), slice(t, 1, 0, 1)}, 1) : t; };
  Tensor x = flip(x_rgb);
  const int64_t h = x.size(2), w = x.size(3);
  std::vector<Tensor> xs = {resize_bilinear(x, h / 4, w / 4), resize_bilinear(x, h / 2, w / 2), x};
  std::vector<Tensor> u;
  for (auto& xi : xs) u.push_back(unet_->forward(xi));
  std::vector<Tensor> fb = basis_->forward(u), fs = scale_->forward(u);
  Tensor k = atoms_->kernels();
  InverseFilterShape shape = cfg.filter_shape();
  Tensor mix = sum_->weight.reshape({3, sum_->weight.size(1)});
  std::vector<Tensor> out;
  for (size_t i = 0; i < xs.size(); ++i) {
    Tensor mu = softmax(scale_select_->forward(fs[i]), 1), omega = basis_select_->forward(fb[i]);
    out.push_back(flip(xs[i] + inverse_filter(xs[i], k, shape, mu, omega, mix, sum_->bias)));
  }
  return out;
}

Tensor InikModel::deblur(const Tensor& input, const Tensor&, const Tensor&) { return run(input).back(); }

NamedTensors InikModel::forward_named(const std::map<std::string, Tensor>& in) {
  auto out = run(in.at("x"));
  return {{"out0", out[0]}, {"out1", out[1]}, {"out2", out[2]}};
}

LossTerms InikModel::loss(const Batch& b, const std::string&) {
  auto out = run(b.input);
  const int64_t h = b.target.size(2), w = b.target.size(3);
  std::vector<Tensor> targets = {resize_bilinear(b.target, h / 4, w / 4), resize_bilinear(b.target, h / 2, w / 2), b.target};
  Tensor total;
  for (size_t i = 0; i < out.size(); ++i) {
    // fft_l1_loss is the mean over real and imaginary parts together: INIKNet's mean|dRe| + mean|dIm| is twice it.
    Tensor l = mse_loss(out[i], targets[i]) + 0.2f * fft_l1_loss(out[i], targets[i]);
    total = total.defined() ? total + l : l;
  }
  return {total, {{"mse_full", mse_loss(out.back(), b.target).item()}}};
}

nlohmann::json inik_config_from_official(std::map<std::string, Tensor>& t) {
  RF_CHECK(t.count("sum.weight") && t.count("unet.feat_extract.0.main.0.weight"),
           "not an INIKNet state dict (no sum.weight or unet.feat_extract.0.main.0.weight)");
  InikConfig c;
  c.base = t["unet.feat_extract.0.main.0.weight"].size(0);
  c.bases = t["basis_select.weight"].size(0);
  c.max_kernel = 2 * (t["scale_select.weight"].size(0) - 1) + 1;
  c.hidden = t["inr_conv.kernelINR_list.0.layers.0.weight"].size(0);
  c.bgr = true;  // the released code reads images with cv2
  return c.to_json();
}

}  // namespace rf
