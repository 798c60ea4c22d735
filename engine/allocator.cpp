#include "engine/allocator.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <list>
#include <map>
#include <mutex>
#include <vector>

#include "engine/error.h"

#ifdef REFOCUS_WITH_CUDA
#include <cuda_runtime.h>

#include "engine/cuda_check.h"
#endif

namespace rf {

std::string format_bytes(size_t b) {
  char buf[64];
  if (b >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / 1073741824.0);
  else if (b >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / 1048576.0);
  else
    std::snprintf(buf, sizeof buf, "%zu B", b);
  return buf;
}

#ifdef REFOCUS_WITH_CUDA
namespace {

// Size classes: small requests round up to 512 B, large ones to 2 MiB, so that the same shapes in the
// next training step hit exactly the blocks the last step freed.
size_t round_size(size_t bytes) {
  const size_t small = 512, large = 2u << 20;
  if (bytes < (1u << 20)) return (bytes + small - 1) / small * small;
  return (bytes + large - 1) / large * large;
}

struct CachingAllocator {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;  // rounded size -> cached blocks
  CudaAllocStats st;
  bool caching = true;

  void* alloc(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu);
    size_t sz = round_size(bytes == 0 ? 1 : bytes);
    st.requests++;
    auto it = free_blocks.find(sz);
    if (it != free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      st.cached_bytes -= sz;
      st.allocated_bytes += sz;
      st.cache_hits++;
      if (st.allocated_bytes > st.peak_allocated_bytes) st.peak_allocated_bytes = st.allocated_bytes;
      return p;
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, sz);
    if (e != cudaSuccess) {
      // Out of memory: give the cache back to the driver and try once more.
      cudaGetLastError();
      release_cache_locked();
      e = cudaMalloc(&p, sz);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Error(cat("CUDA out of memory: tried to allocate ", format_bytes(sz), "; the GPU has ",
                      format_bytes(total_b), " in total, ", format_bytes(free_b), " free; refocus holds ",
                      format_bytes(st.allocated_bytes), " in tensors and ", format_bytes(st.cached_bytes),
                      " cached. Use a smaller --batch or --crop, or tile the image."));
    }
    st.cuda_malloc_calls++;
    st.reserved_bytes += sz;
    st.allocated_bytes += sz;
    if (st.allocated_bytes > st.peak_allocated_bytes) st.peak_allocated_bytes = st.allocated_bytes;
    return p;
  }

  void release(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu);
    size_t sz = round_size(bytes == 0 ? 1 : bytes);
    st.allocated_bytes -= sz;
    if (caching) {
      free_blocks[sz].push_back(p);
      st.cached_bytes += sz;
    } else {
      cudaFree(p);
      st.reserved_bytes -= sz;
    }
  }

  void release_cache_locked() {
    cudaDeviceSynchronize();
    for (auto& kv : free_blocks)
      for (void* p : kv.second) {
        cudaFree(p);
        st.reserved_bytes -= kv.first;
      }
    free_blocks.clear();
    st.cached_bytes = 0;
  }
};

CachingAllocator& cuda_allocator() {
  // Leaked on purpose: tensors in static objects may be freed after main() returns.
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

}  // namespace
#endif

// Host tensor bytes now and at the peak (what the tensors hold; malloc's own overhead not counted).
static std::atomic<size_t> g_cpu_bytes{0}, g_cpu_peak{0};

static size_t cpu_block(size_t bytes) { return bytes == 0 ? 64 : (bytes + 63) / 64 * 64; }

// glibc hands blocks above its mmap threshold (128 KiB, growing to at most 32 MiB) straight to mmap and
// back to the kernel on free, so every new activation of a training step paid page faults on first touch
// (13% of a CPU training step, measured with perf). Keeping blocks up to 32 MiB in the heap, and the heap
// untrimmed, lets the next step reuse the same pages, as a caching allocator would. Untrimmed means never
// (-1): with a 256 MiB threshold a step that freed more than that returned it, and an sft cpu-recipe step
// (batch 8 at 96 px, ~1.1 GiB of activations) faulted ~1.1 GiB of fresh pages every step: 1.79 s a step
// against 1.19 s untrimmed (session 23, 15 steps each, same machine).
static void keep_freed_host_memory() {
  static bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, -1);
    return true;
  }();
  (void)done;
}

// Blocks of 32 MiB and more are above any mmap threshold glibc accepts, so each one came fresh from the kernel
// and every page faulted on first touch: 16% of an sft training step (128 channels at batch 4 x 128^2, 32 MiB
// per activation), measured with perf. Such blocks are kept after free, keyed by size, and handed to the next
// request of the same size (a training step asks for the same sizes every step; a jdrl Restormer step churns
// more than 2 GiB of them: 26.9 s with a 2 GiB bound, 21.1 s with 8). A request that finds no block of its size
// first frees kept blocks of at least its size, the longest-kept first, so that the cache never makes the
// process larger than its peak of live tensors; the bound (half the RAM, at most 16 GiB) only caps it further.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RF_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(RF_ASAN)
#define RF_ASAN 1
#endif
class HostBlockCache {
 public:
  static constexpr size_t kMinBlock = 32u << 20;
#ifdef RF_ASAN
  static constexpr size_t kDefaultLimit = 0;  // AddressSanitizer must see every free to catch a use after it
#else
  static size_t default_limit() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const size_t half_ram = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 2 : (2ull << 30);
    return std::min<size_t>(half_ram, 16ull << 30);
  }
  static inline const size_t kDefaultLimit = default_limit();
