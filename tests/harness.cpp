#include "tests/harness.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "engine/device.h"
#include "engine/fileio.h"
#include "engine/safetensors.h"

#include <sys/wait.h>

#include <filesystem>
#include <map>

namespace rft {

using namespace rf;

static int g_gpu_run = 0, g_gpu_skipped = 0;
int gpu_checks_run() { return g_gpu_run; }
int gpu_checks_skipped() { return g_gpu_skipped; }

namespace {
struct ReportAtExit {
  ~ReportAtExit() {
    if (g_gpu_run || g_gpu_skipped)
      std::fprintf(stderr, "CUDA parity checks: %d run, %d skipped (no GPU)\n", g_gpu_run, g_gpu_skipped);
  }
} report_at_exit;
}  // namespace

Tensor uniform_input(const Shape& s, float lo, float hi, uint64_t seed) {
  Generator g(seed);
  return uniform(s, lo, hi, Device::CPU, &g);
}

Tensor input_away_from_zero(const Shape& s, float lo, float hi, float gap, uint64_t seed) {
  std::vector<float> v = uniform_input(s, lo, hi, seed).to_vector();
  for (float& x : v)
    if (std::fabs(x) < gap) x = x < 0 ? x - gap : x + gap;
  return from_vector(v, s);
}

Blobs random_blobs(int64_t n, float h, float w, uint64_t seed, float s_lo, float s_hi) {
  Generator g(seed);
  std::vector<float> m(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    m[2 * i] = g.uniform(0.f, w);
    m[2 * i + 1] = g.uniform(0.f, h);
  }
  Blobs b;
  b.means = from_vector(m, {n, 2});
  b.theta = uniform({n}, 0.f, 3.14159f, Device::CPU, &g);
  b.scales = uniform({n, 2}, s_lo, s_hi, Device::CPU, &g);
  b.colors = uniform({n, 3}, -0.5f, 1.f, Device::CPU, &g);
  b.opacity = uniform({n}, 0.2f, 1.f, Device::CPU, &g);
  return b;
}

double rel_err(const Tensor& a, const Tensor& b) {
  REQUIRE_MESSAGE(a.shape() == b.shape(), "shapes differ: " << describe(a) << " vs " << describe(b));
  auto va = a.to_vector(), vb = b.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    num += ((double)va[i] - vb[i]) * ((double)va[i] - vb[i]);
    den += (double)vb[i] * vb[i];
  }
  REQUIRE_MESSAGE(den > 0, "reference is all zeros: the comparison would prove nothing");
  return std::sqrt(num / den);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  auto va = a.to_vector(), vb = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::fabs((double)va[i] - vb[i]));
  return m;
}

static bool skipped(const std::vector<int>& skip, int i) {
  for (int s : skip)
    if (s == i) return true;
  return false;
}

static std::vector<Tensor> make_leaves(const std::vector<Tensor>& inputs, const std::vector<int>& skip, Device d) {
  std::vector<Tensor> xs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor t = empty(inputs[i].shape(), d);
    t.copy_(inputs[i]);
    if (!skipped(skip, (int)i)) t.set_requires_grad(true);
    xs.push_back(t);
  }
  return xs;
}

static double weighted_sum(const Tensor& out, const std::vector<float>& r) {
  auto v = out.to_vector();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += (double)v[i] * r[i];
  return s;
}

