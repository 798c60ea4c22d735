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

// A forward launcher that names itself: RF_GPU_OP("conv2d", (x, w, bias), gpu::conv2d_forward(...)) notes the op and
// its tensors' shapes (note_cuda_op, engine/device.h) so that a CUDA error, even one surfacing later, names them; then
// runs the launcher. Backward closures use RF_GPU: autograd notes the op's backward before running it.
#define RF_UNPAREN(...) __VA_ARGS__
#define RF_GPU_OP(op, tensors, ...)                       \
  do {                                                    \
    ::rf::note_cuda_tensors(op, {RF_UNPAREN tensors});    \
    RF_GPU(__VA_ARGS__);                                  \
  } while (0)

namespace rf {

// note_cuda_op for tensors (an undefined one is noted as "none").
inline void note_cuda_tensors(const char* op, std::initializer_list<Tensor> ts) {
  const Shape* shapes[kMaxNotedShapes];
  int n = 0;
  for (const Tensor& t : ts)
    if (n < kMaxNotedShapes) shapes[n++] = t.defined() ? &t.shape() : nullptr;
  note_cuda_op(op, shapes, n);
}

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