#endif
  // A kept block of exactly sz bytes, or null after freeing kept blocks of at least sz bytes in all.
  void* take(size_t sz) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_size_.find(sz);
    if (it == by_size_.end()) {
      for (size_t freed = 0; freed < sz && !by_age_.empty();) freed += evict_oldest();
      return nullptr;
    }
    void* p = it->second->ptr;
    by_age_.erase(it->second);
    by_size_.erase(it);
    cached_ -= sz;
    return p;
  }
  // false: not kept (too small, or larger than the whole cache); the caller frees it.
  bool put(void* p, size_t sz) {
    if (sz < kMinBlock) return false;
    std::lock_guard<std::mutex> lock(mu_);
    if (sz > limit_) return false;
    while (cached_ + sz > limit_) evict_oldest();
    by_age_.push_back({sz, p});
    by_size_.emplace(sz, std::prev(by_age_.end()));
    cached_ += sz;
    return true;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    while (!by_age_.empty()) evict_oldest();
  }
  void set_limit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = bytes;
    while (cached_ > limit_) evict_oldest();
  }
  size_t cached() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }
  size_t limit() {
    std::lock_guard<std::mutex> lock(mu_);
    return limit_;
  }

 private:
  struct Block {
    size_t size;
    void* ptr;
  };
  size_t evict_oldest() {
    const Block b = by_age_.front();
    auto range = by_size_.equal_range(b.size);
    for (auto it = range.first; it != range.second; ++it)
      if (it->second == by_age_.begin()) {
        by_size_.erase(it);
        break;
      }
    by_age_.pop_front();
    std::free(b.ptr);
    cached_ -= b.size;
    return b.size;
  }
  std::mutex mu_;
  std::list<Block> by_age_;                                  // oldest first
  std::multimap<size_t, std::list<Block>::iterator> by_size_;  // the same blocks by size
  size_t cached_ = 0;
  size_t limit_ = kDefaultLimit;
};

static HostBlockCache& host_cache() {
  static HostBlockCache* c = new HostBlockCache();  // leaked on purpose, like the CUDA one
  return *c;
}

void* device_alloc(Device d, size_t bytes) {
  if (d == Device::CPU) {
    keep_freed_host_memory();
    size_t sz = cpu_block(bytes);
    void* p = sz >= HostBlockCache::kMinBlock ? host_cache().take(sz) : nullptr;
    if (!p) p = std::aligned_alloc(64, sz);
    if (!p) {
      host_cache().clear();
      p = std::aligned_alloc(64, sz);
    }
    RF_CHECK(p, "out of host memory: could not allocate ", format_bytes(bytes));
    size_t now = g_cpu_bytes.fetch_add(sz) + sz, peak = g_cpu_peak.load();
    while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now)) {
    }
    return p;
  }
#ifdef REFOCUS_WITH_CUDA
  return cuda_allocator().alloc(bytes);
#else
  throw Error("a CUDA tensor was requested but refocus was built without CUDA");
#endif
}

void device_free(Device d, void* p, size_t bytes) {
  if (!p) return;
  if (d == Device::CPU) {
    const size_t sz = cpu_block(bytes);
    if (!host_cache().put(p, sz)) std::free(p);
    g_cpu_bytes.fetch_sub(sz);
    return;
  }
#ifdef REFOCUS_WITH_CUDA
  cuda_allocator().release(p, bytes);
#else
  (void)bytes;
#endif
}

HostAllocStats host_alloc_stats() { return {g_cpu_bytes.load(), g_cpu_peak.load(), host_cache().cached()}; }
void host_empty_cache() { host_cache().clear(); }
size_t host_cache_limit() { return host_cache().limit(); }
void host_set_cache_limit(size_t bytes) {
#ifndef RF_ASAN
  host_cache().set_limit(bytes);
#else
  (void)bytes;
#endif
}
void host_reset_peak() { g_cpu_peak.store(g_cpu_bytes.load()); }

CudaAllocStats cuda_alloc_stats() {
#ifdef REFOCUS_WITH_CUDA
  auto& a = cuda_allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  return a.st;
#else
  return {};
#endif
}

void cuda_reset_peak() {
#ifdef REFOCUS_WITH_CUDA
  auto& a = cuda_allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.st.peak_allocated_bytes = a.st.allocated_bytes;
#endif
}

void cuda_empty_cache() {
#ifdef REFOCUS_WITH_CUDA
  auto& a = cuda_allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.release_cache_locked();
#endif
}

void cuda_set_caching(bool on) {
#ifdef REFOCUS_WITH_CUDA
  auto& a = cuda_allocator();
  {
    std::lock_guard<std::mutex> lock(a.mu);
    a.caching = on;
  }
  if (!on) cuda_empty_cache();
#else
  (void)on;
#endif
}

}  // namespace rf
