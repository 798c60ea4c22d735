// One harness for every op: finite-difference gradient checks of the CPU path, CPU<->CUDA parity
// (skipped with a message when no GPU is present), and comparison with PyTorch golden files.
#pragma once
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ops/gauss_raster.h"
#include "ops/ops.h"

namespace rft {

using rf::Shape;
using rf::Tensor;
using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Random CPU tensor with values uniform in [lo, hi), reproducible from the seed.
Tensor uniform_input(const Shape& s, float lo, float hi, uint64_t seed);
// Values uniform in [lo, hi) with |v| >= gap: keeps inputs of kinked ops (relu, abs, ...) away from the kink.
Tensor input_away_from_zero(const Shape& s, float lo, float hi, float gap, uint64_t seed);

// n random blobs with centres in [0, w) x [0, h), scales in [s_lo, s_hi) px (rasterizer and gs tests).
rf::Blobs random_blobs(int64_t n, float h, float w, uint64_t seed, float s_lo = 0.7f, float s_hi = 4.f);

// ||a - b|| / ||b|| (b may not be all zeros).
double rel_err(const Tensor& a, const Tensor& b);
// Max |a - b|.
double max_abs_diff(const Tensor& a, const Tensor& b);

struct GradCheck {
  double eps = 1e-2;         // central-difference step
  double tol = 1e-2;         // on ||analytic - numeric|| / ||numeric|| over the checked entries
  int max_entries = 48;      // entries of each input checked (spread over the whole tensor)
  std::vector<int> skip;     // inputs not differentiated
};

// loss = sum(f(inputs) * r) for a fixed random r. Compares backward() against central differences.
void check_gradients(const std::string& name, const OpFn& f, std::vector<Tensor> inputs, GradCheck opt = {});

// Runs f on CPU and on CUDA (forward, then backward with the same random output gradient) and compares
// the output and every input gradient. Prints a skip message when no GPU is usable.
void check_cuda_parity(const std::string& name, const OpFn& f, std::vector<Tensor> inputs, double tol = 1e-4,
                       std::vector<int> skip = {});

// tests/golden/<name>.safetensors, written by tests/golden/make_golden.py: inputs in0.., out, gout and
// grad_in0.. computed by PyTorch in float64. Checks the forward (rel. err <= fwd_tol) and every stored
// input gradient (<= grad_tol).
void check_golden(const std::string& name, const OpFn& f, double fwd_tol = 1e-5, double grad_tol = 1e-4);

// A shell command's exit code and its output (stdout and stderr together).
std::string run_command(const std::string& cmd, int* code);
// Where the test binary and the programs live (build/bin).
std::string binary_dir();

// A program of build/bin run through the shell: its exit code (-1 when killed by a signal the shell did not
// report) and its output.
struct Run {
  int code;
  std::string output;
};
Run run_program(const std::string& program_and_args);

// A fresh folder under the system's temporary folder, removed with everything in it at scope exit; unique per
// process and per instance. d / "a/b" is the path of a/b inside it.
struct TempDir {
  std::filesystem::path path;
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

// The PyTorch twin of a network: runs tests/golden/<script> OUT_DIR (Debian's python3-torch, installed by `make
// deps`; the twins' weights are generated at test time because they are too large to commit).
void run_twin_script(const std::string& script, const std::string& out_dir);
// Splits a twin file (weights "w.*", inputs, expected outputs "out*", config in the metadata) and checks that
// `forward --model <model>` on the same weights and inputs gives every output within `tol` relative error.
// With convert_official, the weights go through `convert --official` first. When the twin records PyTorch's own
// float32-vs-float64 error ("float32_error"), the tolerance is at least 1.5 x that.
void check_twin_forward(const std::string& model, const std::string& twin_file, const std::string& work_dir,
                        double tol = 1e-4, bool convert_official = false);

// Count of parity checks that ran on a GPU / were skipped (reported at the end of the run).
int gpu_checks_run();
int gpu_checks_skipped();

}  // namespace rft
