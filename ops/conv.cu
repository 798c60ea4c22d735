// Convolutions through cuDNN. The algorithm for each (shape, pass) is chosen once by cuDNN's own
// benchmark (cudnnFind*) and cached; deterministic mode takes the first deterministic one in cuDNN's heuristic order
// (the same in every process, unlike timings).
#include <cudnn.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "engine/allocator.h"
#include "engine/device.h"
#include "ops/conv_impl.h"
#include "ops/cuda_common.cuh"

namespace rf::gpu {

#define RF_CUDNN_CHECK(stmt)                                                                                   \
  do {                                                                                                         \
    cudnnStatus_t st_ = (stmt);                                                                                \
    if (st_ != CUDNN_STATUS_SUCCESS)                                                                           \
      throw ::rf::Error(::rf::cat("cuDNN '", cudnnGetErrorString(st_), "' in ", #stmt, " at ", __FILE__, ":", \
                                  __LINE__, ::rf::cuda_op_context()));                                         \
  } while (0)

static bool g_tf32 = false;
void conv_set_tf32(bool on) { g_tf32 = on; }

static cudnnHandle_t handle() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t x;
    RF_CUDNN_CHECK(cudnnCreate(&x));
    return x;
  }();
  return h;
}

static std::string geometry_str(const char* pass, const ConvGeometry& g) {
  return cat(pass, " on cuda (input [", g.n, ", ", g.c_in, ", ", g.h, ", ", g.w, "], weight [", g.c_out, ", ",
             g.c_in_g(), ", ", g.kh, ", ", g.kw, "], output [", g.n, ", ", g.c_out, ", ", g.h_out, ", ", g.w_out,
             "], stride ", g.stride_h, "x", g.stride_w, ", padding ", g.pad_h, "x", g.pad_w, ", dilation ", g.dil_h,
             "x", g.dil_w, ", groups ", g.groups, ")");
}

// The four cuDNN descriptors of one convolution.
struct ConvDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  explicit ConvDescriptors(const ConvGeometry& g) {
    RF_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    RF_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    RF_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    RF_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    RF_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)g.n, (int)g.c_in, (int)g.h,
                                              (int)g.w));
    RF_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)g.n, (int)g.c_out,
                                              (int)g.h_out, (int)g.w_out));
    RF_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int)g.c_out, (int)g.c_in_g(),
                                              (int)g.kh, (int)g.kw));
    RF_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, (int)g.pad_h, (int)g.pad_w, (int)g.stride_h, (int)g.stride_w,
                                                   (int)g.dil_h, (int)g.dil_w, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
    RF_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, (int)g.groups));
    RF_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, g_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  }
  ~ConvDescriptors() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
  }
};

struct AlgoChoice {
  int algo;
  size_t workspace;
  cudnnMathType_t math;
};

enum Pass { kForward, kBackwardData, kBackwardWeight };

static std::map<std::vector<int64_t>, AlgoChoice>& algo_cache() {
  static std::map<std::vector<int64_t>, AlgoChoice> cache;
  return cache;
}
static std::mutex g_cache_mu;

static std::vector<int64_t> cache_key(Pass p, const ConvGeometry& g) {
  return {p,        g.n,        g.c_in,  g.h,     g.w,     g.c_out, g.h_out, g.w_out, g.kh,         g.kw,
          g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w, g.groups, g_tf32, deterministic()};
}

// First result in cuDNN's ranking (timed, or its heuristics' in deterministic mode) that is usable and (in
// deterministic mode) deterministic. The workspace size is cuDNN's for that algorithm.
template <class Perf>
static AlgoChoice pick(const Perf* perf, int n, const char* pass) {
  for (int i = 0; i < n; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && (!deterministic() || perf[i].determinism == CUDNN_DETERMINISTIC))
      return AlgoChoice{(int)perf[i].algo, perf[i].memory, perf[i].mathType};
  throw Error(cat("cuDNN found no usable algorithm for ", pass));
}

