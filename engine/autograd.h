// Reverse-mode automatic differentiation on a define-by-run tape.
//
// Every differentiable op that sees an input requiring grad records a Node on its output: one edge per
// input (the node that made it, or the leaf itself), and a closure that maps the output's gradient to one
// gradient per input. A node keeps only what its backward needs: the closure captures the tensors (or just
// the shapes) it uses, and the edges hold producer nodes, not the input tensors, so an activation that no
// backward needs is freed as soon as the forward code drops it (PyTorch's saved-tensor rule).
// backward() orders the nodes topologically from the root, runs each closure once, and sums the gradients
// that reach a node in a fixed order (so results are reproducible). Leaves keep their gradient in .grad();
// each node's closure and edges are freed as soon as it has run (a graph is walked once).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace rf {

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

// Where one input's gradient goes: the node that made the input, or the input itself when it is a leaf.
// An input that needs no gradient has neither. Shape and device check what the backward returns.
struct Edge {
  std::shared_ptr<Node> node;
  std::shared_ptr<TensorImpl> leaf;
  Shape shape;
  Device device = Device::CPU;
  bool active() const { return node || leaf; }
};

struct Node {
  const char* name;        // op name, for error messages
  std::vector<Edge> next;  // one per differentiable input, in the op's input order
  BackwardFn backward;     // returns one gradient per input (undefined: no gradient)
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

// Attach a Node to `out` (marks it requiring grad). Call only when needs_grad(inputs) is true. The inputs are
// read for their edges, not kept: a closure that needs an input's values captures it itself.
void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn);

// Accumulate d(root)/d(leaf) into every leaf that requires grad. A non-scalar root needs grad_output.
void backward(const Tensor& root, const Tensor& grad_output = Tensor());

}  // namespace rf
