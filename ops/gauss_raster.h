// The 2-D Gaussian blob rasterizer of the GS paper (Eq. 1-4): an image is the plain sum of blobs,
//   C(x) = sum_i c_i * o_i * exp(-1/2 d^T Sigma_i^-1 d),  d = x - u_i,  Sigma_i = R(theta_i) S S^T R^T,
// with no sorting and no transmittance. Each blob reaches to its 3-sigma ellipse (q = d^T Sigma^-1 d <= 9):
// with a plain sum, many faint blobs add up, so no blob is dropped for being faint (3DGS's 1/255 rule).
// Pixel (px, py) is the unit square [px, px+1) x [py, py+1), sampled at its centre (px + 0.5, py + 0.5),
// so positions u are in pixels with the image spanning [0, W] x [0, H].
#pragma once
#include "engine/tensor.h"

namespace rf {

struct Blobs {
  Tensor means;    // [N, 2]  (x, y) in pixels
  Tensor theta;    // [N]     rotation (radians)
  Tensor scales;   // [N, 2]  s1, s2 in pixels (> 0): standard deviations along the rotated axes
  Tensor colors;   // [N, 3]
  Tensor opacity;  // [N]
  int64_t size() const { return means.defined() ? means.size(0) : 0; }
};

// Differentiable in every blob parameter. Returns [3, height, width]. `sigmas` moves the cutoff (tests use
// a wide one, where the image is smooth in the parameters, for finite differences).
Tensor rasterize(const Blobs& b, int64_t height, int64_t width, float sigmas = 3.f);

// Statistics of the last rasterisation on this thread (for tests and benchmarks).
struct RasterStats {
  int64_t tiles = 0;
  int64_t max_blobs_in_a_tile = 0;
  int64_t tile_blob_pairs = 0;
};
RasterStats last_raster_stats();

}  // namespace rf
