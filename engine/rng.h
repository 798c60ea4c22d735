// Counter-based random numbers (Philox-4x32-10, Salmon et al. 2011).
//
// Element i of a draw is a pure function of (seed, offset + i), so the CPU and the GPU produce the same
// numbers in any order and any thread layout. A Generator only keeps the seed and the running offset.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/error.h"

namespace rf {

struct Philox4 {
  uint32_t v[4];
};

RF_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

RF_HD Philox4 philox4x32(uint64_t counter, uint64_t key) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo32(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo32(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float).
RF_HD float philox_uniform(uint64_t seed, uint64_t index) {
  return (float)(philox4x32(index, seed).v[0] >> 8) * (1.0f / 16777216.0f);
}

// Standard normal by Box–Muller on two uniforms from the same counter.
RF_HD float philox_normal(uint64_t seed, uint64_t index) {
  Philox4 r = philox4x32(index, seed);
  float u1 = ((float)(r.v[0] >> 8) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1], safe for log
  float u2 = (float)(r.v[1] >> 8) * (1.0f / 16777216.0f);
  return sqrtf(fmaxf(-2.0f * logf(u1), 0.f)) * cosf(6.283185307179586f * u2);  // logf(1) may round above 0
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5EED) : seed_(seed) {}
  void manual_seed(uint64_t s) {
    seed_ = s;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t o) { offset_ = o; }
  // Reserve n consecutive counters and return the first.
  uint64_t advance(uint64_t n) {
    uint64_t o = offset_;
    offset_ += n;
    return o;
  }
  // Host-side draws (same stream of numbers as the tensor draws).
  float uniform() { return philox_uniform(seed_, advance(1)); }
  float normal() { return philox_normal(seed_, advance(1)); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  int64_t randint(int64_t n) {  // 0..n-1
    int64_t v = (int64_t)(uniform() * (float)n);
    return v >= n ? n - 1 : v;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The process-wide generator used by initialisers and dropout unless one is passed.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace rf