static AlgoChoice choose(Pass p, const ConvGeometry& g, const ConvDescriptors& d) {
  auto key = cache_key(p, g);
  {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    auto it = algo_cache().find(key);
    if (it != algo_cache().end()) return it->second;
  }
  AlgoChoice c{};
  int n = 0;
  // Deterministic mode asks cuDNN's heuristics, whose order does not depend on timing, so that a resumed run picks the
  // algorithms the first one did; otherwise cuDNN times every algorithm. Timing allocates its buffers with cudaMalloc,
  // around our caching allocator: the cache is emptied first, or a cache that training has filled would make the
  // fast algorithms fail for want of memory (and the slower choice would be kept for this shape).
  const bool heuristic = deterministic();
  if (!heuristic) cuda_empty_cache();
  // In deterministic mode, the workspace for the chosen algorithm at its math type (the heuristics' own figure may
  // be for another); size(&bytes) is the pass's cudnnGet*WorkspaceSize.
  auto size_workspace = [&](auto size) {
    if (!heuristic) return;
    RF_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
    size_t queried = 0;
    RF_CUDNN_CHECK(size(&queried));
    c.workspace = std::max(c.workspace, queried);
  };
  if (p == kForward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    const int k = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    RF_CUDNN_CHECK(heuristic ? cudnnGetConvolutionForwardAlgorithm_v7(handle(), d.x, d.w, d.conv, d.y, k, &n, perf)
                             : cudnnFindConvolutionForwardAlgorithm(handle(), d.x, d.w, d.conv, d.y, k, &n, perf));
    c = pick(perf, n, "the forward pass");
    size_workspace([&](size_t* b) {
      return cudnnGetConvolutionForwardWorkspaceSize(handle(), d.x, d.w, d.conv, d.y,
                                                     (cudnnConvolutionFwdAlgo_t)c.algo, b);
    });
  } else if (p == kBackwardData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    const int k = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    RF_CUDNN_CHECK(heuristic ? cudnnGetConvolutionBackwardDataAlgorithm_v7(handle(), d.w, d.y, d.conv, d.x, k, &n, perf)
                             : cudnnFindConvolutionBackwardDataAlgorithm(handle(), d.w, d.y, d.conv, d.x, k, &n, perf));
    c = pick(perf, n, "the data gradient");
    size_workspace([&](size_t* b) {
      return cudnnGetConvolutionBackwardDataWorkspaceSize(handle(), d.w, d.y, d.conv, d.x,
                                                          (cudnnConvolutionBwdDataAlgo_t)c.algo, b);
    });
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    const int k = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    RF_CUDNN_CHECK(heuristic
                       ? cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle(), d.x, d.y, d.conv, d.w, k, &n, perf)
                       : cudnnFindConvolutionBackwardFilterAlgorithm(handle(), d.x, d.y, d.conv, d.w, k, &n, perf));
    c = pick(perf, n, "the weight gradient");
    size_workspace([&](size_t* b) {
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle(), d.x, d.y, d.conv, d.w,
                                                            (cudnnConvolutionBwdFilterAlgo_t)c.algo, b);
    });
  }
  std::lock_guard<std::mutex> lock(g_cache_mu);
  algo_cache()[key] = c;
  return c;
}

// Scratch memory from the caching allocator for the lifetime of one call.
struct Workspace {
  void* p = nullptr;
  size_t bytes;
  explicit Workspace(size_t b) : bytes(b) {
    if (b) p = device_alloc(Device::CUDA, b);
  }
  ~Workspace() { device_free(Device::CUDA, p, bytes); }
};

__global__ void add_channel_bias_kernel(float* y, const float* bias, int64_t c, int64_t hw, int64_t total) {
  RF_GRID_STRIDE(i, total) y[i] += bias[(i / hw) % c];
}

void conv2d_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  try {
    ConvDescriptors d(g);
    AlgoChoice c = choose(kForward, g, d);
    RF_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
    Workspace ws(c.workspace);
    const float one = 1.f, zero = 0.f;
    RF_CUDNN_CHECK(cudnnConvolutionForward(handle(), &one, d.x, x, d.w, w, d.conv, (cudnnConvolutionFwdAlgo_t)c.algo,
                                           ws.p, ws.bytes, &zero, d.y, y));
    if (bias) {
      int64_t total = g.n * g.c_out * g.h_out * g.w_out;
      add_channel_bias_kernel<<<rf_blocks(total), 256>>>(y, bias, g.c_out, g.h_out * g.w_out, total);
      RF_LAUNCH_CHECK("conv2d bias");
    }
  } catch (const Error& e) {
    throw Error(cat(geometry_str("conv2d", g), ": ", e.what()));
  }
}

void conv2d_backward_data(const ConvGeometry& g, const float* gy, const float* w, float* gx) {
  try {
    ConvDescriptors d(g);
    AlgoChoice c = choose(kBackwardData, g, d);
    RF_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
    Workspace ws(c.workspace);
    const float one = 1.f, zero = 0.f;
    RF_CUDNN_CHECK(cudnnConvolutionBackwardData(handle(), &one, d.w, w, d.y, gy, d.conv,
                                                (cudnnConvolutionBwdDataAlgo_t)c.algo, ws.p, ws.bytes, &zero, d.x, gx));
  } catch (const Error& e) {
    throw Error(cat(geometry_str("conv2d data gradient", g), ": ", e.what()));
  }
}

void conv2d_backward_weight(const ConvGeometry& g, const float* x, const float* gy, float* gw) {
  try {
    ConvDescriptors d(g);
    AlgoChoice c = choose(kBackwardWeight, g, d);
    RF_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
    Workspace ws(c.workspace);
    const float one = 1.f, zero = 0.f;
    RF_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle(), &one, d.x, x, d.y, gy, d.conv,
                                                  (cudnnConvolutionBwdFilterAlgo_t)c.algo, ws.p, ws.bytes, &zero, d.w,
                                                  gw));
  } catch (const Error& e) {
    throw Error(cat(geometry_str("conv2d weight gradient", g), ": ", e.what()));
  }
}

}  // namespace rf::gpu
