// Reverse-mode automatic differentiation on a define-by-run tape.
//
// Every differentiable op that sees an input requiring grad records a Node on its output: the
// inputs, and a closure that maps the output's gradient to one gradient per input (tensors it needs
// are captured by the closure). backward() orders the nodes topologically from the root, runs each
// closure once, and sums the gradients that reach a tensor in a fixed order (so results are
// reproducible). Leaves keep their gradient in .grad(); gradients of intermediates are freed as soon
// as their node has run, and so is the node's closure (a graph is walked once).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace rf {

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  const char* name;            // op name, for error messages
  std::vector<Tensor> inputs;  // one entry per differentiable input (undefined allowed)
  BackwardFn backward;         // returns one gradient per input (undefined: no gradient)
};

bool grad_enabled();

// Scope in which ops record nothing (inference, optimizer steps, metrics).
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

// Scope in which ops record again, inside a NoGrad (test-time optimisation, e.g. gs fitting).
class EnableGrad {
 public:
  EnableGrad();
  ~EnableGrad();
  EnableGrad(const EnableGrad&) = delete;
  EnableGrad& operator=(const EnableGrad&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any defined input requires grad: the op must record a Node.
bool needs_grad(std::initializer_list<Tensor> inputs);

// Attach a Node to `out` (marks it requiring grad). Call only when needs_grad(inputs) is true.
void record(Tensor& out, const char* name, std::vector<Tensor> inputs, BackwardFn fn);

// Accumulate d(root)/d(leaf) into every leaf that requires grad. A non-scalar root needs grad_output.
void backward(const Tensor& root, const Tensor& grad_output = Tensor());

}  // namespace rf
