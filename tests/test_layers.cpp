// The shared layers (layers/recurrent.h, layers/blocks.h) tested like ops: PyTorch twins with the same
// weights (tests/golden/twin_layers.py), finite differences of the CPU path, CPU<->CUDA parity.
#include "engine/safetensors.h"
#include "layers/blocks.h"
#include "layers/recurrent.h"
#include "tests/harness.h"

using namespace rf;
using namespace rft;

namespace {

struct Golden {
  std::map<std::string, Tensor> weights;
  std::vector<Tensor> in, out, gout, grad_in;
};

Golden load_golden(const std::string& name) {
  SafeTensors st = load_safetensors(std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/layer_" + name + ".safetensors");
  Golden g;
  for (auto& [k, t] : st.tensors)
    if (k.rfind("w.", 0) == 0) g.weights[k.substr(2)] = t;
  auto list = [&](const std::string& prefix) {
    std::vector<Tensor> v;
    for (int i = 0; st.tensors.count(prefix + std::to_string(i)); ++i) v.push_back(st.tensors[prefix + std::to_string(i)]);
    return v;
  };
  g.in = list("in");
  g.out = list("out");
  g.gout = list("gout");
  g.grad_in = list("grad_in");
  return g;
}

// Loads the twin's weights into m, runs f, and compares the outputs and the input gradients with PyTorch's.
void check_twin(const std::string& name, Module& m, const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f) {
  Golden g = load_golden(name);
  m.load_state_dict(g.weights, true, "layer_" + name);
  std::vector<Tensor> xs;
  for (auto& t : g.in) xs.push_back(t.clone().set_requires_grad(true));
  std::vector<Tensor> outs = f(xs);
  REQUIRE(outs.size() == g.out.size());
  Tensor loss;
  for (size_t i = 0; i < outs.size(); ++i) {
    double e = rel_err(outs[i], g.out[i]);
    MESSAGE(name, " out", i, ": relative error ", e);
    CHECK(e < 1e-5);
    Tensor l = sum(outs[i] * g.gout[i]);
    loss = loss.defined() ? loss + l : l;
  }
  loss.backward();
  for (size_t i = 0; i < xs.size(); ++i) {
    double e = rel_err(xs[i].grad(), g.grad_in[i]);
    MESSAGE(name, " grad_in", i, ": relative error ", e);
    CHECK(e < 1e-4);
  }
}

// One tensor out of several (for the gradient and parity harness).
Tensor joined(const std::vector<Tensor>& outs) {
  std::vector<Tensor> flat;
  for (auto& o : outs) flat.push_back(o.flatten());
  return concat(flat, 0);
}

// The module follows its inputs' device, so that the parity harness can run it on both.
OpFn on_device(Module& m, std::function<std::vector<Tensor>(const std::vector<Tensor>&)> f) {
  return [&m, f](const std::vector<Tensor>& x) {
    m.to(x[0].device());
    return joined(f(x));
  };
}

}  // namespace

TEST_SUITE("layers") {

TEST_CASE("LSTMCell equals torch.nn.LSTMCell, with gradients") {
  manual_seed(1);
  LSTMCell cell(5, 7);
  auto f = [&](const std::vector<Tensor>& x) {
    LstmState s = cell.forward(x[0], {x[1], x[2]});
    return std::vector<Tensor>{s.h, s.c};
  };
  check_twin("lstm_cell", cell, f);
  std::vector<Tensor> in = load_golden("lstm_cell").in;
  check_gradients("LSTMCell", on_device(cell, f), in);
  check_cuda_parity("LSTMCell", on_device(cell, f), in);
  cell.to(Device::CPU);
  LstmState zero = cell.forward(in[0], {});  // no state: zeros
  LstmState explicit_zero = cell.forward(in[0], cell.zero_state(3));
  CHECK(max_abs_diff(zero.h, explicit_zero.h) < 1e-7);
  CHECK(max_abs_diff(zero.c, explicit_zero.c) < 1e-7);
  CHECK(max_abs_diff(zero.h, zeros_like(zero.h)) > 1e-3);  // the input alone moves the state
}

TEST_CASE("ConvLSTMCell equals a PyTorch ConvLSTM cell (gates i, f, o, g), with gradients") {
  manual_seed(2);
  ConvLSTMCell cell(4, 6, 5, GateOrder::IFOG);
  auto f = [&](const std::vector<Tensor>& x) {
    LstmState s = cell.forward(x[0], {x[1], x[2]});
    return std::vector<Tensor>{s.h, s.c};
  };
  check_twin("conv_lstm_cell", cell, f);
  std::vector<Tensor> in = load_golden("conv_lstm_cell").in;
  check_gradients("ConvLSTMCell", on_device(cell, f), in);
  check_cuda_parity("ConvLSTMCell", on_device(cell, f), in);
  // A first step without a state is a step from zero_state, which has the input's size.
  cell.to(Device::CPU);
  LstmState none = cell.forward(in[0], {});
  LstmState zero = cell.zero_state(2, 9, 11);
  CHECK(zero.h.shape() == Shape{2, 6, 9, 11});
  LstmState from_zero = cell.forward(in[0], zero);
  CHECK(max_abs_diff(none.h, from_zero.h) < 1e-7);
  CHECK(max_abs_diff(none.c, from_zero.c) < 1e-7);
  CHECK(max_abs_diff(none.c, zeros_like(none.c)) > 1e-3);
}

TEST_CASE("TransformerBlock equals a PyTorch pre-norm block (head dim 8), windows included") {
  manual_seed(3);
  TransformerBlock block(24, 3, 2);
  auto f = [&](const std::vector<Tensor>& x) { return std::vector<Tensor>{block.forward(x[0])}; };
  check_twin("transformer_block", block, f);
  std::vector<Tensor> in = load_golden("transformer_block").in;
  check_gradients("TransformerBlock", on_device(block, f), in);
  check_cuda_parity("TransformerBlock", on_device(block, f), in);
  // Unbatched tokens are one sequence; windows of the whole length are full attention.
  block.to(Device::CPU);
  Tensor one = in[0][0];
  CHECK(max_abs_diff(block.forward(one), block.forward(in[0])[0]) < 1e-6);
  CHECK(max_abs_diff(block.forward(one, 13), block.forward(one)) < 1e-6);
  CHECK(max_abs_diff(block.forward(one, 4), block.forward(one)) > 1e-4);
}

TEST_CASE("SqueezeExcitation equals torchvision-style SE, with gradients") {
  manual_seed(4);
  SqueezeExcitation se(32, 8);
  auto f = [&](const std::vector<Tensor>& x) { return std::vector<Tensor>{se.forward(x[0])}; };
  check_twin("squeeze_excitation", se, f);
  std::vector<Tensor> in = load_golden("squeeze_excitation").in;
  check_gradients("SqueezeExcitation", on_device(se, f), in);
  check_cuda_parity("SqueezeExcitation", on_device(se, f), in);
}

TEST_CASE("SqueezeExcitation without biases equals the SENet SELayer (JDRL's SE(38), Linear weights reshaped)") {
  manual_seed(6);
  SqueezeExcitation se(38, 16, false);
  CHECK(se.fc1->weight.shape() == Shape{2, 38, 1, 1});
  CHECK(se.named_parameters().size() == 2);  // no biases
  auto f = [&](const std::vector<Tensor>& x) { return std::vector<Tensor>{se.forward(x[0])}; };
  check_twin("squeeze_excitation_nobias", se, f);
  std::vector<Tensor> in = load_golden("squeeze_excitation_nobias").in;
  check_gradients("SqueezeExcitation (no bias)", on_device(se, f), in);
  check_cuda_parity("SqueezeExcitation (no bias)", on_device(se, f), in);
}

TEST_CASE("U-Net encoder and decoder blocks: shapes, names, gradients") {
  manual_seed(5);
  UNetBlockOptions o;
  o.res_blocks = 1;
  o.bias = false;
  o.padding = PadMode::Reflect;
  UNetDown down(4, 8, o);
  UNetUp up(8, 4, false, o), up_add(8, 4, true, o);
  auto names = [](const Module& m) {
    std::string s;
    for (auto& [n, t] : m.named_parameters()) s += n + " ";
    return s;
  };
  CHECK(names(down) == "down.weight body.0.body.0.weight body.0.body.2.weight ");
  CHECK(names(up) == "up.weight merge.weight body.0.body.0.weight body.0.body.2.weight ");
  CHECK(names(up_add) == "up.weight body.0.body.0.weight body.0.body.2.weight ");
  Tensor x = uniform_input({2, 4, 10, 14}, -1, 1, 7);
  Tensor d = down.forward(x);
  CHECK(d.shape() == Shape{2, 8, 5, 7});
  CHECK(up.forward(d, x).shape() == x.shape());
  auto f = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{up.forward(down.forward(in[0]), in[0])}; };
  check_gradients("UNetDown+UNetUp", on_device(down, [&](auto& in) {
                    up.to(in[0].device());
                    return f(in);
                  }),
                  {x});
  check_cuda_parity("UNetDown+UNetUp", on_device(down, [&](auto& in) {
                      up.to(in[0].device());
                      return f(in);
                    }),
                    {x});
}

}  // TEST_SUITE
