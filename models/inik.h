// inik — "Single Image Defocus Deblurring via Implicit Neural Inverse Kernels" (INIKNet, paper 003), with the
// released code's module tree and parameter names (1,976,847 parameters):
//
//   x -> [x/4, x/2, x] --U-Net (shared)--> features u_s
//   u --BiLSTM stack (scale)--> mu_s = softmax(scale_select) over 8 size groups (group 0: null)
//   u --BiLSTM stack (basis)--> omega_s = basis_select (10 atom weights per pixel)
//   atoms: 10 sine MLPs on the polar coordinates of each kernel grid (3, 5, ..., 15), x 9 / s^2
//   out_s = x_s + sum(1x1 mix over g, colour, n of mu_g omega_n (atom_{g,n} * x_s))   [fused: ops/inverse_filter.h]
// Each BiLSTM stack: LayerNorm over channels; pass 1 fine->coarse (states halved), pass 2 coarse->fine on pass 1's
// hidden states (states doubled); output u + h. Its cell: cat(feature, h) -> 2 residual blocks -> 1x1 conv -> gates.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "layers/layers.h"
#include "layers/recurrent.h"
#include "models/model.h"
#include "ops/inverse_filter.h"

namespace rf {

struct InikConfig {
  int64_t base = 32;          // U-Net widths base, 2 base, 4 base
  int64_t res_unet = 2;       // residual blocks per U-Net level
  int64_t res_lstm = 2;       // residual blocks in an LSTM cell
  int64_t bases = 10;         // INR atoms
  int64_t max_kernel = 15;    // kernel sizes 3, 5, ..., max_kernel
  int64_t hidden = 64;        // width of the sine MLPs
  float freq_min = 2.f, freq_max = 12.f;  // atom frequencies (the released code: 2..12; the paper: 2..16)
  bool bgr = false;           // the released weights were trained on BGR images (cv2): flip colours in and out
  nlohmann::json to_json() const;
  static InikConfig from_json(const nlohmann::json& j);
  InverseFilterShape filter_shape() const;
};

// Conv (reflect padding, no bias) [+ ReLU] under the released names: main.0 (conv), main.1 (ReLU).
class InikConv : public UnaryModule {
 public:
  InikConv(int64_t in, int64_t out, int64_t kernel, int64_t stride, bool relu, bool transposed = false);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Sequential> main;
};

// x + main(x), main = [conv-ReLU, conv] (3x3, reflect, no bias).
class InikResBlock : public UnaryModule {
 public:
  explicit InikResBlock(int64_t ch);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Sequential> main;
};

// A stack of residual blocks under "layers".
class InikResStack : public UnaryModule {
 public:
  InikResStack(int64_t ch, int64_t n);
  Tensor forward(const Tensor& x) override { return layers->forward(x); }
  std::shared_ptr<Sequential> layers;
};

class InikUNet : public UnaryModule {
 public:
  InikUNet(int64_t base, int64_t res);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Sequential> Encoder, Decoder, feat_extract;
  std::shared_ptr<InikConv> up1, up2;
};

// gates = conv(layers(cat(feature, h))) with the i, f, o, g order; state update as every LSTM (lstm_update).
class InikLstmCell : public Module {
 public:
  InikLstmCell(int64_t hidden, int64_t res);
  LstmState forward(const Tensor& x, const LstmState& s);
  std::shared_ptr<InikResStack> layers;
  std::shared_ptr<Conv2d> conv;
  int64_t hidden;
};

class InikBiLstm : public Module {
 public:
  InikBiLstm(int64_t hidden, int64_t res);
  // features per scale, coarsest first -> features + pass-2 hidden states, coarsest first
  std::vector<Tensor> forward(const std::vector<Tensor>& u);

 private:
  std::vector<Tensor> pass(InikLstmCell& cell, const std::vector<Tensor>& in, bool fine_to_coarse);
  struct Cell : Module {
    Cell(int64_t hidden, int64_t res) { cell = register_module("cell", std::make_shared<InikLstmCell>(hidden, res)); }
    std::shared_ptr<InikLstmCell> cell;
  };
  struct Norm : Module {
    explicit Norm(int64_t ch) { norm = register_module("norm", std::make_shared<LayerNorm>(ch, 1)); }
    std::shared_ptr<LayerNorm> norm;
  };
  std::shared_ptr<Cell> left2right_, right2left_;
  std::shared_ptr<Norm> norm_;
};

// The atoms: kernelINR_list.N.layers = [Linear(3, h), Sine(w0), Linear(h, h), Sine(the same w0), Linear(h, 1, no bias)].
class InikAtoms : public Module {
 public:
  explicit InikAtoms(const InikConfig& c);
  Tensor kernels();  // flat [sum_g N s^2] in ops/inverse_filter.h's order, differentiable in the MLPs

 private:
  InikConfig cfg_;
  std::shared_ptr<Sequential> list_;
  std::vector<std::shared_ptr<Linear>> l0_, l2_, l4_;
  std::vector<Tensor> w0_;
  std::vector<Tensor> coords_;  // [s^2, 3] per size
};

class InikModel : public Model {
 public:
  explicit InikModel(const InikConfig& c);
  InikConfig cfg;
  std::string name() const override { return "inik"; }
  nlohmann::json config() const override { return cfg.to_json(); }
  std::string description() const override;
  Tensor deblur(const Tensor& input, const Tensor&, const Tensor&) override;
  // Sum over the scales of MSE + 0.1 FFT (mean |dRe| + mean |dIm|), as released (the LPIPS and VGG terms need
  // weights this project cannot download; see README).
  LossTerms loss(const Batch& batch, const std::string& stage) override;
  std::vector<std::string> forward_inputs() const override { return {"x"}; }
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;  // out0..2: quarter, half, full
  int64_t size_multiple() const override { return 16; }
  std::vector<Tensor> run(const Tensor& x);  // outputs, quarter first (RGB in, RGB out; bgr handled inside)

 private:
  std::shared_ptr<InikUNet> unet_;
  std::shared_ptr<InikBiLstm> basis_, scale_;
  std::shared_ptr<Conv2d> scale_select_, basis_select_, sum_;
  std::shared_ptr<InikAtoms> atoms_;
};

// `convert --official`: the released state dict under its own names; the config that reproduces it (BGR colours).
nlohmann::json inik_config_from_official(std::map<std::string, Tensor>& tensors);

}  // namespace rf
