#include "ops/macs.h"

#include <atomic>

namespace rf {

static std::atomic<int64_t> g_macs{0};
static std::atomic<int> g_counters{0};

MacCounter::MacCounter() {
  if (g_counters.fetch_add(1) == 0) g_macs = 0;
}
MacCounter::~MacCounter() { g_counters.fetch_sub(1); }
int64_t MacCounter::total() const { return g_macs.load(); }

void count_macs(int64_t n) {
  if (g_counters.load(std::memory_order_relaxed) > 0) g_macs.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace rf