void check_gradients(const std::string& name, const OpFn& f, std::vector<Tensor> inputs, GradCheck opt) {
  std::vector<Tensor> xs = make_leaves(inputs, opt.skip, Device::CPU);
  Tensor out = f(xs);
  Tensor r = uniform_input(out.shape(), -1.f, 1.f, 4242);
  std::vector<float> rv = r.to_vector();
  out.backward(r);
  for (size_t i = 0; i < xs.size(); ++i) {
    if (skipped(opt.skip, (int)i)) continue;
    REQUIRE_MESSAGE(xs[i].grad().defined(), name << ": no gradient reached input " << i);
    std::vector<float> analytic = xs[i].grad().to_vector();
    std::vector<float> base = inputs[i].to_vector();
    int64_t n = (int64_t)base.size();
    int64_t count = std::min<int64_t>(n, opt.max_entries);
    double num2 = 0, diff2 = 0;
    int64_t worst = -1;
    double worst_d = -1, worst_a = 0, worst_n = 0;
    for (int64_t c = 0; c < count; ++c) {
      int64_t idx = (c * n) / count;  // evenly spread over the tensor
      double lp, lm;
      {
        NoGrad ng;
        std::vector<Tensor> args = inputs;
        std::vector<float> v = base;
        v[idx] = base[idx] + (float)opt.eps;
        args[i] = from_vector(v, inputs[i].shape());
        lp = weighted_sum(f(args), rv);
        v[idx] = base[idx] - (float)opt.eps;
        args[i] = from_vector(v, inputs[i].shape());
        lm = weighted_sum(f(args), rv);
      }
      // The step actually taken in float32 (base +- eps need not be exact).
      double step = (double)(base[idx] + (float)opt.eps) - (double)(base[idx] - (float)opt.eps);
      double numeric = (lp - lm) / step;
      double d = std::fabs(numeric - analytic[idx]);
      num2 += numeric * numeric;
      diff2 += d * d;
      if (d > worst_d) {
        worst_d = d;
        worst = idx;
        worst_a = analytic[idx];
        worst_n = numeric;
      }
    }
    double err = std::sqrt(diff2) / std::max(std::sqrt(num2), 1e-3);
    CHECK_MESSAGE(err <= opt.tol, name << ": gradient of input " << i << " differs from finite differences by "
                                       << err << " (worst entry " << worst << ": analytic " << worst_a
                                       << ", numeric " << worst_n << ")");
  }
}

void check_cuda_parity(const std::string& name, const OpFn& f, std::vector<Tensor> inputs, double tol,
                       std::vector<int> skip) {
  if (!cuda_available()) {
    g_gpu_skipped++;
    MESSAGE(name << ": CUDA parity skipped (" << cuda_description() << ")");
    return;
  }
  g_gpu_run++;
  std::vector<Tensor> xc = make_leaves(inputs, skip, Device::CPU);
  std::vector<Tensor> xg = make_leaves(inputs, skip, Device::CUDA);
  Tensor oc = f(xc), og = f(xg);
  REQUIRE(og.is_cuda());
  CHECK_MESSAGE(rel_err(og.cpu(), oc) <= tol, name << ": CUDA forward differs from CPU by " << rel_err(og.cpu(), oc));
  if (!oc.requires_grad()) return;
  Tensor r = uniform_input(oc.shape(), -1.f, 1.f, 777);
  oc.backward(r);
  og.backward(r.cuda());
  for (size_t i = 0; i < xc.size(); ++i) {
    if (skipped(skip, (int)i)) continue;
    REQUIRE_MESSAGE(xg[i].grad().defined(), name << ": no CUDA gradient for input " << i);
    double e = rel_err(xg[i].grad().cpu(), xc[i].grad());
    CHECK_MESSAGE(e <= tol, name << ": CUDA gradient of input " << i << " differs from CPU by " << e);
  }
}

void check_golden(const std::string& name, const OpFn& f, double fwd_tol, double grad_tol) {
  std::string path = std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/" + name + ".safetensors";
  REQUIRE_MESSAGE(file_exists(path), path << " is missing: run `make golden` (needs python3-torch)");
  SafeTensors st = load_safetensors(path);
  std::vector<Tensor> inputs;
  std::vector<int> skip;
  for (int k = 0; st.tensors.count("in" + std::to_string(k)); ++k) {
    inputs.push_back(st.tensors["in" + std::to_string(k)]);
    if (!st.tensors.count("grad_in" + std::to_string(k))) skip.push_back(k);
  }
  REQUIRE_MESSAGE((!inputs.empty() && st.tensors.count("out")), path << " has no inputs or no output");
  std::vector<Tensor> xs = make_leaves(inputs, skip, Device::CPU);
  Tensor out = f(xs);
  const Tensor& ref = st.tensors["out"];
  REQUIRE_MESSAGE(out.shape() == ref.shape(), name << ": output " << describe(out) << ", PyTorch " << describe(ref));
  double e = rel_err(out, ref);
  CHECK_MESSAGE(e <= fwd_tol, name << ": forward differs from PyTorch by " << e);
  if (!st.tensors.count("gout")) return;
  out.backward(st.tensors["gout"]);
  for (size_t k = 0; k < xs.size(); ++k) {
    if (skipped(skip, (int)k)) continue;
    REQUIRE_MESSAGE(xs[k].grad().defined(), name << ": no gradient for input " << k);
    double ge = rel_err(xs[k].grad(), st.tensors["grad_in" + std::to_string(k)]);
    CHECK_MESSAGE(ge <= grad_tol, name << ": gradient of input " << k << " differs from PyTorch by " << ge);
  }
}

