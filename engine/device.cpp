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

namespace {
struct NotedCudaOp {
  const char* op = nullptr;
  bool backward = false;
  int count = 0;
  int rank[kMaxNotedShapes] = {};
  int64_t dims[kMaxNotedShapes][8] = {};
};
thread_local NotedCudaOp t_noted;
}  // namespace

void note_cuda_op(const char* op, const Shape* const* shapes, int count, bool backward) {
  NotedCudaOp& n = t_noted;
  n.op = op;
  n.backward = backward;
  n.count = 0;
  for (int k = 0; k < count && k < kMaxNotedShapes; ++k) {
    const Shape* s = shapes[k];
    const int r = s ? (int)s->size() : -1;  // -1: an absent (undefined) tensor
    n.rank[n.count] = r;
    for (int i = 0; i < r && i < 8; ++i) n.dims[n.count][i] = (*s)[i];
    ++n.count;
  }
}

std::string last_cuda_op() {
  const NotedCudaOp& n = t_noted;
  if (!n.op) return "";
  std::string list;
  for (int k = 0; k < n.count; ++k) {
    if (k == 1 && n.backward) list += "; inputs ";
    else if (k > 0) list += ", ";
    if (n.rank[k] < 0) {
      list += "none";
      continue;
    }
    list += '[';
    for (int i = 0; i < n.rank[k] && i < 8; ++i) list += (i ? ", " : "") + std::to_string(n.dims[k][i]);
    list += n.rank[k] > 8 ? ", ...]" : "]";
  }
  if (n.backward) return cat("the backward of ", n.op, " (gradient ", list, ")");
  return n.count ? cat(n.op, " on ", list) : std::string(n.op);
}

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

static bool sync_debug() {
  static const bool on = [] {
    const char* v = std::getenv("REFOCUS_SYNC_DEBUG");
    return v && v[0] == '1';
  }();
  return on;
}

std::string cuda_op_context() {
  const std::string op = last_cuda_op();
  if (op.empty()) return op;
  if (sync_debug()) return cat("; the op that ran: ", op);
  // Without synchronising after each op, a fault of an earlier op can surface here.
  return cat("; the last op to start CUDA work: ", op, " (REFOCUS_SYNC_DEBUG=1 stops at the op that faults)");
}

void cuda_after_launch(const char* what, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && sync_debug()) e = cudaDeviceSynchronize();
  if (e != cudaSuccess)
    throw Error(cat("CUDA error '", cudaGetErrorString(e), "' in kernel ", what, " (", file, ":", line, ")",
                    cuda_op_context()));
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
  char buf[384];  // the device name alone may take 256
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
