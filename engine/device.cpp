#include "engine/device.h"

#include <cstdio>
#include <cstdlib>

#include "engine/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef REFOCUS_WITH_CUDA
#include <cuda_runtime.h>
#include <cudnn.h>

#include "engine/cuda_check.h"
#endif

namespace rf {

static bool g_deterministic = false;
void set_deterministic(bool on) { g_deterministic = on; }
bool deterministic() { return g_deterministic; }

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

bool built_with_cuda() {
#ifdef REFOCUS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

#ifdef REFOCUS_WITH_CUDA
// Why CUDA is unusable, or "" when it is usable. Asked once.
static const std::string& cuda_problem() {
  static const std::string problem = [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return cat("no usable CUDA device (", cudaGetErrorString(e), ")");
    if (n == 0) return std::string("no CUDA device is visible");
    return std::string();
  }();
  return problem;
}

void cuda_after_launch(const char* what, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) {
    static const bool sync_debug = [] {
      const char* v = std::getenv("REFOCUS_SYNC_DEBUG");
      return v && v[0] == '1';
    }();
    if (sync_debug) e = cudaDeviceSynchronize();
  }
  if (e != cudaSuccess)
    throw Error(cat("CUDA error '", cudaGetErrorString(e), "' in kernel ", what, " (", file, ":", line,
                    ")"));
}
#endif

bool cuda_available() {
#ifdef REFOCUS_WITH_CUDA
  return cuda_problem().empty();
#else
  return false;
#endif
}

std::string cuda_description() {
#ifdef REFOCUS_WITH_CUDA
  if (!cuda_problem().empty()) return cuda_problem();
  cudaDeviceProp p{};
  RF_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s, %.1f GiB, compute %d.%d, cuDNN %zu", p.name,
                p.totalGlobalMem / 1073741824.0, p.major, p.minor, cudnnGetVersion());
  return buf;
#else
  return "refocus was built without CUDA (nvcc was not found at build time)";
#endif
}

std::string cpu_description() {
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
#ifdef REFOCUS_WITH_OPENBLAS
  const char* gemm = "OpenBLAS GEMM";
#else
  const char* gemm = "built-in GEMM";
#endif
  return cat(threads, " thread", threads == 1 ? "" : "s", ", ", gemm);
}

Device select_device(const std::string& choice, bool verbose) {
  Device d;
  if (choice == "cpu") {
    d = Device::CPU;
  } else if (choice == "cuda" || choice == "gpu") {
    if (!cuda_available())
      throw Error(cat("--device cuda was asked for but CUDA is unusable: ", cuda_description()));
    d = Device::CUDA;
  } else if (choice == "auto" || choice.empty()) {
    d = cuda_available() ? Device::CUDA : Device::CPU;
  } else {
    throw Error(cat("unknown device '", choice, "' (expected auto, cpu or cuda)"));
  }
  if (verbose)
    std::fprintf(stderr, "refocus: device %s (%s)\n", device_name(d),
                 d == Device::CUDA ? cuda_description().c_str() : cpu_description().c_str());
  return d;
}

void synchronize() {
#ifdef REFOCUS_WITH_CUDA
  if (cuda_available()) RF_CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

}  // namespace rf
