// Synthetic defocus pairs. The scene: leaves (discs, ellipses, rectangles, polygons) with radii drawn
// from p(r) ~ r^-3 (the dead-leaves model's scale invariance), textured, each on one of `planes` depth
// planes spaced evenly in inverse depth. The camera: a thin lens focused at z_f, whose circle of
// confusion has radius r(z) = R * |1/z_f - 1/z| / max |1/z_f - 1/z_k| — affine in inverse depth, as the
// GS paper's L_reg assumes — with R the image's largest CoC radius. Rendering: each plane's premultiplied
// colour and coverage are blurred with that plane's PSF and composited far to near in linear light
// (C = P' + (1 - A') C), so a sharp foreground never picks up blur from the background behind it.
#include "data/synth.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "data/image.h"
#include "engine/rng.h"

namespace rf {

namespace {

constexpr float kPi = 3.14159265358979f;
constexpr float kDpddWidth = 1680.f;

struct RGB {
  float r, g, b;
};

RGB mix(RGB a, RGB b, float t) { return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t}; }

RGB hsv_to_rgb(float h, float s, float v) {
  float h6 = std::fmod(h, 1.f) * 6.f, f = h6 - std::floor(h6);
  float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  switch ((int)h6 % 6) {
    case 0: return {v, t, p};
    case 1: return {q, v, p};
    case 2: return {p, v, t};
    case 3: return {p, q, v};
    case 4: return {t, p, v};
    default: return {v, p, q};
  }
}

// Colours skewed like natural images: mostly muted, a spread of brightness.
RGB natural_colour(Generator& g) {
  return hsv_to_rgb(g.uniform(), 0.9f * std::pow(g.uniform(), 1.4f), 0.06f + 0.94f * std::pow(g.uniform(), 0.8f));
}

enum Shape { kDisc, kEllipse, kRect, kPolygon };
enum Texture { kFlat, kGradient, kStripes, kNoise, kChecker, kRings };

struct Leaf {
  int plane = 0, shape = kDisc, sides = 5, texture = kFlat;
  float cx = 0, cy = 0, r = 1, aspect = 1, angle = 0;
  RGB c1{}, c2{};
  float freq = 0.1f, tex_angle = 0, phase = 0, noise_scale = 1, noise_ox = 0, noise_oy = 0;
};

// A tileable 1/f-like noise tile (octaves of bilinearly interpolated lattice noise), values in [0, 1].
struct NoiseTile {
  static constexpr int N = 128;
  std::vector<float> v = std::vector<float>(N * N, 0.f);
  explicit NoiseTile(Generator& g) {
    float amp = 1.f, total = 0.f;
    for (int cells = 4; cells <= 64; cells *= 2, amp *= 0.6f) {
      std::vector<float> lattice(cells * cells);
      for (float& x : lattice) x = g.uniform();
      for (int y = 0; y < N; ++y)
        for (int x = 0; x < N; ++x) {
          float fx = (float)x * cells / N, fy = (float)y * cells / N;
          int x0 = (int)fx, y0 = (int)fy;
          float tx = fx - x0, ty = fy - y0;
          auto L = [&](int a, int b) { return lattice[(b % cells) * cells + (a % cells)]; };
          float top = L(x0, y0) * (1 - tx) + L(x0 + 1, y0) * tx, bot = L(x0, y0 + 1) * (1 - tx) + L(x0 + 1, y0 + 1) * tx;
          v[y * N + x] += amp * (top * (1 - ty) + bot * ty);
        }
      total += amp;
    }
    float lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    for (float& x : v) x = (x - lo) / std::max(hi - lo, 1e-6f);
  }
  float at(float x, float y) const {
    float fx = x - std::floor(x / N) * N, fy = y - std::floor(y / N) * N;
    int x0 = (int)fx % N, y0 = (int)fy % N, x1 = (x0 + 1) % N, y1 = (y0 + 1) % N;
    float tx = fx - std::floor(fx), ty = fy - std::floor(fy);
    return (v[y0 * N + x0] * (1 - tx) + v[y0 * N + x1] * tx) * (1 - ty) + (v[y1 * N + x0] * (1 - tx) + v[y1 * N + x1] * tx) * ty;
  }
};

Leaf random_leaf(Generator& g, int plane, float r_min, float r_max, int64_t h, int64_t w) {
  Leaf l;
  l.plane = plane;
  l.shape = (int)g.randint(4);
  l.sides = 3 + (int)g.randint(4);
  float u = g.uniform();  // p(r) ~ r^-3 on [r_min, r_max], by inverting its CDF
  l.r = 1.f / std::sqrt(1.f / (r_min * r_min) - u * (1.f / (r_min * r_min) - 1.f / (r_max * r_max)));
  l.cx = g.uniform(-0.1f, 1.1f) * w;
  l.cy = g.uniform(-0.1f, 1.1f) * h;
  l.aspect = g.uniform(0.3f, 1.f);
  l.angle = g.uniform(0.f, kPi);
  l.c1 = natural_colour(g);
  l.c2 = g.uniform() < 0.5f ? natural_colour(g) : mix(l.c1, natural_colour(g), 0.4f);
  l.texture = l.r < 4.f ? kFlat : (int)g.randint(6);
  l.freq = std::exp(g.uniform(std::log(0.04f), std::log(0.45f)));  // cycles per pixel
  l.tex_angle = g.uniform(0.f, kPi);
  l.phase = g.uniform(0.f, 2 * kPi);
  l.noise_scale = std::exp(g.uniform(std::log(0.3f), std::log(3.f)));
  l.noise_ox = g.uniform(0.f, 128.f);
  l.noise_oy = g.uniform(0.f, 128.f);
  return l;
}

// Signed distance (pixels, negative inside) from the leaf's outline.
float leaf_distance(const Leaf& l, float x, float y) {
  float dx = x - l.cx, dy = y - l.cy;
  float c = std::cos(l.angle), s = std::sin(l.angle);
  float u = c * dx + s * dy, v = -s * dx + c * dy;
  switch (l.shape) {
    case kDisc: return std::sqrt(dx * dx + dy * dy) - l.r;
    case kEllipse: {
      float a = l.r, b = l.r * l.aspect;
      return (std::sqrt((u / a) * (u / a) + (v / b) * (v / b)) - 1.f) * b;
    }
    case kRect: return std::max(std::fabs(u) - l.r, std::fabs(v) - l.r * l.aspect);
    default: {  // regular polygon
      float apothem = l.r * std::cos(kPi / l.sides), d = -1e30f;
      for (int k = 0; k < l.sides; ++k) {
        float a = l.angle + 2 * kPi * k / l.sides;
        d = std::max(d, dx * std::cos(a) + dy * std::sin(a) - apothem);
      }
      return d;
    }
  }
}

RGB leaf_colour(const Leaf& l, const NoiseTile& noise, float x, float y) {
  float u = (x - l.cx) * std::cos(l.tex_angle) + (y - l.cy) * std::sin(l.tex_angle);
  float t = 0.f;
  switch (l.texture) {
    case kFlat: t = 0.f; break;
    case kGradient: t = std::fmin(std::fmax(0.5f + 0.5f * u / l.r, 0.f), 1.f); break;
    case kStripes: t = 0.5f + 0.5f * std::sin(2 * kPi * l.freq * u + l.phase); break;
    case kNoise: t = noise.at(x * l.noise_scale + l.noise_ox, y * l.noise_scale + l.noise_oy); break;
    case kChecker: {
      float cell = 0.5f / l.freq;
      t = (((int)std::floor((x - l.cx) / cell) + (int)std::floor((y - l.cy) / cell)) & 1) ? 1.f : 0.f;
      break;
    }
    case kRings: {
      float d = std::sqrt((x - l.cx) * (x - l.cx) + (y - l.cy) * (y - l.cy));
      t = 0.5f + 0.5f * std::sin(2 * kPi * l.freq * d + l.phase);
      break;
    }
  }
  RGB c = mix(l.c1, l.c2, t);
  return {srgb_to_linear(c.r), srgb_to_linear(c.g), srgb_to_linear(c.b)};
}

// Paint one leaf "over" a plane's premultiplied colour P (3 x HW) and coverage A (HW).
void paint_leaf(const Leaf& l, const NoiseTile& noise, std::vector<float>& P, std::vector<float>& A, int64_t h,
                int64_t w) {
  float reach = l.r * 1.5f + 2.f;
  int64_t x0 = std::max<int64_t>(0, (int64_t)std::floor(l.cx - reach)), x1 = std::min<int64_t>(w - 1, (int64_t)std::ceil(l.cx + reach));
  int64_t y0 = std::max<int64_t>(0, (int64_t)std::floor(l.cy - reach)), y1 = std::min<int64_t>(h - 1, (int64_t)std::ceil(l.cy + reach));
  const int64_t hw = h * w;
  for (int64_t y = y0; y <= y1; ++y)
    for (int64_t x = x0; x <= x1; ++x) {
      float cov = std::fmin(std::fmax(0.5f - leaf_distance(l, (float)x, (float)y), 0.f), 1.f);  // 1-px soft edge
      if (cov <= 0.f) continue;
      RGB c = leaf_colour(l, noise, (float)x, (float)y);
      int64_t i = y * w + x;
      P[i] = cov * c.r + (1 - cov) * P[i];
      P[hw + i] = cov * c.g + (1 - cov) * P[hw + i];
      P[2 * hw + i] = cov * c.b + (1 - cov) * P[2 * hw + i];
      A[i] = cov + (1 - cov) * A[i];
    }
}

}  // namespace

