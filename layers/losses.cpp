#include "layers/losses.h"

#include "ops/ops.h"
#include "ops/separable.h"

namespace rf {

Tensor mse_loss(const Tensor& p, const Tensor& t) { return mean(square(p - t)); }
Tensor l1_loss(const Tensor& p, const Tensor& t) { return mean(abs(p - t)); }
Tensor charbonnier_loss(const Tensor& p, const Tensor& t, float eps) { return mean(sqrt(square(p - t) + eps * eps)); }

Tensor ssim_index(const Tensor& x, const Tensor& y, float data_range) {
  static const std::vector<float> k = gaussian_taps(1.5f, 5);
  auto f = [](const Tensor& t) { return separable_filter(t, k, k); };
  const float c1 = (0.01f * data_range) * (0.01f * data_range), c2 = (0.03f * data_range) * (0.03f * data_range);
  Tensor mx = f(x), my = f(y);
  Tensor mxx = mx * mx, myy = my * my, mxy = mx * my;
  Tensor vx = f(x * x) - mxx, vy = f(y * y) - myy, vxy = f(x * y) - mxy;
  return mean(((2.f * mxy + c1) * (2.f * vxy + c2)) / ((mxx + myy + c1) * (vx + vy + c2)));
}

Tensor fft_l1_loss(const Tensor& p, const Tensor& t) { return mean(abs(fft2(p) - fft2(t))); }

}  // namespace rf