std::string run_command(const std::string& cmd, int* code) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = pclose(p);
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::string binary_dir() { return std::filesystem::read_symlink("/proc/self/exe").parent_path().string(); }

Run run_program(const std::string& program_and_args) {
  int code = 0;
  std::string out = run_command(binary_dir() + "/" + program_and_args, &code);
  return {code, out};
}

TempDir::TempDir() {
  static int counter = 0;
  path = std::filesystem::temp_directory_path() /
         ("refocus_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::create_directories(path);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

void run_twin_script(const std::string& script, const std::string& out_dir) {
  int code = 0;
  std::string out = run_command("/usr/bin/python3 " + std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/" + script + " " + out_dir, &code);
  REQUIRE_MESSAGE(code == 0, script << " failed (the twins need Debian's python3-torch: `make deps` installs it):\n" << out);
}

void check_twin_forward(const std::string& model, const std::string& twin_file, const std::string& dir, double tol,
                        bool convert_official) {
  SafeTensors st = load_safetensors(twin_file);
  std::vector<std::pair<std::string, Tensor>> weights, inputs;
  std::map<std::string, Tensor> expected;
  for (auto& [k, t] : st.tensors) {
    if (k.rfind("w.", 0) == 0) weights.emplace_back(k.substr(2), t);
    else if (k.rfind("out", 0) == 0) expected[k] = t;
    else inputs.emplace_back(k, t);
  }
  REQUIRE_MESSAGE(!expected.empty(), twin_file << " holds no outputs");
  const std::string w = dir + "/twin_weights.safetensors", in = dir + "/twin_in.safetensors", cfg = dir + "/twin_config.json",
                    out = dir + "/twin_out.safetensors";
  save_safetensors(w, weights);
  save_safetensors(in, inputs);
  write_file_atomic(cfg, st.metadata.count("config") ? st.metadata["config"] : "{}");
  int code = 0;
  std::string weights_file = w;
  if (convert_official) {
    weights_file = dir + "/twin_converted.safetensors";
    std::string log = run_command(binary_dir() + "/convert --model " + model + " --official " + w + " " + weights_file, &code);
    REQUIRE_MESSAGE(code == 0, log);
  }
  std::string log = run_command(binary_dir() + "/forward --model " + model + " --device cpu --weights " + weights_file +
                                    " --config " + cfg + " " + in + " " + out,
                                &code);
  REQUIRE_MESSAGE(code == 0, log);
  SafeTensors got = load_safetensors(out);
  // A twin may record how far PyTorch's own float32 run lands from its float64 reference: float32 cannot be asked
  // to do better than that.
  if (st.metadata.count("float32_error")) {
    const double floor = std::stod(st.metadata["float32_error"]);
    MESSAGE(model << ": PyTorch float32 vs float64 on the same network: " << floor << " relative error");
    tol = std::max(tol, 1.5 * floor);
  }
  for (auto& entry : expected) {  // not a structured binding: doctest's macros capture k and want in lambdas
    const std::string& k = entry.first;
    const Tensor& want = entry.second;
    REQUIRE_MESSAGE(got.tensors.count(k), model << ": forward wrote no " << k);
    REQUIRE_MESSAGE(got.tensors[k].shape() == want.shape(), model << " " << k << ": " << describe(got.tensors[k]) << " vs twin "
                                                                  << describe(want));
    double e = rel_err(got.tensors[k], want);
    MESSAGE(model << " " << k << " " << describe(want) << ": relative error " << e << " against the PyTorch twin");
    CHECK(e < tol);
  }
}

}  // namespace rft