// Disk blur, one row of the disk at a time: row dy of a disk of radius r is a box of half-width
// hw = sqrt(r^2 - dy^2), whose sum over a piecewise-constant row is a difference of the row's running
// integral — O(r) per pixel instead of O(r^2), with exact fractional (anti-aliased) ends.
void blur_disk(const float* in, float* out, int64_t h, int64_t w, float r) {
  r = std::max(r, 0.5f);
  const int64_t R = (int64_t)std::ceil(r) + 1;
  const int64_t wp = w + 2 * R + 2;
  // prefix[y][j] = sum of the edge-replicated row y over padded pixels 0..j-1 (padded pixel j is x = j - R - 1).
  std::vector<double> prefix((size_t)h * (wp + 1));
  for (int64_t y = 0; y < h; ++y) {
    double* p = &prefix[(size_t)y * (wp + 1)];
    p[0] = 0;
    for (int64_t j = 0; j < wp; ++j) {
      int64_t x = std::min(std::max<int64_t>(j - R - 1, 0), w - 1);
      p[j + 1] = p[j] + in[y * w + x];
    }
  }
  // Integral of row y from -infinity (padded start) to position t (in pixel coordinates of x).
  auto integral = [&](const double* p, double t) {
    double jt = t + R + 1 + 0.5;  // padded pixel j covers [j - 0.5, j + 0.5) in padded coordinates
    int64_t k = (int64_t)std::floor(jt);
    k = std::min(std::max<int64_t>(k, 0), wp - 1);
    double frac = jt - (double)k;
    return p[k] + frac * (p[k + 1] - p[k]);
  };
  std::vector<double> half(2 * R + 1);
  double norm = 0;
  for (int64_t dy = -R; dy <= R; ++dy) {
    double hw2 = (double)r * r - (double)dy * dy;
    half[dy + R] = hw2 > 0 ? std::sqrt(hw2) : 0.0;
    if (dy == 0) half[R] = std::max(half[R], 0.5);
    norm += 2 * half[dy + R];
  }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      double acc = 0;
      for (int64_t dy = -R; dy <= R; ++dy) {
        double hwv = half[dy + R];
        if (hwv <= 0) continue;
        int64_t yy = std::min(std::max<int64_t>(y + dy, 0), h - 1);
        const double* p = &prefix[(size_t)yy * (wp + 1)];
        acc += integral(p, x + hwv) - integral(p, x - hwv);
      }
      out[y * w + x] = (float)(acc / norm);
    }
}

