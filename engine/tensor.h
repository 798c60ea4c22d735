// Tensor: a float32 array in NCHW (row-major, contiguous) order on the CPU or the GPU.
//
// A Tensor is a cheap handle (shared_ptr) to a TensorImpl, which points into a refcounted Storage.
// Views are kept simple on purpose: reshape and slicing along the first dimension share storage;
// everything else (permute, general slicing, padding) copies. Every tensor is therefore contiguous,
// which keeps every kernel a plain loop over memory.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/device.h"
#include "engine/error.h"

namespace rf {

struct Storage {
  Device device;
  void* ptr = nullptr;
  size_t bytes = 0;
  Storage(Device d, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // first element, counted in floats from storage->ptr
  Shape shape;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;     // the op that made this tensor (null for leaves)
};

int64_t shape_numel(const Shape& s);
// Row-major element strides of a contiguous tensor of shape s.
std::vector<int64_t> contiguous_strides(const Shape& s);
// Turn a possibly negative dimension index into 0..nd-1, or throw naming `op`.
int64_t wrap_dim(int64_t d, int64_t nd, const char* op);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return (bool)impl_; }
  const Shape& shape() const { return impl_->shape; }
  int64_t dim() const { return (int64_t)impl_->shape.size(); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return shape_numel(impl_->shape); }
  Device device() const { return impl_->storage->device; }
  bool is_cuda() const { return device() == Device::CUDA; }
  float* data() const { return static_cast<float*>(impl_->storage->ptr) + impl_->offset; }

  // Host copies of the values (synchronises with the GPU).
  std::vector<float> to_vector() const;
  float item() const;  // for one-element tensors

  // Differentiable copies and views.
  Tensor to(Device d) const;
  Tensor cpu() const { return to(Device::CPU); }
  Tensor cuda() const { return to(Device::CUDA); }
  Tensor clone() const;
  Tensor reshape(const Shape& s) const;  // one entry may be -1
  Tensor flatten() const { return reshape({numel()}); }
  Tensor narrow0(int64_t start, int64_t length) const;  // rows start..start+length of dim 0, shared
  Tensor operator[](int64_t i) const;                  // row i of dim 0, dimension dropped, shared

  // Autograd.
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& set_requires_grad(bool on = true);
  bool is_leaf() const { return !impl_->grad_fn; }
  Tensor grad() const { return impl_->grad ? Tensor(impl_->grad) : Tensor(); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  void zero_grad() { impl_->grad.reset(); }
  void backward(const Tensor& grad_output = Tensor()) const;
  Tensor detach() const;  // same storage, cut from the graph

  // In-place data operations, outside autograd (for initialisers, optimizers, buffers).
  Tensor& fill_(float v);
  Tensor& copy_(const Tensor& src);  // same numel; devices may differ
  Tensor& add_(const Tensor& src);   // same shape and device (gradient accumulation)
  // Move this tensor's data to another device in place, keeping its identity (for Module::to).
  void move_to_(Device d);

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Creation.
Tensor empty(const Shape& s, Device d = Device::CPU);
Tensor zeros(const Shape& s, Device d = Device::CPU);
Tensor ones(const Shape& s, Device d = Device::CPU);
Tensor full(const Shape& s, float v, Device d = Device::CPU);
Tensor scalar(float v, Device d = Device::CPU);  // shape {}
Tensor from_vector(const std::vector<float>& v, const Shape& s, Device d = Device::CPU);
Tensor arange(int64_t n, Device d = Device::CPU);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);

// a + b for two tensors of the same shape and device, outside autograd (gradient sums).
Tensor sum_of(const Tensor& a, const Tensor& b);

// Raw copy of bytes between any two devices.
void copy_bytes(Device dst_dev, void* dst, Device src_dev, const void* src, size_t bytes);

std::string describe(const Tensor& t);  // "cpu [2, 3, 4]"

}  // namespace rf
