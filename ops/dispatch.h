// Helpers shared by every op: device checks and the CPU/CUDA dispatch.
#pragma once
#include <initializer_list>

#include "engine/tensor.h"

// Run a CUDA launcher when built with CUDA; otherwise explain (a CUDA tensor cannot exist then).
#ifdef REFOCUS_WITH_CUDA
#define RF_GPU(...) __VA_ARGS__
#else
#define RF_GPU(...) throw ::rf::Error("a CUDA tensor reached an op, but refocus was built without CUDA")
#endif

namespace rf {

// All defined tensors on one device; returns it. Throws naming the op and the tensors otherwise.
inline Device same_device(const char* op, std::initializer_list<Tensor> ts) {
  const Tensor* first = nullptr;
  for (const Tensor& t : ts) {
    if (!t.defined()) continue;
    if (!first) {
      first = &t;
    } else if (t.device() != first->device()) {
      std::string all;
      for (const Tensor& u : ts) all += (all.empty() ? "" : ", ") + describe(u);
      throw Error(cat(op, ": inputs are on different devices (", all, ")"));
    }
  }
  RF_CHECK(first, op, ": no input tensor");
  return first->device();
}

}  // namespace rf
