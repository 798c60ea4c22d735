#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>
#include <utility>


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

void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->next.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    if (!in.defined() || !in.requires_grad()) continue;
    Edge& e = node->next[i];
    if (in.is_leaf())
      e.leaf = in.impl_ptr();
    else
      e.node = in.impl()->grad_fn;
    e.shape = in.shape();
    e.device = in.device();
  }
  node->backward = std::move(fn);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

// A leaf's first gradient is copied, so that two leaves never share one gradient buffer (an in-place
// update of one, e.g. clipping, must not touch the other); later ones are added in place.
static void accumulate_leaf(TensorImpl* impl, const Tensor& g) {
  if (!impl->grad) {
    Tensor c = empty_like(g);
    c.copy_(g);
    impl->grad = c.impl_ptr();
  } else {
    Tensor acc(impl->grad);
    acc.add_(g);
  }
}

// Nodes reachable from root, children before parents (iterative post-order DFS). The list owns the nodes:
// the walk frees each node's edges after running it, and a node whose tensor is gone lives on the edges.
static std::vector<std::shared_ptr<Node>> topological_order(const std::shared_ptr<Node>& root) {
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> visited{root.get()};
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->next.size()) {
      const std::shared_ptr<Node>& child = node->next[next++].node;
      if (child && visited.insert(child.get()).second) stack.push_back({child, 0});
      continue;
    }
    order.push_back(std::move(node));
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
    accumulate_leaf(root.impl(), g0);
    return;
  }
  auto order = topological_order(root.impl()->grad_fn);
  std::unordered_map<Node*, Tensor> grads;
  grads[order.back().get()] = g0;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    std::shared_ptr<Node> owned = std::move(*it);  // released at the end of this iteration
    Node& node = *owned;
    auto gi = grads.find(&node);
    if (gi == grads.end()) continue;
    Tensor g = gi->second;
    grads.erase(gi);
    RF_CHECK(node.backward, "backward through '", node.name,
             "' a second time: a graph is walked once; run the forward pass again");
    if (g.is_cuda()) {  // a CUDA error in the closure names this op's backward and its shapes
      const Shape* shapes[kMaxNotedShapes] = {&g.shape()};
      int n = 1;
      for (const Edge& e : node.next)
        if (n < kMaxNotedShapes) shapes[n++] = &e.shape;
      note_cuda_op(node.name, shapes, n, true);
    }
    std::vector<Tensor> gin = node.backward(g);
    g = Tensor();
    RF_CHECK(gin.size() == node.next.size(), "internal: backward of '", node.name, "' returned ", gin.size(),
             " gradients for ", node.next.size(), " inputs");
    for (size_t j = 0; j < gin.size(); ++j) {
      const Edge& e = node.next[j];
      if (!e.active() || !gin[j].defined()) continue;
      RF_CHECK(gin[j].shape() == e.shape && gin[j].device() == e.device, "internal: backward of '", node.name,
               "' gave a gradient ", describe(gin[j]), " for input ", j, " of shape ", e.shape);
      if (e.leaf) {
        accumulate_leaf(e.leaf.get(), gin[j]);
      } else {
        Tensor& slot = grads[e.node.get()];
        if (!slot.defined())
          slot = gin[j];
        else if (slot.impl()->storage.use_count() == 1 && slot.impl_ptr().use_count() == 1)
          slot.add_(gin[j]);  // the sum is ours alone: add in place
        else
          slot = sum_of(slot, gin[j]);
      }
    }
    // Free what the node holds now: saved activations go as soon as they are no longer needed.
    node.backward = nullptr;
    node.next.clear();
  }
}

}  // namespace rf
