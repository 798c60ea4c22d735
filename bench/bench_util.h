// Timing shared by the benchmarks: the median of `repeats` runs after one warm-up, GPU synchronised.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "engine/device.h"

inline double median_ms(const std::function<void()>& f, int repeats) {
  f();  // warm-up (cuDNN algorithm search, allocator cache)
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    rf::synchronize();
    auto t0 = std::chrono::steady_clock::now();
    f();
    rf::synchronize();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
