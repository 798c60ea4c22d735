#include "ops/shape.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "engine/autograd.h"
#include "ops/dispatch.h"
#include "ops/elementwise_impl.h"
#include "ops/shape_impl.h"

namespace rf {

// dst[offsets along dst_strides] = src[offsets along src_strides] over the index space `sizes`.
static void strided_copy(const Shape& sizes, float* dst, const std::vector<int64_t>& dst_strides, const float* src,
                         const std::vector<int64_t>& src_strides, Device dev) {
  StridedIndexer ix = make_strided_indexer(sizes, dst_strides, src_strides);
  int64_t n = shape_numel(sizes);
  if (dev == Device::CUDA) {
    const Shape* noted = &sizes;
    note_cuda_op("strided copy", &noted, 1);
    RF_GPU(gpu::copy_strided(ix, dst, src, n));
  } else {
    cpu::copy_strided(ix, dst, src, n);
  }
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& perm) {
  RF_CHECK((int64_t)perm.size() == x.dim(), "permute: ", perm.size(), " axes given for ", describe(x));
  std::vector<int64_t> inv(perm.size(), -1);
  for (size_t i = 0; i < perm.size(); ++i) {
    int64_t p = wrap_dim(perm[i], x.dim(), "permute");
    RF_CHECK(inv[p] < 0, "permute: axis ", perm[i], " appears twice");
    inv[p] = (int64_t)i;
  }
  auto xs = contiguous_strides(x.shape());
  Shape os(perm.size());
  std::vector<int64_t> src_strides(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    int64_t p = wrap_dim(perm[i], x.dim(), "permute");
    os[i] = x.size(p);
    src_strides[i] = xs[p];
  }
  Tensor y = empty(os, x.device());
  strided_copy(os, y.data(), contiguous_strides(os), x.data(), src_strides, x.device());
  if (needs_grad({x}))
    record(y, "permute", {x}, [inv](const Tensor& g) { return std::vector<Tensor>{permute(g, inv)}; });
  return y;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  std::vector<int64_t> perm(x.dim());
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[wrap_dim(d0, x.dim(), "transpose")], perm[wrap_dim(d1, x.dim(), "transpose")]);
  return permute(x, perm);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  int64_t d = wrap_dim(dim, x.dim(), "slice");
  int64_t n = x.size(d);
  if (start < 0) start += n;
  if (end < 0) end += n;
  end = std::min(end, n);
  RF_CHECK(step >= 1 && start >= 0 && start <= end, "slice: range ", start, ":", end, ":", step, " along dim ", dim,
           " is invalid for ", describe(x));
  Shape os = x.shape();
  os[d] = (end - start + step - 1) / step;
  auto xs = contiguous_strides(x.shape());
  auto view_strides = xs;
  view_strides[d] *= step;
  int64_t offset = start * xs[d];
  Tensor y = empty(os, x.device());
  strided_copy(os, y.data(), contiguous_strides(os), x.data() + offset, view_strides, x.device());
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "slice", {x}, [in_shape, os, view_strides, offset](const Tensor& g) {
      Tensor gx = zeros(in_shape, g.device());
      strided_copy(os, gx.data() + offset, view_strides, g.data(), contiguous_strides(os), g.device());
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  RF_CHECK(!xs.empty(), "concat: no tensors given");
  const Tensor& first = xs[0];
  int64_t d = wrap_dim(dim, first.dim(), "concat");
  Shape os = first.shape();
  os[d] = 0;
  for (const Tensor& t : xs) {
    RF_CHECK(t.device() == first.device(), "concat: inputs on different devices: ", describe(first), " and ", describe(t));
    bool ok = t.dim() == first.dim();
    for (int64_t k = 0; ok && k < t.dim(); ++k) ok = (k == d) || t.size(k) == first.size(k);
    RF_CHECK(ok, "concat along dim ", dim, ": shapes ", first.shape(), " and ", t.shape(), " differ elsewhere");
    os[d] += t.size(d);
  }
  Tensor y = empty(os, first.device());
  auto ys = contiguous_strides(os);
  int64_t at = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& t : xs) {
    strided_copy(t.shape(), y.data() + at * ys[d], ys, t.data(), contiguous_strides(t.shape()), t.device());
    sizes.push_back(t.size(d));
    at += t.size(d);
  }
  bool any = false;
  for (const Tensor& t : xs) any = any || (grad_enabled() && t.requires_grad());
  if (any) {
    record(y, "concat", xs, [sizes, d](const Tensor& g) {
      std::vector<Tensor> gs;
      int64_t s = 0;
      for (int64_t len : sizes) {
        gs.push_back(slice(g, d, s, s + len));
        s += len;
      }
      return gs;
    });
  }
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  RF_CHECK(total == x.size(d), "split: sizes add up to ", total, " but dim ", dim, " of ", describe(x), " has ", x.size(d));
  std::vector<Tensor> out;
  int64_t s = 0;
  for (int64_t len : sizes) {
    out.push_back(slice(x, d, s, s + len));
    s += len;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  int64_t d = wrap_dim(dim, x.dim(), "chunk");
  RF_CHECK(chunks >= 1 && x.size(d) % chunks == 0, "chunk: ", describe(x), " does not split into ", chunks,
           " equal parts along dim ", dim);
  return split(x, std::vector<int64_t>(chunks, x.size(d) / chunks), d);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  int64_t d = dim < 0 ? dim + x.dim() + 1 : dim;
  RF_CHECK(d >= 0 && d <= x.dim(), "unsqueeze: dim ", dim, " is out of range for ", describe(x));
  Shape s = x.shape();
  s.insert(s.begin() + d, 1);
  return x.reshape(s);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  RF_CHECK(x.size(d) == 1, "squeeze: dim ", dim, " of ", describe(x), " is not 1");
  Shape s = x.shape();
  s.erase(s.begin() + d);
  return x.reshape(s);
}

// --- padding -----------------------------------------------------------------------------------------
namespace cpu {

// Columns whose padded values are not a plain shift of the input row: those within reach of the two borders.
// Everything between is one memcpy (forward) or one vectorised add (backward).
void pad_forward(const PadGeometry& g, const float* x, float* y) {
  const int64_t ho = g.h_out(), wo = g.w_out();
#pragma omp parallel for if (g.planes * ho * wo > (1 << 15))
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t oy = 0; oy < ho; ++oy) {
      int64_t iy = pad_source(oy, g.h, g.top, g.mode);
      float* yrow = y + (p * ho + oy) * wo;
      if (iy < 0) {
        std::memset(yrow, 0, sizeof(float) * wo);
        continue;
      }
      const float* xrow = x + (p * g.h + iy) * g.w;
      auto border = [&](int64_t ox) {
        int64_t ix = pad_source(ox, g.w, g.left, g.mode);
        yrow[ox] = ix < 0 ? 0.f : xrow[ix];
      };
      for (int64_t ox = 0; ox < g.left; ++ox) border(ox);
      std::memcpy(yrow + g.left, xrow, sizeof(float) * g.w);
      for (int64_t ox = g.left + g.w; ox < wo; ++ox) border(ox);
    }
}

void pad_backward(const PadGeometry& g, const float* gy, float* gx) {
  const int64_t ho = g.h_out(), wo = g.w_out();
  // Input columns that were also copied into the padding: the left run reaches ix <= left, the right one
  // ix >= w - 1 - right (reflect mirrors, replicate repeats the edge column, zeros copies nothing).
  const int64_t left_reach = std::min<int64_t>(g.w, g.left + 1), right_from = std::max<int64_t>(left_reach, g.w - 1 - g.right);
#pragma omp parallel for if (g.planes * g.h * g.w > (1 << 15))
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* gxrow = gx + (p * g.h + iy) * g.w;
      bool first = true;
      // The same order of additions as a per-pixel gather: output rows in pad_targets' order, and within
      // each row the direct copy before the mirrored columns.
      pad_targets(iy, g.h, g.top, g.bottom, g.mode, [&](int64_t oy) {
        const float* gyrow = gy + (p * ho + oy) * wo;
        if (first)
          std::memcpy(gxrow, gyrow + g.left, sizeof(float) * g.w);
        else
          for (int64_t ix = 0; ix < g.w; ++ix) gxrow[ix] += gyrow[ix + g.left];
        first = false;
        auto extra = [&](int64_t ix) {
          pad_targets(ix, g.w, g.left, g.right, g.mode, [&](int64_t ox) {
            if (ox != ix + g.left) gxrow[ix] += gyrow[ox];
          });
        };
        for (int64_t ix = 0; ix < left_reach; ++ix) extra(ix);
        for (int64_t ix = right_from; ix < g.w; ++ix) extra(ix);
      });
    }
}

