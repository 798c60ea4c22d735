// Kernel layer of padding. The backward is written as a gather (each input pixel sums the output
// pixels that copied it), so it is deterministic on both devices without atomics.
#pragma once
#include <cstdint>

#include "engine/error.h"

namespace rf {

enum class PadMode;

struct PadGeometry {
  int64_t planes, h, w;  // input [planes, h, w]
  int64_t top, bottom, left, right;
  int mode;  // PadMode as int
  RF_HD int64_t h_out() const { return h + top + bottom; }
  RF_HD int64_t w_out() const { return w + left + right; }
};

// Source coordinate along one axis for output coordinate o (-1: zero padding).
RF_HD int64_t pad_source(int64_t o, int64_t n, int64_t before, int mode) {
  int64_t i = o - before;
  if (i >= 0 && i < n) return i;
  if (mode == 0) return -1;             // zeros
  if (mode == 1) return i < 0 ? -i : 2 * (n - 1) - i;  // reflect
  return i < 0 ? 0 : n - 1;             // replicate
}

// Call visit(o) for every output coordinate o along one axis that copied input coordinate i: the
// direct copy, plus a mirror on each side (reflect) or the whole padded run at an edge (replicate).
template <class F>
RF_HD void pad_targets(int64_t i, int64_t n, int64_t before, int64_t after, int mode, F visit) {
  visit(i + before);
  if (mode == 1) {
    if (i >= 1 && i <= before) visit(before - i);
    int64_t k = n - 1 - i;  // mirrored to the right at distance k past the last input
    if (k >= 1 && k <= after) visit(before + n - 1 + k);
  } else if (mode == 2) {
    if (i == 0)
      for (int64_t o = 0; o < before; ++o) visit(o);
    if (i == n - 1)
      for (int64_t o = before + n; o < before + n + after; ++o) visit(o);
  }
}

#define RF_PAD_KERNELS                                                                                  \
  void pad_forward(const PadGeometry& g, const float* x, float* y);                                   \
  void pad_backward(const PadGeometry& g, const float* gy, float* gx);                                \
  /* out[i, :] = x[index[i], :] for rows of `row` floats; the backward accumulates (gx zeroed first) */ \
  void gather_rows(const float* x, const int32_t* index, float* out, int64_t n, int64_t row);         \
  void scatter_add_rows(const float* g, const int32_t* index, float* gx, int64_t n, int64_t row);

namespace cpu {
RF_PAD_KERNELS
}
namespace gpu {
RF_PAD_KERNELS
}
#undef RF_PAD_KERNELS

}  // namespace rf
