// Optimizers (PyTorch's update rules), learning-rate schedules and gradient clipping.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "layers/module.h"

namespace rf {

class Optimizer {
 public:
  Optimizer(NamedTensors params, float lr);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  int64_t steps() const { return step_; }
  // Per-parameter learning-rate multiplier (parameter groups): parameter i steps with lr() * scale.
  void set_lr_scale(size_t param, float scale);
  // Optimizer state as named tensors "<param>.<slot>" plus the step, written atomically to safetensors;
  // load() checks that the file belongs to the same parameters.
  void save(const std::string& path) const;
  void load(const std::string& path);
  // The same state in memory (for checkpoints that hold weights and optimizer state in one file): tensors
  // "<param>.<slot>" and metadata {optimizer, step, lr}. `source` names the file in errors.
  NamedTensors state_tensors() const;
  std::map<std::string, std::string> state_metadata() const;
  void load_state(const std::map<std::string, Tensor>& tensors, const std::map<std::string, std::string>& metadata,
                  const std::string& source);
  const NamedTensors& named_params() const { return params_; }

 protected:
  virtual const char* kind() const = 0;
  virtual std::vector<std::string> slot_names() const = 0;
  Tensor& slot(size_t param, size_t s);  // zero-initialised on first use
  float lr_for(size_t i) const { return lr_ * (i < lr_scale_.size() ? lr_scale_[i] : 1.f); }
  NamedTensors params_;
  std::vector<std::vector<Tensor>> slots_;
  std::vector<float> lr_scale_;
  float lr_;
  int64_t step_ = 0;
};

struct SGDOptions {
  float lr = 1e-2f, momentum = 0.f, dampening = 0.f, weight_decay = 0.f;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, SGDOptions o);
  void step() override;

 private:
  const char* kind() const override { return "sgd"; }
  std::vector<std::string> slot_names() const override { return {"momentum_buffer"}; }
  SGDOptions o_;
};

struct AdamOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
};

// Adam adds weight_decay * p to the gradient (L2); AdamW decays the weights directly (decoupled).
class Adam : public Optimizer {
 public:
  Adam(NamedTensors params, AdamOptions o, bool decoupled_weight_decay = false);
  void step() override;

 private:
  const char* kind() const override { return decoupled_ ? "adamw" : "adam"; }
  std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  AdamOptions o_;
  bool decoupled_;
};

class AdamW : public Adam {
 public:
  AdamW(NamedTensors params, AdamOptions o) : Adam(std::move(params), o, true) {}
};

// Scale all gradients so their global L2 norm is at most max_norm; returns the norm before scaling.
float clip_grad_norm(const std::vector<Tensor>& params, float max_norm);
// The global L2 norm of the gradients (NaN or Inf when any gradient is not finite).
float grad_norm(const std::vector<Tensor>& params);

// Learning rate as a function of the step (PyTorch's StepLR, MultiStepLR, CosineAnnealingLR, ExponentialLR).
struct LRSchedule {
  enum class Kind { Constant, Step, MultiStep, Cosine, Exponential };
  Kind kind = Kind::Constant;
  float base_lr = 1e-3f;
  float gamma = 0.1f;            // Step, MultiStep, Exponential
  int64_t step_size = 1;         // Step
  std::vector<int64_t> milestones;  // MultiStep
  int64_t total_steps = 1;       // Cosine
  float min_lr = 0.f;            // Cosine
  float at(int64_t step) const;

  static LRSchedule constant(float lr);
  static LRSchedule step(float lr, int64_t step_size, float gamma);
  static LRSchedule multistep(float lr, std::vector<int64_t> milestones, float gamma);
  static LRSchedule cosine(float lr, int64_t total_steps, float min_lr);
  static LRSchedule exponential(float lr, float gamma);
};

}  // namespace rf
