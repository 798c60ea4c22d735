// Memory. CPU: 64-byte aligned malloc, large blocks kept for reuse. CUDA: a caching allocator — freed blocks are kept in
// size-class free lists and reused, because cudaMalloc/cudaFree synchronise the device and cost
// milliseconds. All work runs on one stream, so a block freed by one op can be handed to the next op
// at once: stream order guarantees the earlier kernels finished with it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/device.h"

namespace rf {

void* device_alloc(Device d, size_t bytes);
void device_free(Device d, void* p, size_t bytes);

struct CudaAllocStats {
  size_t allocated_bytes = 0;  // handed out to tensors now
  size_t cached_bytes = 0;     // held in free lists, ready for reuse
  size_t peak_allocated_bytes = 0;
  size_t reserved_bytes = 0;   // obtained from cudaMalloc in total (allocated + cached)
  uint64_t cuda_malloc_calls = 0;
  uint64_t cache_hits = 0;
  uint64_t requests = 0;
};

CudaAllocStats cuda_alloc_stats();
// The peak since the last reset, so that a benchmark can measure one step.
void cuda_reset_peak();

// Host tensors: bytes held now and the peak (64-byte rounded requests), and the freed blocks of 32 MiB and more
// kept for reuse (a fresh block of that size page-faults on every first touch). A request that misses frees kept
// blocks of at least its size first, so live + kept bytes stay within the peak of live bytes.
struct HostAllocStats {
  size_t allocated_bytes = 0;
  size_t peak_allocated_bytes = 0;
  size_t cached_bytes = 0;
};
HostAllocStats host_alloc_stats();
void host_reset_peak();
// Return the kept host blocks to the system.
void host_empty_cache();
// Bound the kept bytes (half the RAM, at most 16 GiB, by default; 0 keeps nothing), the longest-kept freed first.
void host_set_cache_limit(size_t bytes);
size_t host_cache_limit();
// Return all cached blocks to the driver.
void cuda_empty_cache();
// Turn caching off (every free goes straight to cudaFree) — for measuring what caching buys.
void cuda_set_caching(bool on);
std::string format_bytes(size_t bytes);

}  // namespace rf
