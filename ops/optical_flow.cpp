#include "ops/optical_flow.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/sample.h"
#include "ops/shape.h"

namespace rf {

namespace {

struct Image {
  int64_t h = 0, w = 0;
  std::vector<float> v;
  float at(int64_t y, int64_t x) const { return v[std::clamp<int64_t>(y, 0, h - 1) * w + std::clamp<int64_t>(x, 0, w - 1)]; }
  float bilinear(float y, float x) const {
    y = std::clamp(y, 0.f, (float)(h - 1));
    x = std::clamp(x, 0.f, (float)(w - 1));
    const int64_t y0 = (int64_t)std::floor(y), x0 = (int64_t)std::floor(x);
    const float fy = y - (float)y0, fx = x - (float)x0;
    return (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
  }
};

Image half(const Image& a) {
  Image b;
  b.h = (a.h + 1) / 2;
  b.w = (a.w + 1) / 2;
  b.v.resize(b.h * b.w);
  for (int64_t y = 0; y < b.h; ++y)
    for (int64_t x = 0; x < b.w; ++x)
      b.v[y * b.w + x] = 0.25f * (a.at(2 * y, 2 * x) + a.at(2 * y, 2 * x + 1) + a.at(2 * y + 1, 2 * x) + a.at(2 * y + 1, 2 * x + 1));
  return b;
}

// A flow component at a finer level: bilinear resampling, values scaled by the size ratio.
Image upsample_flow(const Image& f, int64_t h, int64_t w, float scale) {
  Image o;
  o.h = h;
  o.w = w;
  o.v.resize(h * w);
  const float sy = (float)f.h / (float)h, sx = (float)f.w / (float)w;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) o.v[y * w + x] = scale * f.bilinear(((float)y + 0.5f) * sy - 0.5f, ((float)x + 0.5f) * sx - 0.5f);
  return o;
}

// Horn-Schunck at one level, refining (u, v) in place.
void refine(const Image& i1, const Image& i2, Image& u, Image& v, const FlowOptions& o) {
  const int64_t h = i1.h, w = i1.w, n = h * w;
  std::vector<float> ix(n), iy(n), it(n), u0(n), v0(n), ub(n), vb(n);
  const float a2 = o.alpha * o.alpha;
  for (int k = 0; k < o.warps; ++k) {
    Image i2w = i1;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) i2w.v[y * w + x] = i2.bilinear((float)y + v.v[y * w + x], (float)x + u.v[y * w + x]);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const int64_t p = y * w + x;
        ix[p] = 0.25f * (i1.at(y, x + 1) - i1.at(y, x - 1) + i2w.at(y, x + 1) - i2w.at(y, x - 1));
        iy[p] = 0.25f * (i1.at(y + 1, x) - i1.at(y - 1, x) + i2w.at(y + 1, x) - i2w.at(y - 1, x));
        it[p] = i2w.v[p] - i1.v[p];
      }
    u0 = u.v;
    v0 = v.v;
    for (int iter = 0; iter < o.iterations; ++iter) {
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {  // Horn and Schunck's weighted 3 x 3 mean (1/6 sides, 1/12 corners)
          const int64_t p = y * w + x;
          ub[p] = (u.at(y - 1, x) + u.at(y + 1, x) + u.at(y, x - 1) + u.at(y, x + 1)) / 6.f +
                  (u.at(y - 1, x - 1) + u.at(y - 1, x + 1) + u.at(y + 1, x - 1) + u.at(y + 1, x + 1)) / 12.f;
          vb[p] = (v.at(y - 1, x) + v.at(y + 1, x) + v.at(y, x - 1) + v.at(y, x + 1)) / 6.f +
                  (v.at(y - 1, x - 1) + v.at(y - 1, x + 1) + v.at(y + 1, x - 1) + v.at(y + 1, x + 1)) / 12.f;
        }
      for (int64_t p = 0; p < n; ++p) {
        const float r = ix[p] * (ub[p] - u0[p]) + iy[p] * (vb[p] - v0[p]) + it[p];
        const float q = r / (a2 + ix[p] * ix[p] + iy[p] * iy[p]);
        u.v[p] = ub[p] - ix[p] * q;
        v.v[p] = vb[p] - iy[p] * q;
      }
    }
  }
}

