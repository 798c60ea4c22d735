#include "layers/init.h"

#include <cmath>

#include "ops/elementwise.h"

namespace rf::init {

static int64_t receptive(const Tensor& w) {
  int64_t r = 1;
  for (int64_t d = 2; d < w.dim(); ++d) r *= w.size(d);
  return r;
}

int64_t fan_in(const Tensor& w) {
  RF_CHECK(w.dim() >= 2, "fan_in of a tensor with fewer than 2 dims: ", describe(w));
  return w.size(1) * receptive(w);
}

int64_t fan_out(const Tensor& w) {
  RF_CHECK(w.dim() >= 2, "fan_out of a tensor with fewer than 2 dims: ", describe(w));
  return w.size(0) * receptive(w);
}

void uniform_(Tensor& t, float lo, float hi, Generator* gen) { t.copy_(uniform(t.shape(), lo, hi, t.device(), gen)); }

void normal_(Tensor& t, float mean, float std, Generator* gen) {
  Tensor r = randn(t.shape(), t.device(), gen);
  t.copy_(affine(r, std, mean));
}

void constant_(Tensor& t, float v) { t.fill_(v); }
void zeros_(Tensor& t) { t.fill_(0.f); }
void ones_(Tensor& t) { t.fill_(1.f); }

void xavier_uniform_(Tensor& t, float gain, Generator* gen) {
  float b = gain * std::sqrt(6.f / (float)(fan_in(t) + fan_out(t)));
  uniform_(t, -b, b, gen);
}

void xavier_normal_(Tensor& t, float gain, Generator* gen) {
  normal_(t, 0.f, gain * std::sqrt(2.f / (float)(fan_in(t) + fan_out(t))), gen);
}

static float leaky_gain(float a) { return std::sqrt(2.f / (1.f + a * a)); }

void kaiming_uniform_(Tensor& t, float a, Generator* gen) {
  float b = leaky_gain(a) * std::sqrt(3.f / (float)fan_in(t));
  uniform_(t, -b, b, gen);
}

void kaiming_normal_(Tensor& t, float a, Generator* gen) {
  normal_(t, 0.f, leaky_gain(a) / std::sqrt((float)fan_in(t)), gen);
}

void default_conv_linear_(Tensor& weight, Tensor& bias, int64_t fan, Generator* gen) {
  float b = 1.f / std::sqrt((float)std::max<int64_t>(fan, 1));
  uniform_(weight, -b, b, gen);
  if (bias.defined()) uniform_(bias, -b, b, gen);
}

void zeros_(Module& m) {
  for (auto& [name, p] : m.named_parameters()) {
    Tensor t = p;
    zeros_(t);
  }
}

}  // namespace rf::init