void blur_gaussian(const float* in, float* out, int64_t h, int64_t w, float sigma) {
  if (sigma < 0.1f) {
    std::copy(in, in + h * w, out);
    return;
  }
  const int64_t R = (int64_t)std::ceil(3 * sigma);
  std::vector<float> k(2 * R + 1), tmp((size_t)h * w);
  float s = 0;
  for (int64_t i = -R; i <= R; ++i) s += k[i + R] = std::exp(-0.5f * (float)(i * i) / (sigma * sigma));
  for (float& v : k) v /= s;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      float acc = 0;
      for (int64_t i = -R; i <= R; ++i) acc += k[i + R] * in[y * w + std::min(std::max<int64_t>(x + i, 0), w - 1)];
      tmp[y * w + x] = acc;
    }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      float acc = 0;
      for (int64_t i = -R; i <= R; ++i) acc += k[i + R] * tmp[std::min(std::max<int64_t>(y + i, 0), h - 1) * w + x];
      out[y * w + x] = acc;
    }
}

SynthSample make_synth_sample(const SynthOptions& opt, int64_t index) {
  RF_CHECK(opt.height >= 8 && opt.width >= 8, "make_synth: image size ", opt.height, "x", opt.width, " is too small");
  RF_CHECK(opt.planes >= 2, "make_synth: at least 2 depth planes are needed");
  const int64_t h = opt.height, w = opt.width, hw = h * w;
  const int K = opt.planes;
  Generator g(opt.seed * 0x9E3779B97F4A7C15ull + (uint64_t)index * 0xD1B54A32D192ED03ull + 1);

  // Camera: planes evenly spaced in inverse depth between z_far and z_near; focus and CoC scale.
  float z_near = g.uniform(0.8f, 2.f), z_far = z_near * g.uniform(5.f, 20.f);
  std::vector<float> inv(K), z(K), coc(K);
  for (int k = 0; k < K; ++k) {
    inv[k] = 1.f / z_far + (1.f / z_near - 1.f / z_far) * k / (K - 1);
    z[k] = 1.f / inv[k];
  }
  bool on_plane = g.uniform() < opt.focus_on_plane_share;
  int focus_plane = (int)g.randint(K);
  float inv_f = on_plane ? inv[focus_plane] : g.uniform(inv[0], inv[K - 1]);
  float max_coc = g.uniform(opt.max_coc_lo, opt.max_coc_hi) * (float)w / kDpddWidth;
  float spread = 0;
  for (int k = 0; k < K; ++k) spread = std::max(spread, std::fabs(inv_f - inv[k]));
  for (int k = 0; k < K; ++k) coc[k] = max_coc * std::fabs(inv_f - inv[k]) / std::max(spread, 1e-9f);
  bool gaussian = g.uniform() < opt.gaussian_psf_share;

  // Scene: enough leaves to cover the frame `coverage` times over.
  NoiseTile noise(g);
  float r_max = 0.35f * (float)std::min(h, w);
  float r_min = opt.min_leaf_radius > 0 ? std::min(opt.min_leaf_radius, r_max / 2)
                                        : std::max(2.f, 0.008f * (float)std::min(h, w));
  float mean_area = kPi * 2.f * r_min * r_min * std::log(r_max / r_min);  // E[pi r^2] under p(r) ~ r^-3
  int64_t n_leaves = (int64_t)(opt.coverage * (float)hw / mean_area);
  std::vector<Leaf> leaves;
  Leaf background = random_leaf(g, 0, r_min, r_max, h, w);
  background.shape = kRect;
  background.angle = 0;
  background.cx = w / 2.f;
  background.cy = h / 2.f;
  background.r = background.aspect = 1e6f;
  if (background.texture == kFlat) background.texture = kNoise;
  leaves.push_back(background);
  for (int64_t i = 0; i < n_leaves; ++i) leaves.push_back(random_leaf(g, 1 + (int)g.randint(K - 1), r_min, r_max, h, w));
  std::stable_sort(leaves.begin(), leaves.end(), [](const Leaf& a, const Leaf& b) { return a.plane < b.plane; });

  // Render plane by plane, far to near.
  std::vector<float> sharp(3 * hw, 0.f), blurry(3 * hw, 0.f), depth(hw, z[0]), defocus(hw, coc[0]);
  std::vector<float> P(3 * hw), A(hw), Pb(3 * hw), Ab(hw);
  size_t next = 0;
  for (int k = 0; k < K; ++k) {
    std::fill(P.begin(), P.end(), 0.f);
    std::fill(A.begin(), A.end(), 0.f);
    bool any = false;
    for (; next < leaves.size() && leaves[next].plane == k; ++next) {
      paint_leaf(leaves[next], noise, P, A, h, w);
      any = true;
    }
    if (!any) continue;
    for (int64_t i = 0; i < hw; ++i) {
      for (int c = 0; c < 3; ++c) sharp[c * hw + i] = P[c * hw + i] + (1 - A[i]) * sharp[c * hw + i];
      if (A[i] >= 0.5f) {
        depth[i] = z[k];
        defocus[i] = coc[k];
      }
    }
    for (int c = 0; c < 4; ++c) {
      const float* src = c < 3 ? &P[c * hw] : A.data();
      float* dst = c < 3 ? &Pb[c * hw] : Ab.data();
      if (gaussian)
        blur_gaussian(src, dst, h, w, coc[k] / 2.f);  // same second moment as a disk of radius coc
      else
        blur_disk(src, dst, h, w, coc[k]);
    }
    for (int64_t i = 0; i < hw; ++i)
      for (int c = 0; c < 3; ++c) blurry[c * hw + i] = Pb[c * hw + i] + (1 - Ab[i]) * blurry[c * hw + i];
  }

  // Misalignment of the target (a small zoom and shift about the centre). Resampled with Lanczos-3, separably (a
  // zoom and a shift move rows and columns independently): bilinear resampling would blur the target by about as
  // much as the defocus it is meant to undo (a half-pixel shift averages two pixels), leaving jdrl nothing to learn.
  float zoom = 1.f, sx = 0.f, sy = 0.f;
  if (opt.misalign) {
    zoom = g.uniform(0.99f, 1.01f);
    sx = g.uniform(-2.f, 2.f) * (float)w / 512.f;
    sy = g.uniform(-2.f, 2.f) * (float)h / 512.f;
    // taps[i]: the 6 source indices and weights of output position i along one axis (edges clamped).
    struct Taps {
      int64_t at[6];
      float wt[6];
    };
    auto lanczos_taps = [&](int64_t n, float shift) {
      std::vector<Taps> taps(n);
      for (int64_t i = 0; i < n; ++i) {
        const float f = (i - n / 2.f) / zoom + n / 2.f + shift;
        const int64_t base = (int64_t)std::floor(f) - 2;
        float total = 0;
        for (int k = 0; k < 6; ++k) {
          const float d = f - (float)(base + k);
          float v = 1.f;
          if (std::fabs(d) > 1e-6f) {
            const float pd = 3.14159265f * d;
            v = std::fabs(d) < 3.f ? 3.f * std::sin(pd) * std::sin(pd / 3.f) / (pd * pd) : 0.f;
          }
          taps[i].at[k] = std::min(std::max<int64_t>(base + k, 0), n - 1);
          taps[i].wt[k] = v;
          total += v;
        }
        for (int k = 0; k < 6; ++k) taps[i].wt[k] /= total;
      }
      return taps;
    };
    const std::vector<Taps> tx = lanczos_taps(w, sx), ty = lanczos_taps(h, sy);
    std::vector<float> rows(3 * hw), warped(3 * hw);
    for (int c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          float v = 0;
          for (int k = 0; k < 6; ++k) v += tx[x].wt[k] * sharp[c * hw + y * w + tx[x].at[k]];
          rows[c * hw + y * w + x] = v;
        }
    for (int c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          float v = 0;
          for (int k = 0; k < 6; ++k) v += ty[y].wt[k] * rows[c * hw + ty[y].at[k] * w + x];
          warped[c * hw + y * w + x] = std::max(v, 0.f);  // linear light: Lanczos rings below zero at hard edges
        }
    sharp.swap(warped);
  }

  // Sensor noise in linear light (signal-dependent plus a floor), weaker on the stopped-down target.
  float shot = opt.noise * g.uniform(0.f, 4e-4f), floor_var = opt.noise * g.uniform(0.f, 1e-5f);
  Generator ng(g.uniform() * 4294967296.0);
  for (int64_t i = 0; i < 3 * hw; ++i) {
    blurry[i] = linear_to_srgb(blurry[i] + std::sqrt(shot * std::max(blurry[i], 0.f) + floor_var) * ng.normal());
    sharp[i] = linear_to_srgb(sharp[i] + 0.3f * std::sqrt(shot * std::max(sharp[i], 0.f) + floor_var) * ng.normal());
  }

  SynthSample s;
  s.source = from_vector(blurry, {3, h, w});
  s.target = from_vector(sharp, {3, h, w});
  s.depth = from_vector(depth, {1, h, w});
  s.defocus = from_vector(defocus, {1, h, w});
  s.meta = {{"index", index},
            {"focus_depth_m", 1.f / inv_f},
            {"near_m", z_near},
            {"far_m", z_far},
            {"plane_depths_m", z},
            {"plane_coc_px", coc},
            {"max_coc_px", max_coc},
            {"coc_per_inverse_depth_px", max_coc / std::max(spread, 1e-9f)},
            {"psf", gaussian ? "gaussian" : "disk"},
            {"focused_on_plane", on_plane ? focus_plane : -1},
            {"leaves", (int64_t)leaves.size()},
            {"noise_shot", shot},
            {"noise_floor", floor_var},
            {"misalign", {{"zoom", zoom}, {"shift_x_px", sx}, {"shift_y_px", sy}}}};
  return s;
}

}  // namespace rf
