#include "data/metrics.h"

#include <cmath>
#include <vector>

namespace rf {

namespace {

struct Planes {
  int64_t c, h, w;
  std::vector<double> a, b;
};

Planes planes(const Tensor& pred, const Tensor& ref, const char* metric) {
  Tensor p = pred.dim() == 4 ? pred.reshape({pred.size(1), pred.size(2), pred.size(3)}) : pred;
  Tensor r = ref.dim() == 4 ? ref.reshape({ref.size(1), ref.size(2), ref.size(3)}) : ref;
  RF_CHECK(p.dim() == 3 && p.shape() == r.shape(), metric, ": images differ in shape: ", pred.shape(), " vs ", ref.shape());
  auto va = p.to_vector(), vb = r.to_vector();
  return Planes{p.size(0), p.size(1), p.size(2), std::vector<double>(va.begin(), va.end()),
                std::vector<double>(vb.begin(), vb.end())};
}

// Mean SSIM of one channel, with a separable window `k` (odd length, sums to 1) and covariance
// normalisation `cov_norm`, over the positions whose window lies inside the image.
double ssim_channel(const double* x, const double* y, int64_t h, int64_t w, const std::vector<double>& k,
                    double cov_norm, double data_range) {
  const int64_t r = (int64_t)k.size() / 2;
  if (h <= 2 * r || w <= 2 * r) throw Error(cat("ssim: image ", h, "x", w, " is smaller than the ", k.size(), "x",
                                                k.size(), " window"));
  const int64_t ho = h - 2 * r, wo = w - 2 * r;
  // Horizontal pass over the five maps x, y, xx, yy, xy, then vertical.
  std::vector<double> hsum(5 * h * wo, 0.0);
  for (int64_t yy = 0; yy < h; ++yy)
    for (int64_t xx = 0; xx < wo; ++xx) {
      double s[5] = {0, 0, 0, 0, 0};
      for (int64_t i = 0; i < (int64_t)k.size(); ++i) {
        double a = x[yy * w + xx + i], b = y[yy * w + xx + i], wt = k[i];
        s[0] += wt * a;
        s[1] += wt * b;
        s[2] += wt * a * a;
        s[3] += wt * b * b;
        s[4] += wt * a * b;
      }
      for (int m = 0; m < 5; ++m) hsum[(m * h + yy) * wo + xx] = s[m];
    }
  const double c1 = (0.01 * data_range) * (0.01 * data_range), c2 = (0.03 * data_range) * (0.03 * data_range);
  double total = 0;
  for (int64_t yy = 0; yy < ho; ++yy)
    for (int64_t xx = 0; xx < wo; ++xx) {
      double s[5] = {0, 0, 0, 0, 0};
      for (int64_t i = 0; i < (int64_t)k.size(); ++i)
        for (int m = 0; m < 5; ++m) s[m] += k[i] * hsum[(m * h + yy + i) * wo + xx];
      double ux = s[0], uy = s[1];
      double vx = cov_norm * (s[2] - ux * ux), vy = cov_norm * (s[3] - uy * uy), vxy = cov_norm * (s[4] - ux * uy);
      total += ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
    }
  return total / (double)(ho * wo);
}

double ssim_with(const Tensor& pred, const Tensor& ref, const std::vector<double>& k, double cov_norm, double range) {
  Planes p = planes(pred, ref, "ssim");
  double sum = 0;
  for (int64_t c = 0; c < p.c; ++c)
    sum += ssim_channel(&p.a[c * p.h * p.w], &p.b[c * p.h * p.w], p.h, p.w, k, cov_norm, range);
  return sum / (double)p.c;
}

}  // namespace

double psnr(const Tensor& pred, const Tensor& ref, double data_range) {
  Planes p = planes(pred, ref, "psnr");
  double se = 0;
  for (size_t i = 0; i < p.a.size(); ++i) se += (p.a[i] - p.b[i]) * (p.a[i] - p.b[i]);
  double mse = se / (double)p.a.size();
  return mse == 0 ? INFINITY : 10.0 * std::log10(data_range * data_range / mse);
}

double mae(const Tensor& pred, const Tensor& ref) {
  Planes p = planes(pred, ref, "mae");
  double s = 0;
  for (size_t i = 0; i < p.a.size(); ++i) s += std::fabs(p.a[i] - p.b[i]);
  return s / (double)p.a.size();
}

double ssim(const Tensor& pred, const Tensor& ref, double data_range) {
  const int win = 7;
  std::vector<double> k(win, 1.0 / win);
  return ssim_with(pred, ref, k, (double)(win * win) / (win * win - 1), data_range);
}

double ssim_gaussian(const Tensor& pred, const Tensor& ref, double data_range) {
  const double sigma = 1.5;
  std::vector<double> k(11);
  double s = 0;
  for (int i = 0; i < 11; ++i) s += k[i] = std::exp(-0.5 * (i - 5) * (i - 5) / (sigma * sigma));
  for (double& v : k) v /= s;
  return ssim_with(pred, ref, k, 1.0, data_range);
}

Tensor quantize(const Tensor& img, int bits) {
  const float levels = (float)((1 << bits) - 1);
  std::vector<float> v = img.to_vector();
  for (float& f : v) f = std::nearbyint(std::fmin(std::fmax(f, 0.f), 1.f) * levels) / levels;
  return from_vector(v, img.shape());
}

}  // namespace rf