void gather_rows(const float* x, const int32_t* index, float* out, int64_t n, int64_t row) {
#pragma omp parallel for if (n * row > (1 << 15))
  for (int64_t i = 0; i < n; ++i) std::copy(x + (int64_t)index[i] * row, x + ((int64_t)index[i] + 1) * row, out + i * row);
}

void scatter_add_rows(const float* g, const int32_t* index, float* gx, int64_t n, int64_t row) {
  for (int64_t i = 0; i < n; ++i)  // serial: repeated indices add up in a fixed order
    for (int64_t c = 0; c < row; ++c) gx[(int64_t)index[i] * row + c] += g[i * row + c];
}

}  // namespace cpu

Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& index) {
  RF_CHECK(x.dim() >= 1, "gather_rows: needs [N, ...], got ", describe(x));
  const int64_t rows = x.size(0), row = rows ? x.numel() / rows : 0, n = (int64_t)index.size();
  std::vector<float> idx_bits(n);  // int32 indices carried in a float-sized tensor
  for (int64_t i = 0; i < n; ++i) {
    RF_CHECK(index[i] >= 0 && index[i] < rows, "gather_rows: index ", index[i], " is outside the ", rows, " rows of ",
             describe(x));
    int32_t v = (int32_t)index[i];
    std::memcpy(&idx_bits[i], &v, 4);
  }
  Tensor idx = from_vector(idx_bits, {n}, x.device());
  const int32_t* ip = reinterpret_cast<const int32_t*>(idx.data());
  Shape os = x.shape();
  os[0] = n;
  Tensor y = empty(os, x.device());
  if (x.is_cuda())
    RF_GPU_OP("gather_rows", (x), gpu::gather_rows(x.data(), ip, y.data(), n, row));
  else
    cpu::gather_rows(x.data(), ip, y.data(), n, row);
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "gather_rows", {x}, [idx, in_shape, n, row](const Tensor& g) {
      Tensor gx = zeros(in_shape, g.device());
      const int32_t* ip = reinterpret_cast<const int32_t*>(idx.data());
      if (g.is_cuda())
        RF_GPU(gpu::scatter_add_rows(g.data(), ip, gx.data(), n, row));
      else
        cpu::scatter_add_rows(g.data(), ip, gx.data(), n, row);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

Tensor pad2d(const Tensor& x, int64_t left, int64_t right, int64_t top, int64_t bottom, PadMode mode) {
  RF_CHECK(x.dim() >= 2, "pad2d: needs [..., H, W], got ", describe(x));
  RF_CHECK(left >= 0 && right >= 0 && top >= 0 && bottom >= 0, "pad2d: negative padding");
  PadGeometry g{x.numel() / (x.size(-1) * x.size(-2)), x.size(-2), x.size(-1), top, bottom, left, right, (int)mode};
  if (mode == PadMode::Reflect)
    RF_CHECK(std::max(top, bottom) < g.h && std::max(left, right) < g.w, "pad2d: reflect padding (", left, ", ", right,
             ", ", top, ", ", bottom, ") must be smaller than the input ", describe(x));
  if (mode == PadMode::Replicate) RF_CHECK(g.h > 0 && g.w > 0, "pad2d: replicate padding of an empty input");
  Shape os = x.shape();
  os[os.size() - 2] = g.h_out();
  os[os.size() - 1] = g.w_out();
  Tensor y = empty(os, x.device());
  if (x.is_cuda())
    RF_GPU_OP("pad2d", (x), gpu::pad_forward(g, x.data(), y.data()));
  else
    cpu::pad_forward(g, x.data(), y.data());
  if (needs_grad({x})) {
    Shape in_shape = x.shape();
    record(y, "pad2d", {x}, [g, in_shape](const Tensor& gy) {
      Tensor gx = empty(in_shape, gy.device());
      if (gy.is_cuda())
        RF_GPU(gpu::pad_backward(g, gy.data(), gx.data()));
      else
        cpu::pad_backward(g, gy.data(), gx.data());
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

}  // namespace rf