Image luminance(const std::vector<float>& img, int64_t c, int64_t h, int64_t w, int64_t b) {
  Image o;
  o.h = h;
  o.w = w;
  o.v.assign(h * w, 0.f);
  const float k3[3] = {0.299f, 0.587f, 0.114f};
  for (int64_t ch = 0; ch < c; ++ch) {
    const float k = c == 3 ? k3[ch] : 1.f / (float)c;
    for (int64_t p = 0; p < h * w; ++p) o.v[p] += k * img[((b * c) + ch) * h * w + p];
  }
  return o;
}

// The least-squares fit a + b x + c y of a field over the pixels at least `margin` from the border, in place.
void fit_affine(Image& f, int64_t margin) {
  double ata[3][3] = {}, atb[3] = {};
  for (int64_t y = margin; y < f.h - margin; ++y)
    for (int64_t x = margin; x < f.w - margin; ++x) {
      const double row[3] = {1.0, (double)x, (double)y};
      for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) ata[r][c] += row[r] * row[c];
        atb[r] += row[r] * f.v[y * f.w + x];
      }
    }
  // Gaussian elimination of the 3 x 3 normal equations (positive definite when the region is 2 x 2 or more).
  for (int i = 0; i < 3; ++i)
    for (int r = i + 1; r < 3; ++r) {
      const double k = ata[r][i] / ata[i][i];
      for (int c = i; c < 3; ++c) ata[r][c] -= k * ata[i][c];
      atb[r] -= k * atb[i];
    }
  double p[3];
  for (int i = 2; i >= 0; --i) {
    double s = atb[i];
    for (int c = i + 1; c < 3; ++c) s -= ata[i][c] * p[c];
    p[i] = s / ata[i][i];
  }
  for (int64_t y = 0; y < f.h; ++y)
    for (int64_t x = 0; x < f.w; ++x) f.v[y * f.w + x] = (float)(p[0] + p[1] * (double)x + p[2] * (double)y);
}

}  // namespace

FlowOptions pair_alignment_flow() {
  FlowOptions o;
  o.alpha = 0.25f;
  o.iterations = 100;
  o.global_affine = true;
  return o;
}

Tensor estimate_flow(const Tensor& from, const Tensor& to, const FlowOptions& o) {
  RF_CHECK(from.dim() == 4 && from.shape() == to.shape(), "estimate_flow: images ", describe(from), " and ", describe(to),
           " must be the same [B, C, H, W]");
  NoGrad ng;
  const int64_t b = from.size(0), c = from.size(1), h = from.size(2), w = from.size(3);
  std::vector<float> a = from.to_vector(), z = to.to_vector(), flow(b * 2 * h * w);
#pragma omp parallel for schedule(dynamic)
  for (int64_t bi = 0; bi < b; ++bi) {
    std::vector<Image> p1 = {luminance(a, c, h, w, bi)}, p2 = {luminance(z, c, h, w, bi)};
    while (std::min(p1.back().h, p1.back().w) >= 2 * o.min_side) {
      p1.push_back(half(p1.back()));
      p2.push_back(half(p2.back()));
    }
    Image u, v;
    for (int64_t lvl = (int64_t)p1.size() - 1; lvl >= 0; --lvl) {
      const Image& i1 = p1[lvl];
      if (u.v.empty()) {
        u = v = i1;
        std::fill(u.v.begin(), u.v.end(), 0.f);
        std::fill(v.v.begin(), v.v.end(), 0.f);
      } else {
        u = upsample_flow(u, i1.h, i1.w, (float)i1.w / (float)u.w);
        v = upsample_flow(v, i1.h, i1.w, (float)i1.h / (float)v.h);
      }
      refine(i1, p2[lvl], u, v, o);
    }
    if (o.global_affine) {
      const int64_t margin = std::min(h, w) >= 32 ? std::min(h, w) / 16 : 0;
      fit_affine(u, margin);
      fit_affine(v, margin);
    }
    std::copy(u.v.begin(), u.v.end(), flow.begin() + (bi * 2) * h * w);
    std::copy(v.v.begin(), v.v.end(), flow.begin() + (bi * 2 + 1) * h * w);
  }
  return from_vector(flow, {b, 2, h, w}, from.device());
}

