#include "engine/tensor.h"

#include <algorithm>
#include <cstring>

#include "engine/allocator.h"
#include "engine/autograd.h"

#ifdef REFOCUS_WITH_CUDA
#include <cuda_runtime.h>

#include "engine/cuda_check.h"
#include "engine/tensor_gpu.h"
#endif

namespace rf {

Storage::Storage(Device d, size_t n) : device(d), ptr(device_alloc(d, n)), bytes(n) {}
Storage::~Storage() { device_free(device, ptr, bytes); }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t v : s) {
    RF_CHECK(v >= 0, "shape ", s, " has a negative size");
    RF_CHECK(!__builtin_mul_overflow(n, v, &n), "shape ", s, " has more elements than a 64-bit count can hold");
  }
  return n;
}

std::vector<int64_t> contiguous_strides(const Shape& s) {
  std::vector<int64_t> st(s.size());
  int64_t run = 1;
  for (int d = (int)s.size() - 1; d >= 0; --d) {
    st[d] = run;
    run *= s[d];
  }
  return st;
}

int64_t wrap_dim(int64_t d, int64_t nd, const char* op) {
  int64_t w = d < 0 ? d + nd : d;
  RF_CHECK(w >= 0 && w < std::max<int64_t>(nd, 1), op, ": dimension ", d, " is out of range for a ", nd,
           "-d tensor");
  return w;
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return cat(device_name(t.device()), " ", t.shape());
}

int64_t Tensor::size(int64_t d) const { return impl_->shape[wrap_dim(d, dim(), "size")]; }

void copy_bytes(Device dst_dev, void* dst, Device src_dev, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev == Device::CPU && src_dev == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef REFOCUS_WITH_CUDA
  cudaMemcpyKind kind = dst_dev == Device::CPU   ? cudaMemcpyDeviceToHost
                        : src_dev == Device::CPU ? cudaMemcpyHostToDevice
                                                 : cudaMemcpyDeviceToDevice;
  RF_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
#else
  throw Error("copy to or from a CUDA tensor, but refocus was built without CUDA");
#endif
}

Tensor empty(const Shape& s, Device d) {
  for (int64_t v : s) RF_CHECK(v >= 0, "cannot make a tensor of shape ", s, ": negative size");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(d, sizeof(float) * (size_t)shape_numel(s));
  impl->shape = s;
  return Tensor(impl);
}

Tensor full(const Shape& s, float v, Device d) { return empty(s, d).fill_(v); }
Tensor zeros(const Shape& s, Device d) { return full(s, 0.f, d); }
Tensor ones(const Shape& s, Device d) { return full(s, 1.f, d); }
Tensor scalar(float v, Device d) { return full({}, v, d); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.device()); }

Tensor from_vector(const std::vector<float>& v, const Shape& s, Device d) {
  RF_CHECK((int64_t)v.size() == shape_numel(s), "from_vector: ", v.size(), " values do not fill shape ", s);
  Tensor t = empty(s, d);
  copy_bytes(d, t.data(), Device::CPU, v.data(), v.size() * sizeof(float));
  return t;
}

Tensor arange(int64_t n, Device d) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (float)i;
  return from_vector(v, {n}, d);
}

Tensor& Tensor::fill_(float v) {
  int64_t n = numel();
  if (device() == Device::CPU) {
    std::fill(data(), data() + n, v);
  } else {
#ifdef REFOCUS_WITH_CUDA
    gpu::fill(data(), n, v);
#endif
  }
  return *this;
}

Tensor& Tensor::add_(const Tensor& src) {
  RF_CHECK(src.shape() == shape() && src.device() == device(), "add_: ", describe(src), " cannot be added to ",
           describe(*this));
  int64_t n = numel();
  if (device() == Device::CPU) {
    float* d = data();
    const float* s = src.data();
#pragma omp parallel for if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  } else {
#ifdef REFOCUS_WITH_CUDA
    gpu::add_inplace(data(), src.data(), n);
#endif
  }
  return *this;
}

Tensor sum_of(const Tensor& a, const Tensor& b) {
  Tensor out = a.detach().clone();
  return out.add_(b);
}

