// Flags and timing shared by the benchmarks. Timing: the median of `repeats` runs after one warm-up, GPU synchronised.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "train/cli.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// The flags every benchmark takes (its own come after): --device, --repeats, --threads. Like every program's,
// they are parsed whole and range-checked, and a flag the benchmark does not know is an error (run_main).
struct BenchFlags {
  std::string device;
  int repeats;
};
inline BenchFlags bench_flags(const rf::Args& a, int default_repeats) {
  BenchFlags f{a.str("--device", "cpu"), (int)a.integer("--repeats", default_repeats, 1, 100000)};
  const int threads = (int)a.integer("--threads", 0, 0, 4096);  // 0: OpenMP's default
#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
#else
  (void)threads;
#endif
  return f;
}

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
