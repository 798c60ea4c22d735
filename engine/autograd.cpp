#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "ops/elementwise.h"

namespace rf {

static thread_local bool g_grad_enabled = true;

bool grad_enabled() { return g_grad_enabled; }
NoGrad::NoGrad() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGrad::~NoGrad() { g_grad_enabled = prev_; }
EnableGrad::EnableGrad() : prev_(g_grad_enabled) { g_grad_enabled = true; }
EnableGrad::~EnableGrad() { g_grad_enabled = prev_; }

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* name, std::vector<Tensor> inputs, BackwardFn fn) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(fn);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

// A leaf's first gradient is copied, so that two leaves never share one gradient buffer (an in-place
// update of one, e.g. clipping, must not touch the other); later ones are added in place.
static void accumulate_leaf(const Tensor& leaf, const Tensor& g) {
  TensorImpl* impl = leaf.impl();
  if (!impl->grad) {
    Tensor c = empty_like(g);
    c.copy_(g);
    impl->grad = c.impl_ptr();
  } else {
    Tensor acc(impl->grad);
    add_(acc, g);
  }
}

// Nodes reachable from root, children before parents (iterative post-order DFS).
static std::vector<std::shared_ptr<TensorImpl>> topological_order(const Tensor& root) {
  std::vector<std::shared_ptr<TensorImpl>> order;
  std::unordered_set<TensorImpl*> visited;
  std::vector<std::pair<std::shared_ptr<TensorImpl>, size_t>> stack;
  stack.push_back({root.impl_ptr(), 0});
  visited.insert(root.impl());
  while (!stack.empty()) {
    auto& [impl, next] = stack.back();
    Node* node = impl->grad_fn.get();
    if (node && next < node->inputs.size()) {
      const Tensor& in = node->inputs[next++];
      if (in.defined() && in.impl()->grad_fn && in.requires_grad() && !visited.count(in.impl())) {
        visited.insert(in.impl());
        stack.push_back({in.impl_ptr(), 0});
      }
      continue;
    }
    order.push_back(impl);
    stack.pop_back();
  }
  return order;
}

void backward(const Tensor& root, const Tensor& grad_output) {
  RF_CHECK(root.defined() && root.requires_grad(),
           "backward: the tensor does not require grad (no input required grad, or it was made under NoGrad)");
  Tensor g0 = grad_output;
  if (!g0.defined()) {
    RF_CHECK(root.numel() == 1, "backward: a non-scalar root ", describe(root), " needs a grad_output");
    g0 = ones(root.shape(), root.device());
  }
  RF_CHECK(g0.shape() == root.shape(), "backward: grad_output ", describe(g0), " does not match ", describe(root));
  NoGrad no_grad;
  if (root.is_leaf()) {
    accumulate_leaf(root, g0);
    return;
  }
  auto order = topological_order(root);
  std::unordered_map<TensorImpl*, Tensor> grads;
  grads[root.impl()] = g0;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    TensorImpl* impl = it->get();
    auto gi = grads.find(impl);
    if (gi == grads.end()) continue;
    Tensor g = gi->second;
    grads.erase(gi);
    Node& node = *impl->grad_fn;
    RF_CHECK(node.backward, "backward through '", node.name,
             "' a second time: a graph is walked once; run the forward pass again");
    std::vector<Tensor> gin = node.backward(g);
    RF_CHECK(gin.size() == node.inputs.size(), "internal: backward of '", node.name, "' returned ", gin.size(),
             " gradients for ", node.inputs.size(), " inputs");
    for (size_t j = 0; j < gin.size(); ++j) {
      const Tensor& in = node.inputs[j];
      if (!in.defined() || !in.requires_grad() || !gin[j].defined()) continue;
      RF_CHECK(gin[j].shape() == in.shape() && gin[j].device() == in.device(), "internal: backward of '",
               node.name, "' gave a gradient ", describe(gin[j]), " for input ", j, " of ", describe(in));
      if (in.is_leaf()) {
        accumulate_leaf(in, gin[j]);
      } else {
        Tensor& slot = grads[in.impl()];
        slot = slot.defined() ? add(slot, gin[j]) : gin[j];
      }
    }
    // Free what the closure holds now: activations go as soon as they are no longer needed.
    node.backward = nullptr;
    node.inputs.clear();
  }
}

}  // namespace rf
