#include "layers/recurrent.h"

#include <cmath>

namespace rf {

LstmState zero_lstm_state(const Shape& shape, Device device) {
  RF_CHECK(shape.size() >= 2, "zero_lstm_state: shape ", shape, " needs at least [batch, hidden]");
  return {zeros(shape, device), zeros(shape, device)};
}

LstmState lstm_update(const Tensor& gates, const Tensor& c_prev, GateOrder order) {
  RF_CHECK(gates.dim() >= 2 && gates.size(1) % 4 == 0, "lstm_update: gates ", describe(gates),
           " must have 4 x hidden channels in dim 1");
  const int64_t h = gates.size(1) / 4;
  auto gate = [&](int64_t k) { return slice(gates, 1, k * h, (k + 1) * h); };
  // Positions of i, f, g, o in the gate tensor.
  const int64_t pi = 0, pf = 1, pg = order == GateOrder::IFGO ? 2 : 3, po = order == GateOrder::IFGO ? 3 : 2;
  Tensor i = sigmoid(gate(pi)), f = sigmoid(gate(pf)), g = tanh(gate(pg)), o = sigmoid(gate(po));
  Tensor c = c_prev.defined() ? f * c_prev + i * g : i * g;
  RF_CHECK(!c_prev.defined() || c_prev.shape() == i.shape(), "lstm_update: cell state ", describe(c_prev),
           " does not match the gates' ", i.shape());
  return {o * tanh(c), c};
}

LSTMCell::LSTMCell(int64_t input, int64_t hidden_, bool bias) : hidden(hidden_) {
  // PyTorch initialises every LSTM parameter U(-1/sqrt(hidden), 1/sqrt(hidden)).
  const float b = 1.f / std::sqrt((float)hidden);
  weight_ih = register_parameter("weight_ih", uniform({4 * hidden, input}, -b, b));
  weight_hh = register_parameter("weight_hh", uniform({4 * hidden, hidden}, -b, b));
  if (bias) {
    bias_ih = register_parameter("bias_ih", uniform({4 * hidden}, -b, b));
    bias_hh = register_parameter("bias_hh", uniform({4 * hidden}, -b, b));
  }
}

LstmState LSTMCell::forward(const Tensor& x, const LstmState& s) {
  RF_CHECK(x.dim() == 2 && x.size(1) == weight_ih.size(1), "LSTMCell: input ", describe(x), " should be [B, ",
           weight_ih.size(1), "]");
  Tensor gates = linear(x, weight_ih, bias_ih);
  if (s.defined()) gates = gates + linear(s.h, weight_hh, bias_hh);
  else if (bias_hh.defined()) gates = gates + bias_hh;
  return lstm_update(gates, s.c, GateOrder::IFGO);
}

ConvLSTMCell::ConvLSTMCell(int64_t input, int64_t hidden_, int64_t kernel, GateOrder order_, bool bias)
    : hidden(hidden_), order(order_) {
  RF_CHECK(kernel % 2 == 1, "ConvLSTMCell: the kernel size must be odd (same padding), got ", kernel);
  conv = register_module("conv", std::make_shared<Conv2d>(input + hidden, 4 * hidden, kernel,
                                                          ConvOptions::make(1, kernel / 2), bias));
}

LstmState ConvLSTMCell::forward(const Tensor& x, const LstmState& s) {
  RF_CHECK(x.dim() == 4 && x.size(1) + hidden == conv->weight.size(1), "ConvLSTMCell: input ", describe(x),
           " should have ", conv->weight.size(1) - hidden, " channels");
  Tensor h = s.defined() ? s.h : zeros({x.size(0), hidden, x.size(2), x.size(3)}, x.device());
  RF_CHECK(h.size(2) == x.size(2) && h.size(3) == x.size(3), "ConvLSTMCell: state ", describe(h),
           " does not match the input ", describe(x));
  return lstm_update(conv->forward(concat({x, h}, 1)), s.c, order);
}

}  // namespace rf
