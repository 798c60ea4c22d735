// Module: a named tree of parameters, buffers and sub-modules, with PyTorch's dotted names
// (e.g. "enc1.conv.weight"), so state dicts move to and from PyTorch by name.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace rf {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;

  NamedTensors named_parameters() const;  // depth-first, registration order
  NamedTensors named_buffers() const;
  NamedTensors state_dict() const;        // parameters then buffers
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;

  // Copy values in by name. Checks every name and shape and says which one is wrong; with strict,
  // missing and unexpected names are errors too. `source` names the file in messages.
  void load_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true,
                       const std::string& source = "state dict");

  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }
  // Move every parameter and buffer to `d` in place (the Tensor handles held elsewhere follow).
  void to(Device d);
  void zero_grad();

 protected:
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t);
  // name "" merges the child's names into this module's (no prefix).
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }
  bool training_ = true;

 private:
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  NamedTensors params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// A module mapping one tensor to one tensor (the building block of Sequential).
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

// Children named "0", "1", ... like torch.nn.Sequential.
class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<UnaryModule>> layers);
  void push_back(std::shared_ptr<UnaryModule> m);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return layers_.size(); }
  UnaryModule& operator[](size_t i) { return *layers_[i]; }

 private:
  std::vector<std::shared_ptr<UnaryModule>> layers_;
};

}  // namespace rf
