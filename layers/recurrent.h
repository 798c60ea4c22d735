// Recurrent cells the networks share: PyTorch's LSTMCell and a convolutional LSTM cell. Both end in the
// same state update (lstm_update), so a network with its own gate network (INIKNet's residual gates)
// reuses it instead of writing the cell equations again.
#pragma once
#include <memory>

#include "layers/layers.h"

namespace rf {

struct LstmState {
  Tensor h, c;
  bool defined() const { return h.defined() && c.defined(); }
};

// h = c = 0 of `shape` ([B, hidden] or [B, hidden, H, W]): the state before the first step, for networks that
// read h before the cell runs (INIKNet concatenates it with the features) or resample it between scales (GKMNet).
LstmState zero_lstm_state(const Shape& shape, Device device = Device::CPU);

// Order of the four gates along dim 1 of the gate tensor. PyTorch's nn.LSTMCell: input, forget, cell (g),
// output. GKMNet's ConvLSTM: input, forget, output, cell.
enum class GateOrder { IFGO, IFOG };

// c' = sigmoid(f) c + sigmoid(i) tanh(g), h' = sigmoid(o) tanh(c'). gates [B, 4 H, ...], c_prev [B, H, ...]
// (undefined: zeros).
LstmState lstm_update(const Tensor& gates, const Tensor& c_prev, GateOrder order);

// torch.nn.LSTMCell: weight_ih [4H, in], weight_hh [4H, H], bias_ih, bias_hh; gates i, f, g, o.
class LSTMCell : public Module {
 public:
  LSTMCell(int64_t input, int64_t hidden, bool bias = true);
  // x [B, in]; an undefined state starts at zeros.
  LstmState forward(const Tensor& x, const LstmState& state);
  LstmState zero_state(int64_t batch, Device device = Device::CPU) const { return zero_lstm_state({batch, hidden}, device); }
  Tensor weight_ih, weight_hh, bias_ih, bias_hh;
  int64_t hidden;
};

// Convolutional LSTM: one k x k convolution ("conv", same padding) of concat(x, h) gives the four gates.
class ConvLSTMCell : public Module {
 public:
  ConvLSTMCell(int64_t input, int64_t hidden, int64_t kernel, GateOrder order = GateOrder::IFOG, bool bias = true);
  // x [B, in, H, W]; an undefined state starts at zeros of x's size.
  LstmState forward(const Tensor& x, const LstmState& state);
  LstmState zero_state(int64_t batch, int64_t height, int64_t width, Device device = Device::CPU) const {
    return zero_lstm_state({batch, hidden, height, width}, device);
  }
  std::shared_ptr<Conv2d> conv;
  int64_t hidden;
  GateOrder order;
};

}  // namespace rf
