// Devices: CPU and one CUDA GPU (pick it with CUDA_VISIBLE_DEVICES), chosen at run time.
#pragma once
#include <string>

#include "engine/error.h"

namespace rf {

enum class Device { CPU, CUDA };

const char* device_name(Device d);

// True when refocus was compiled with CUDA support.
bool built_with_cuda();

// True when CUDA support is compiled in and a usable GPU is present.
bool cuda_available();

// "NVIDIA H100 80GB HBM3, 79.1 GiB, compute 9.0, cuDNN 91900", or why CUDA is unusable.
std::string cuda_description();

// "2 threads, OpenBLAS" — what the CPU path runs on.
std::string cpu_description();

// Resolve "auto" | "cpu" | "cuda". "auto" takes CUDA when usable. Asking for "cuda" when it is
// unusable throws (never a silent fallback). With verbose, prints the choice to stderr.
Device select_device(const std::string& choice, bool verbose = true);

// Synchronise with the GPU (no-op on CPU builds); used by timers and tests.
void synchronize();

// The last op that ran CUDA work on this thread, with its tensors' shapes. Kernel launches are asynchronous, so a
// fault often surfaces at a later call: every CUDA error message names this op (see engine/cuda_check.h). Ops note
// themselves through RF_GPU_OP (ops/dispatch.h), backward passes through autograd. Kept without allocating: the first
// kMaxNotedShapes shapes, their first 8 dimensions.
constexpr int kMaxNotedShapes = 6;
void note_cuda_op(const char* op, const Shape* const* shapes, int count, bool backward = false);  // null: no tensor
// "kernel_bank on [1, 3, 720, 1280], [1, 66, 4]" or "the backward of conv2d (gradient [..]; inputs [..], [..])";
// "" when nothing has been noted on this thread.
std::string last_cuda_op();

// Deterministic mode: cuDNN picks only deterministic algorithms and scatter-type backward kernels
// use ordered reductions. Off by default (faster).
void set_deterministic(bool on);
bool deterministic();

}  // namespace rf
