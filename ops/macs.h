// Multiply-accumulates counted by the ops that dominate a network's cost (convolutions, matrix products and the
// papers' custom filters), while a MacCounter is alive: the figure papers quote as "MACs" for one forward pass.
#pragma once
#include <cstdint>

namespace rf {

class MacCounter {
 public:
  MacCounter();
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;
  int64_t total() const;
};

// Called by the ops; free when no counter is alive.
void count_macs(int64_t n);

}  // namespace rf