Tensor warp(const Tensor& img, const Tensor& flow) {
  const int64_t b = img.size(0), h = img.size(2), w = img.size(3);
  RF_CHECK(flow.shape() == Shape({b, 2, h, w}), "warp: flow ", describe(flow), " should be [", b, ", 2, ", h, ", ", w, "]");
  // Sampling positions p + flow in grid_sample's coordinates (align_corners: -1 and 1 are the edge pixels' centres).
  std::vector<float> base(2 * h * w);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      base[y * w + x] = (float)x;
      base[h * w + y * w + x] = (float)y;
    }
  Tensor pos = flow + from_vector(base, {1, 2, h, w}, img.device());
  const float sx = w > 1 ? 2.f / (float)(w - 1) : 0.f, sy = h > 1 ? 2.f / (float)(h - 1) : 0.f;
  Tensor scale = from_vector({sx, sy}, {1, 2, 1, 1}, img.device());
  Tensor grid = permute(pos * scale - 1.f, {0, 2, 3, 1});  // [B, H, W, 2] as (x, y)
  return grid_sample(img, grid, true, GridPadding::Border);
}

Tensor warp_bicubic(const Tensor& img, const Tensor& flow) {
  const int64_t b = img.size(0), h = img.size(2), w = img.size(3), hw = h * w;
  RF_CHECK(flow.shape() == Shape({b, 2, h, w}), "warp_bicubic: flow ", describe(flow), " should be [", b, ", 2, ", h, ", ", w, "]");
  RF_CHECK(!flow.requires_grad(), "warp_bicubic: differentiable in the image only; the flow ", describe(flow), " requires a gradient");
  // Keys' cubic convolution weights of the 4 taps at offsets -1, 0, 1, 2 from floor(position), for fraction t.
  auto cubic = [](float t, float* wt) {
    const float a = -0.75f;
    auto near = [&](float d) { return ((a + 2.f) * d - (a + 3.f)) * d * d + 1.f; };  // |d| <= 1
    auto far = [&](float d) { return ((a * d - 5.f * a) * d + 8.f * a) * d - 4.f * a; };  // 1 < |d| < 2
    wt[0] = far(t + 1.f);
    wt[1] = near(t);
    wt[2] = near(1.f - t);
    wt[3] = far(2.f - t);
  };
  // The 16 taps of every position side by side along the width ([B, H, 16 W]: tap t = 4 j + i of pixel x at
  // column t W + x), so that one grid_sample gathers them all: bilinear samples at whole-pixel positions, each
  // clamped to the image (border taps), are the pixels themselves.
  const std::vector<float> f = flow.to_vector();
  const float sx = w > 1 ? 2.f / (float)(w - 1) : 0.f, sy = h > 1 ? 2.f / (float)(h - 1) : 0.f;
  std::vector<float> grid(b * h * 16 * w * 2), weight(b * h * 16 * w);
  for (int64_t n = 0; n < b; ++n)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const float px = (float)x + f[(n * 2) * hw + y * w + x], py = (float)y + f[(n * 2 + 1) * hw + y * w + x];
        const float x0 = std::floor(px), y0 = std::floor(py);
        float cx[4], cy[4];
        cubic(px - x0, cx);
        cubic(py - y0, cy);
        for (int j = 0; j < 4; ++j)
          for (int i = 0; i < 4; ++i) {
            const int64_t at = ((n * h + y) * 16 + 4 * j + i) * w + x;
            grid[at * 2] = std::min(std::max(x0 + (float)(i - 1), 0.f), (float)(w - 1)) * sx - 1.f;
            grid[at * 2 + 1] = std::min(std::max(y0 + (float)(j - 1), 0.f), (float)(h - 1)) * sy - 1.f;
            weight[at] = cx[i] * cy[j];
          }
      }
  const Device dev = img.device();
  Tensor taps = grid_sample(img, from_vector(grid, {b, h, 16 * w, 2}, dev), true, GridPadding::Border);
  Tensor weighted = taps * from_vector(weight, {b, 1, h, 16 * w}, dev);  // [B, C, H, 16 W]
  return sum(weighted.reshape({b, img.size(1), h, 16, w}), {3});
}

}  // namespace rf