Tensor& Tensor::copy_(const Tensor& src) {
  RF_CHECK(src.numel() == numel(), "copy_: source ", describe(src), " and destination ", describe(*this),
           " differ in size");
  copy_bytes(device(), data(), src.device(), src.data(), sizeof(float) * (size_t)numel());
  return *this;
}

void Tensor::move_to_(Device d) {
  if (device() == d) return;
  auto st = std::make_shared<Storage>(d, sizeof(float) * (size_t)numel());
  copy_bytes(d, st->ptr, device(), data(), sizeof(float) * (size_t)numel());
  impl_->storage = st;
  impl_->offset = 0;
  if (impl_->grad) Tensor(impl_->grad).move_to_(d);
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> v((size_t)numel());
  copy_bytes(Device::CPU, v.data(), device(), data(), v.size() * sizeof(float));
  return v;
}

float Tensor::item() const {
  RF_CHECK(numel() == 1, "item() needs a one-element tensor, got ", describe(*this));
  return to_vector()[0];
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  return Tensor(impl);
}

Tensor& Tensor::set_requires_grad(bool on) {
  RF_CHECK(is_leaf(), "set_requires_grad: only leaf tensors (not results of ops) can be marked");
  impl_->requires_grad = on;
  return *this;
}

void Tensor::backward(const Tensor& grad_output) const { rf::backward(*this, grad_output); }

Tensor Tensor::to(Device d) const {
  if (device() == d) return *this;
  Tensor out = empty(shape(), d);
  out.copy_(*this);
  Device src = device();
  if (needs_grad({*this}))
    record(out, "to", {*this}, [src](const Tensor& g) { return std::vector<Tensor>{g.to(src)}; });
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty_like(*this);
  out.copy_(*this);
  if (needs_grad({*this})) record(out, "clone", {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor Tensor::reshape(const Shape& s) const {
  Shape ns = s;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < ns.size(); ++i) {
    if (ns[i] == -1) {
      RF_CHECK(infer < 0, "reshape: more than one -1 in ", s);
      infer = (int64_t)i;
    } else {
      known *= ns[i];
    }
  }
  if (infer >= 0) {
    RF_CHECK(known > 0 && numel() % known == 0, "reshape: cannot reshape ", shape(), " to ", s);
    ns[infer] = numel() / known;
  }
  RF_CHECK(shape_numel(ns) == numel(), "reshape: cannot reshape ", shape(), " (", numel(), " elements) to ",
           s);
  Tensor out = detach();
  out.impl()->shape = ns;
  if (needs_grad({*this})) {
    Shape in_shape = shape();
    record(out, "reshape", {*this}, [in_shape](const Tensor& g) { return std::vector<Tensor>{g.reshape(in_shape)}; });
  }
  return out;
}

Tensor Tensor::narrow0(int64_t start, int64_t length) const {
  RF_CHECK(dim() >= 1 && start >= 0 && length >= 0 && start + length <= size(0), "narrow0: rows ", start,
           "..", start + length, " are outside ", describe(*this));
  Tensor out = detach();
  int64_t row = size(0) ? numel() / size(0) : 0;
  out.impl()->offset += start * row;
  out.impl()->shape[0] = length;
  if (needs_grad({*this})) {
    Shape in_shape = shape();
    record(out, "narrow0", {*this}, [in_shape, start, row](const Tensor& g) {
      Tensor gi = zeros(in_shape, g.device());
      copy_bytes(g.device(), gi.data() + start * row, g.device(), g.data(), sizeof(float) * (size_t)g.numel());
      return std::vector<Tensor>{gi};
    });
  }
  return out;
}

Tensor Tensor::operator[](int64_t i) const {
  RF_CHECK(dim() >= 1, "indexing needs at least one dimension, got ", describe(*this));
  int64_t w = i < 0 ? i + size(0) : i;
  RF_CHECK(w >= 0 && w < size(0), "index ", i, " is out of range for ", describe(*this));
  Shape rest(shape().begin() + 1, shape().end());
  return narrow0(w, 1).reshape(rest);
}

}  // namespace rf
