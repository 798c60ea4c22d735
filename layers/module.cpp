#include "layers/module.h"

#include <cmath>

#include <set>

namespace rf {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  buffers_.emplace_back(name, t);
  return t;
}

void Module::collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  // A child registered under "" lends its names to its parent unprefixed (a model that is one released module).
  for (const auto& [n, m] : children_) m->collect(n.empty() ? prefix : prefix + n + ".", params, buffers, out);
}

// A parameter registered in two places (INIKNet's shared sine frequencies) is listed once, under its first name,
// as PyTorch does: optimizers step it once and counts count it once. state_dict() keeps every name.
NamedTensors Module::named_parameters() const {
  NamedTensors all, out;
  collect("", true, false, all);
  std::set<const TensorImpl*> seen;
  for (auto& nt : all)
    if (seen.insert(nt.second.impl()).second) out.push_back(nt);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, false, out);
  for (auto& b : named_buffers()) out.push_back(b);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& sd, bool strict, const std::string& source) {
  std::set<std::string> used;
  for (auto& [name, t] : state_dict()) {
    auto it = sd.find(name);
    if (it == sd.end()) {
      RF_CHECK(!strict, source, ": tensor '", name, "' of shape ", t.shape(), " is missing");
      continue;
    }
    RF_CHECK(it->second.shape() == t.shape(), source, ": tensor '", name, "' has shape ", it->second.shape(),
             " but the model expects ", t.shape());
    // A NaN or infinite weight would only surface as a black output much later: refuse it here, by name.
    {
      const std::vector<float> v = it->second.to_vector();
      for (size_t i = 0; i < v.size(); ++i)
        RF_CHECK(std::isfinite(v[i]), source, ": tensor '", name, "' holds a non-finite value (", v[i],
                 ") at element ", i, "; the weights are damaged");
    }
    Tensor dst = t;
    dst.copy_(it->second);
    used.insert(name);
  }
  if (strict)
    for (auto& [name, t] : sd)
      RF_CHECK(used.count(name), source, ": tensor '", name, "' of shape ", t.shape(),
               " does not belong to this model (wrong model or configuration?)");
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

void Module::to(Device d) {
  for (auto& [n, t] : state_dict()) {
    Tensor h = t;
    h.move_to_(d);
  }
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) {
    Tensor h = t;
    h.zero_grad();
  }
}

Sequential::Sequential(std::vector<std::shared_ptr<UnaryModule>> layers) {
  for (auto& l : layers) push_back(l);
}

void Sequential::push_back(std::shared_ptr<UnaryModule> m) {
  register_module(std::to_string(layers_.size()), m);
  layers_.push_back(std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& l : layers_) h = l->forward(h);
  return h;
}

}  // namespace rf
