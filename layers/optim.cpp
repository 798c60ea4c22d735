#include "layers/optim.h"

#include <cmath>

#include "engine/safetensors.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "layers/optim_impl.h"

namespace rf {

namespace cpu {
void adam_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2, float eps,
                 float wd, bool decoupled, float bc1, float bc2) {
#pragma omp parallel for if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) adam_one(p[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, decoupled, bc1, bc2);
}
void sgd_update(float* p, const float* g, float* buf, int64_t n, float lr, float momentum, float dampening, float wd,
                bool nesterov, bool first) {
#pragma omp parallel for if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) sgd_one(p[i], g[i], buf ? buf[i] : p[i], lr, momentum, dampening, wd, nesterov, first);
}
}  // namespace cpu

Optimizer::Optimizer(NamedTensors params, float lr) : params_(std::move(params)), lr_(lr) {
  slots_.resize(params_.size());
}

void Optimizer::set_lr_scale(size_t param, float scale) {
  RF_CHECK(param < params_.size(), "set_lr_scale: parameter ", param, " of ", params_.size());
  if (lr_scale_.size() < params_.size()) lr_scale_.resize(params_.size(), 1.f);
  lr_scale_[param] = scale;
}

void Optimizer::zero_grad() {
  for (auto& [n, p] : params_) {
    Tensor h = p;
    h.zero_grad();
  }
}

Tensor& Optimizer::slot(size_t i, size_t s) {
  auto& v = slots_[i];
  if (v.size() <= s) v.resize(slot_names().size());
  if (!v[s].defined()) v[s] = zeros_like(params_[i].second);
  return v[s];
}

NamedTensors Optimizer::state_tensors() const {
  NamedTensors out;
  auto names = slot_names();
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t s = 0; s < slots_[i].size(); ++s)
      if (slots_[i][s].defined()) out.emplace_back(params_[i].first + "." + names[s], slots_[i][s]);
  return out;
}

std::map<std::string, std::string> Optimizer::state_metadata() const {
  return {{"optimizer", kind()}, {"step", std::to_string(step_)}, {"lr", std::to_string(lr_)}};
}

void Optimizer::save(const std::string& path) const { save_safetensors(path, state_tensors(), state_metadata()); }

void Optimizer::load_state(const std::map<std::string, Tensor>& tensors, const std::map<std::string, std::string>& meta,
                           const std::string& source) {
  auto kind_it = meta.find("optimizer");
  std::string k = kind_it == meta.end() ? "" : kind_it->second;
  RF_CHECK(k == kind(), source, ": holds '", k, "' optimizer state, not ", kind());
  auto names = slot_names();
  size_t used = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t s = 0; s < names.size(); ++s) {
      auto it = tensors.find(params_[i].first + "." + names[s]);
      if (it == tensors.end()) continue;
      RF_CHECK(it->second.shape() == params_[i].second.shape(), source, ": state '", it->first, "' has shape ",
               it->second.shape(), " but the parameter is ", params_[i].second.shape());
      slot(i, s).copy_(it->second);
      used++;
    }
  RF_CHECK(used == tensors.size(), source, ": ", tensors.size() - used, " optimizer tensors match no parameter of this model");
  auto step_it = meta.find("step");
  try {
    step_ = step_it == meta.end() ? 0 : std::stoll(step_it->second);
  } catch (const std::exception&) {
    throw Error(cat(source, ": the optimizer step '", step_it->second, "' is not a number"));
  }
}

void Optimizer::load(const std::string& path) {
  SafeTensors st = load_safetensors(path);
  load_state(st.tensors, st.metadata, path);
}

SGD::SGD(NamedTensors params, SGDOptions o) : Optimizer(std::move(params), o.lr), o_(o) {}

