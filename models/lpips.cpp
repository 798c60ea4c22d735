#include "models/lpips.h"

#include "engine/safetensors.h"

namespace rf {

namespace {
// Holds `m` under the name PyTorch's lpips package gives it, e.g. net.slice2.3 for AlexNet's features[3].
struct Named : Module {
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, m);
  }
};
}  // namespace

Lpips::Lpips() {
  const int64_t in[5] = {3, 64, 192, 384, 256}, out[5] = {64, 192, 384, 256, 256}, k[5] = {11, 5, 3, 3, 3};
  const int64_t stride[5] = {4, 1, 1, 1, 1}, pad[5] = {2, 2, 1, 1, 1};
  const char* index[5] = {"0", "3", "6", "8", "10"};  // positions in torchvision's alexnet.features
  auto net = register_module("net", std::make_shared<Named>());
  for (int i = 0; i < 5; ++i) {
    auto slice = net->add("slice" + std::to_string(i + 1), std::make_shared<Named>());
    conv[i] = slice->add(index[i], std::make_shared<Conv2d>(in[i], out[i], k[i], ConvOptions::make(stride[i], pad[i])));
    auto head = register_module("lin" + std::to_string(i), std::make_shared<Named>());
    auto model = head->add("model", std::make_shared<Named>());
    lin[i] = model->add("1", std::make_shared<Conv2d>(out[i], 1, 1, ConvOptions{}, false));
  }
  eval();
}

std::vector<Tensor> Lpips::features(const Tensor& x) {
  std::vector<Tensor> f;
  Tensor h = x;
  for (int i = 0; i < 5; ++i) {
    if (i == 1 || i == 2) h = max_pool2d(h, 3, 2);
    h = relu(conv[i]->forward(h));
    f.push_back(h);
  }
  return f;
}

Tensor Lpips::forward(const Tensor& a, const Tensor& b) {
  RF_CHECK(a.dim() == 4 && a.size(1) == 3 && a.shape() == b.shape(), "lpips: expected two [N, 3, H, W] images, got ",
           a.shape(), " and ", b.shape());
  Device d = a.device();
  // [0, 1] -> [-1, 1], then the lpips ScalingLayer's per-channel shift and scale.
  Tensor shift = from_vector({-0.030f, -0.088f, -0.188f}, {1, 3, 1, 1}, d);
  Tensor scale = from_vector({0.458f, 0.448f, 0.450f}, {1, 3, 1, 1}, d);
  auto prep = [&](const Tensor& x) { return (x * 2.f - 1.f - shift) / scale; };
  auto fa = features(prep(a)), fb = features(prep(b));
  Tensor total;
  for (int i = 0; i < 5; ++i) {
    auto unit = [](const Tensor& f) { return f / (sqrt(sum(f * f, {1}, true)) + 1e-10f); };
    Tensor diff = square(unit(fa[i]) - unit(fb[i]));
    Tensor v = mean(lin[i]->forward(diff), {1, 2, 3});
    total = total.defined() ? total + v : v;
  }
  return total;
}

std::unique_ptr<Lpips> load_lpips(const std::string& path, Device d) {
  auto m = std::make_unique<Lpips>();
  SafeTensors st = load_safetensors(path);
  st.tensors.erase("scaling_layer.shift");
  st.tensors.erase("scaling_layer.scale");
  m->load_state_dict(st.tensors, true, path);
  m->to(d);
  m->eval();
  return m;
}

}  // namespace rf