void SGD::step() {
  NoGrad ng;
  bool first = step_ == 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    float* buf = o_.momentum != 0.f ? slot(i, 0).data() : nullptr;
    if (p.is_cuda())
      RF_GPU_OP("sgd step", (p, g),
                gpu::sgd_update(p.data(), g.data(), buf, p.numel(), lr_for(i), o_.momentum, o_.dampening,
                                o_.weight_decay, o_.nesterov, first));
    else
      cpu::sgd_update(p.data(), g.data(), buf, p.numel(), lr_for(i), o_.momentum, o_.dampening, o_.weight_decay, o_.nesterov,
                      first);
  }
  step_++;
}

Adam::Adam(NamedTensors params, AdamOptions o, bool decoupled)
    : Optimizer(std::move(params), o.lr), o_(o), decoupled_(decoupled) {}

void Adam::step() {
  NoGrad ng;
  step_++;
  float bc1 = 1.f - std::pow(o_.beta1, (float)step_), bc2 = 1.f - std::pow(o_.beta2, (float)step_);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    float* m = slot(i, 0).data();
    float* v = slot(i, 1).data();
    if (p.is_cuda())
      RF_GPU_OP("adam step", (p, g),
                gpu::adam_update(p.data(), g.data(), m, v, p.numel(), lr_for(i), o_.beta1, o_.beta2, o_.eps,
                                 o_.weight_decay, decoupled_, bc1, bc2));
    else
      cpu::adam_update(p.data(), g.data(), m, v, p.numel(), lr_for(i), o_.beta1, o_.beta2, o_.eps, o_.weight_decay, decoupled_,
                       bc1, bc2);
  }
}

float grad_norm(const std::vector<Tensor>& params) {
  NoGrad ng;
  double total = 0;
  for (const Tensor& p : params)
    if (p.grad().defined()) total += sum(square(p.grad())).item();
  return (float)std::sqrt(total);
}

float clip_grad_norm(const std::vector<Tensor>& params, float max_norm) {
  float norm = grad_norm(params);
  if (norm > max_norm) {
    NoGrad ng;
    float s = max_norm / (norm + 1e-6f);
    for (const Tensor& p : params)
      if (p.grad().defined()) {
        Tensor g = p.grad();
        scale_(g, s);
      }
  }
  return norm;
}

float LRSchedule::at(int64_t step) const {
  switch (kind) {
    case Kind::Constant: return base_lr;
    case Kind::Step: return base_lr * std::pow(gamma, (float)(step / std::max<int64_t>(step_size, 1)));
    case Kind::MultiStep: {
      int passed = 0;
      for (int64_t m : milestones) passed += step >= m;
      return base_lr * std::pow(gamma, (float)passed);
    }
    case Kind::Cosine: {
      double t = std::min<double>((double)step / (double)std::max<int64_t>(total_steps, 1), 1.0);
      return (float)(min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * t)));
    }
    case Kind::Exponential: return base_lr * std::pow(gamma, (float)step);
  }
  return base_lr;
}

LRSchedule LRSchedule::constant(float lr) {
  LRSchedule s;
  s.base_lr = lr;
  return s;
}
LRSchedule LRSchedule::step(float lr, int64_t step_size, float gamma) {
  LRSchedule s = constant(lr);
  s.kind = Kind::Step;
  s.step_size = step_size;
  s.gamma = gamma;
  return s;
}
LRSchedule LRSchedule::multistep(float lr, std::vector<int64_t> milestones, float gamma) {
  LRSchedule s = constant(lr);
  s.kind = Kind::MultiStep;
  s.milestones = std::move(milestones);
  s.gamma = gamma;
  return s;
}
LRSchedule LRSchedule::cosine(float lr, int64_t total_steps, float min_lr) {
  LRSchedule s = constant(lr);
  s.kind = Kind::Cosine;
  s.total_steps = total_steps;
  s.min_lr = min_lr;
  return s;
}
LRSchedule LRSchedule::exponential(float lr, float gamma) {
  LRSchedule s = constant(lr);
  s.kind = Kind::Exponential;
  s.gamma = gamma;
  return s;
}

}  // namespace rf
