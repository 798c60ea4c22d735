// The engine around the ops: autograd, random numbers, devices, GEMM/conv fast paths against their naive
// oracles, safetensors, modules, optimizers and schedules (against PyTorch), checkpoints.
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "engine/allocator.h"
#include "engine/fileio.h"
#include "engine/safetensors.h"
#include "layers/init.h"
#include "layers/layers.h"
#include "ops/conv_impl.h"
#include "ops/dispatch.h"
#include "ops/gemm.h"
#include "tests/harness.h"
#include "layers/checkpoint.h"
#include "layers/optim.h"

using namespace rf;
using namespace rft;

static std::string golden(const std::string& name) {
  return std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/" + name + ".safetensors";
}

static std::string temp_dir() {
  static int counter = 0;
  auto d = std::filesystem::temp_directory_path() /
           ("refocus_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::filesystem::create_directories(d);
  return d.string();
}

TEST_SUITE("autograd") {

TEST_CASE("gradients accumulate over uses and over backward calls") {
  Tensor x = from_vector({1.f, -2.f, 3.f}, {3}).set_requires_grad();
  Tensor y = sum(x * x + x);  // dy/dx = 2x + 1
  y.backward();
  CHECK(x.grad().to_vector() == std::vector<float>{3.f, -3.f, 7.f});
  sum(x * 3.f).backward();  // accumulates: + 3
  CHECK(x.grad().to_vector() == std::vector<float>{6.f, 0.f, 10.f});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("shared subexpressions and a diamond graph") {
  Tensor a = from_vector({0.5f, 1.5f}, {2}).set_requires_grad();
  Tensor b = exp(a);
  Tensor c = b * b + sin(b);  // dc/da = (2b + cos b) * b
  sum(c).backward();
  auto g = a.grad().to_vector();
  for (int i = 0; i < 2; ++i) {
    float bv = std::exp(i ? 1.5f : 0.5f);
    CHECK(g[i] == doctest::Approx((2 * bv + std::cos(bv)) * bv).epsilon(1e-5));
  }
}

TEST_CASE("NoGrad, detach and leaves") {
  Tensor w = ones({2, 2}).set_requires_grad();
  {
    NoGrad ng;
    Tensor y = w * 2.f;
    CHECK_FALSE(y.requires_grad());
  }
  Tensor d = (w * 2.f).detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.to_vector() == std::vector<float>(4, 2.f));
  Tensor y = w * 2.f;
  CHECK_THROWS_WITH_AS(y.set_requires_grad(true), doctest::Contains("only leaf tensors"), Error);
  CHECK_THROWS_WITH_AS(backward(w * 2.f), doctest::Contains("needs a grad_output"), Error);
}

TEST_CASE("a graph is walked once, with a clear message the second time") {
  Tensor x = ones({3}).set_requires_grad();
  Tensor y = sum(exp(x));
  y.backward();
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("a second time"), Error);
}

TEST_CASE("views: reshape, narrow0 and indexing share storage and route gradients") {
  Tensor x = arange(12).reshape({3, 4}).detach();
  x.set_requires_grad(true);
  Tensor row = x[1];
  CHECK(row.shape() == Shape{4});
  CHECK(row.data() == x.data() + 4);
  Tensor loss = sum(row * row) + sum(x.narrow0(2, 1));
  loss.backward();
  auto g = x.grad().to_vector();
  CHECK(g[0] == 0.f);
  CHECK(g[5] == 10.f);  // 2 * x[1][1] = 2 * 5
  CHECK(g[8] == 1.f);
}

}  // TEST_SUITE

TEST_SUITE("engine") {

TEST_CASE("device selection is explicit and never falls back silently") {
  CHECK_THROWS_WITH_AS(select_device("tpu", false), doctest::Contains("unknown device 'tpu'"), Error);
  if (!cuda_available()) {
    CHECK_THROWS_WITH_AS(select_device("cuda", false), doctest::Contains("CUDA is unusable"), Error);
    CHECK(select_device("auto", false) == Device::CPU);
  } else {
    CHECK(select_device("auto", false) == Device::CUDA);
  }
  CHECK(select_device("cpu", false) == Device::CPU);
}

TEST_CASE("Philox: reproducible, well distributed, identical on CPU and CUDA") {
  Generator g1(123), g2(123), g3(124);
  Tensor a = rand({10000}, Device::CPU, &g1), b = rand({10000}, Device::CPU, &g2), c = rand({10000}, Device::CPU, &g3);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  double m = mean(a).item(), lo = -max(neg(a), 0).item(), hi = max(a, 0).item();
  CHECK(m == doctest::Approx(0.5).epsilon(0.02));
  CHECK(lo >= 0.0);
  CHECK(hi < 1.0);
  Generator gn(5);
  Tensor n = randn({20000}, Device::CPU, &gn);
  CHECK(mean(n).item() == doctest::Approx(0.0).epsilon(0.03));
  CHECK(std::sqrt(mean(n * n).item()) == doctest::Approx(1.0).epsilon(0.03));
  // the generator's offset makes consecutive draws differ
  Tensor a2 = rand({10000}, Device::CPU, &g1);
  CHECK(a2.to_vector() != a.to_vector());
  if (cuda_available()) {
    Generator gc(123), gg(123);
    CHECK(rand({777}, Device::CPU, &gc).to_vector() == rand({777}, Device::CUDA, &gg).to_vector());
    Generator nc(9), ng(9);
    CHECK(max_abs_diff(randn({777}, Device::CUDA, &ng).cpu(), randn({777}, Device::CPU, &nc)) < 1e-5);
  } else {
    MESSAGE("Philox CPU/CUDA identity skipped (" << cuda_description() << ")");
  }
}

TEST_CASE("dropout: drop rate, scaling, the same mask forward and backward") {
  Generator g(77);
  Tensor x = full({100000}, 2.f).set_requires_grad();
  Tensor y = dropout(x, 0.3f, true, &g);
  auto v = y.to_vector();
  int64_t zeros_count = 0, badly_scaled = 0;
  for (float f : v) {
    if (f == 0.f) zeros_count++;
    else if (std::fabs(f - 2.f / 0.7f) > 1e-5f) badly_scaled++;
  }
  CHECK((double)zeros_count / v.size() == doctest::Approx(0.3).epsilon(0.03));
  CHECK(badly_scaled == 0);
  sum(y).backward();
  auto gx = x.grad().to_vector();
  int64_t mask_mismatch = 0;
  for (size_t i = 0; i < v.size(); ++i) mask_mismatch += (gx[i] == 0.f) != (v[i] == 0.f);
  CHECK(mask_mismatch == 0);
  CHECK(dropout(x, 0.3f, false).impl() == x.impl());  // evaluation: identity
  check_cuda_parity("dropout", [](auto& in) { Generator gd(5); return dropout(in[0], 0.25f, true, &gd); },
                    {uniform_input({4, 5, 6}, -1, 1, 3)});
}

TEST_CASE("caching CUDA allocator reuses blocks and reports its statistics") {
  if (!cuda_available()) {
    MESSAGE("allocator test skipped (" << cuda_description() << ")");
    CHECK(cuda_alloc_stats().requests == 0);
    return;
  }
  cuda_empty_cache();
  CudaAllocStats before = cuda_alloc_stats();
  for (int i = 0; i < 10; ++i) {
    Tensor t = empty({1024, 1024}, Device::CUDA);
    t.fill_(1.f);
  }
  CudaAllocStats after = cuda_alloc_stats();
  CHECK(after.cuda_malloc_calls - before.cuda_malloc_calls == 1);
  CHECK(after.cache_hits - before.cache_hits >= 9);
  CHECK(after.cached_bytes >= 4u << 20);
}

TEST_CASE("host blocks of 32 MiB and more are kept after free for the next request of that size, the oldest freed first") {
  host_empty_cache();
  const size_t big = 10u << 20;  // floats: 40 MiB
  const float* first = nullptr;
  {
    Tensor t = empty({(int64_t)big});
    t.fill_(2.f);
    first = t.data();
    CHECK(host_alloc_stats().cached_bytes == 0);
  }
  const size_t kept = host_alloc_stats().cached_bytes;
  {
    Tensor small = empty({1024});  // below the threshold: not taken from, not kept
    Tensor t = empty({(int64_t)big});
    if (kept == 0) {
      MESSAGE("host block cache off (AddressSanitizer build)");
    } else {
      CHECK(kept == big * sizeof(float));
      CHECK(t.data() == first);
      CHECK(host_alloc_stats().cached_bytes == 0);
    }
    t.fill_(3.f);
    CHECK(t.data()[big - 1] == 3.f);
  }
  host_empty_cache();
  CHECK(host_alloc_stats().cached_bytes == 0);
  if (kept == 0) return;
  const size_t saved_limit = host_cache_limit();
  host_set_cache_limit(100u << 20);
  const int64_t mib = 1 << 18;  // floats
  auto cached_mib = [] { return host_alloc_stats().cached_bytes >> 20; };
  {
    Tensor a = empty({40 * mib}), b = empty({48 * mib});
  }  // b is freed first, then a
  CHECK(cached_mib() == 88);
  {
    Tensor c = empty({36 * mib});  // a miss frees the longest-kept block (b) before allocating
    CHECK(cached_mib() == 40);
  }
  CHECK(cached_mib() == 76);
  {
    Tensor small = empty({30 * mib});  // below 32 MiB: glibc's heap, the cache untouched
    Tensor e = empty({64 * mib});      // a miss: both kept blocks go (40 + 36 >= 64)
    CHECK(cached_mib() == 0);
  }
  CHECK(cached_mib() == 64);
  host_empty_cache();
  {
    Tensor f = empty({40 * mib}), g = empty({40 * mib}), h = empty({40 * mib});
  }  // h, g, f freed in turn: the third would pass 100 MiB, so the longest-kept (h) goes
  CHECK(cached_mib() == 80);
  host_set_cache_limit(saved_limit);
  host_empty_cache();
}

TEST_CASE("GEMM: built-in blocked and BLAS paths match the naive oracle") {
  struct Case { bool ta, tb; int64_t m, n, k; float alpha, beta; };
  for (Case c : {Case{false, false, 37, 53, 29, 1.f, 0.f}, Case{true, false, 64, 17, 300, 0.5f, 1.f},
                 Case{false, true, 7, 129, 33, 1.f, 0.5f}, Case{true, true, 100, 100, 1, 2.f, 0.f},
                 Case{false, false, 1, 1, 1000, 1.f, 0.f}}) {
    GemmShape s = gemm_shape(c.ta, c.tb, c.m, c.n, c.k, c.alpha, c.beta);
    Tensor a = uniform_input({c.m * c.k}, -1, 1, 1), b = uniform_input({c.k * c.n}, -1, 1, 2);
    Tensor c0 = uniform_input({c.m, c.n}, -1, 1, 3);
    Tensor ref = c0.clone(), blocked = c0.clone(), fast = c0.clone();
    cpu::gemm_naive(s, a.data(), b.data(), ref.data());
    cpu::gemm_blocked(s, a.data(), b.data(), blocked.data());
    cpu::gemm(s, a.data(), b.data(), fast.data());
    CHECK_MESSAGE(rel_err(blocked, ref) < 1e-5, "blocked gemm " << c.m << "x" << c.n << "x" << c.k);
    CHECK_MESSAGE(rel_err(fast, ref) < 1e-5, "gemm " << c.m << "x" << c.n << "x" << c.k);
  }
}

// The backward passes by the adjoint identities: for y = conv(x, w) (no bias), <y, gy> = <x, gx> = <w, gw>.
static double dot(const Tensor& a, const Tensor& b) {
  double acc = 0;
  for (int64_t i = 0; i < a.numel(); ++i) acc += (double)a.data()[i] * b.data()[i];
  return acc;
}

TEST_CASE("conv2d: the CPU paths match the seven-loop oracle, their gradients the adjoint identities") {
  struct Case { int64_t n, ci, h, w, co, k, s, p, d, g; };
  // Then: padding wider than the kernel reaches (whole rows and columns of zeros), stride 3, one tall image
  // whose forward pass is cut into two bands of rows, and a 16 -> 17 channel 3x3 that conv2d sends down the
  // Winograd path (its autograd wiring, checked by the same identities). On two threads whatever the machine, so
  // that the batches run one image per thread and the tall image's two bands run on different threads.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);
  for (Case c : {Case{2, 3, 9, 8, 4, 3, 1, 1, 1, 1}, Case{1, 4, 11, 10, 6, 5, 2, 2, 1, 2}, Case{1, 2, 9, 9, 2, 3, 1, 2, 2, 2},
                 Case{3, 5, 4, 6, 7, 1, 1, 0, 1, 1}, Case{1, 2, 5, 7, 3, 3, 3, 4, 1, 1}, Case{2, 3, 8, 13, 2, 4, 2, 3, 2, 1},
                 Case{1, 64, 400, 4, 2, 3, 1, 1, 1, 1}, Case{2, 16, 9, 7, 17, 3, 1, 1, 1, 1}}) {
    CAPTURE(c.k);
    CAPTURE(c.s);
    CAPTURE(c.p);
    Tensor x = uniform_input({c.n, c.ci, c.h, c.w}, -1, 1, 11), w = uniform_input({c.co, c.ci / c.g, c.k, c.k}, -1, 1, 12);
    Tensor b = uniform_input({c.co}, -1, 1, 13);
    Tensor y = conv2d(x, w, b, ConvOptions::make(c.s, c.p, c.d, c.g));
    ConvGeometry g{c.n, c.ci, c.h, c.w, c.co, y.size(2), y.size(3), c.k, c.k, c.s, c.s, c.p, c.p, c.d, c.d, c.g};
    Tensor ref = empty_like(y);
    cpu::conv2d_naive(g, x.data(), w.data(), b.data(), ref.data());
    CHECK(rel_err(y, ref) < 1e-5);
    Tensor xg = x.detach().set_requires_grad(), wg = w.detach().set_requires_grad();
    Tensor y0 = conv2d(xg, wg, Tensor(), ConvOptions::make(c.s, c.p, c.d, c.g));
    Tensor gy = uniform_input(y0.shape(), -1, 1, 14);
    y0.backward(gy);
    const double yy = dot(y0, gy);
    CHECK(std::abs(dot(x, xg.grad()) - yy) <= 1e-4 * (1 + std::abs(yy)));
    CHECK(std::abs(dot(w, wg.grad()) - yy) <= 1e-4 * (1 + std::abs(yy)));
  }
  omp_set_num_threads(threads);
}

TEST_CASE("conv2d: the Winograd path matches the im2col path in all three passes") {
  struct Case { int64_t n, ci, h, w, co, p; };
  // Odd sizes (edge tiles cut), padding 0 to 3 (3: the data gradient pads by -1), a 1x1 image, a tall image whose
  // tiles split into chunks spread over two threads, and an image with too many tiles for the weight
  // gradient's whole-image mode (so it sums per-thread accumulators).
  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);
  for (Case c : {Case{2, 16, 9, 8, 17, 1}, Case{1, 20, 7, 11, 16, 0}, Case{3, 16, 5, 5, 24, 2}, Case{1, 32, 1, 1, 16, 1},
                 Case{2, 16, 301, 7, 16, 1}, Case{1, 16, 261, 259, 16, 1}, Case{1, 16, 6, 5, 16, 3}}) {
    CAPTURE(c.h);
    CAPTURE(c.w);
    CAPTURE(c.p);
    Tensor x = uniform_input({c.n, c.ci, c.h, c.w}, -1, 1, 21), w = uniform_input({c.co, c.ci, 3, 3}, -1, 1, 22);
    Tensor b = uniform_input({c.co}, -1, 1, 23);
    const int64_t ho = c.h + 2 * c.p - 2, wo = c.w + 2 * c.p - 2;
    ConvGeometry g{c.n, c.ci, c.h, c.w, c.co, ho, wo, 3, 3, 1, 1, c.p, c.p, 1, 1, 1};
    REQUIRE(cpu::winograd_applies(g));
    Tensor y = zeros({c.n, c.co, ho, wo}), ref = zeros({c.n, c.co, ho, wo});
    cpu::winograd_forward(g, x.data(), w.data(), b.data(), y.data());
    cpu::conv2d_naive(g, x.data(), w.data(), b.data(), ref.data());
    CHECK(rel_err(y, ref) < 1e-5);
    Tensor gy = uniform_input({c.n, c.co, ho, wo}, -1, 1, 24);
    Tensor gx = zeros(x.shape()), gx_ref = zeros(x.shape()), gw = zeros(w.shape()), gw_ref = zeros(w.shape());
    cpu::winograd_backward_data(g, gy.data(), w.data(), gx.data());
    cpu::conv2d_backward_data_im2col(g, gy.data(), w.data(), gx_ref.data());
    CHECK(rel_err(gx, gx_ref) < 1e-5);
    cpu::winograd_backward_weight(g, x.data(), gy.data(), gw.data());
    cpu::conv2d_backward_weight_im2col(g, x.data(), gy.data(), gw_ref.data());
    CHECK(rel_err(gw, gw_ref) < 1e-5);
  }
  // Too few channels or another stride stays on the im2col path.
  CHECK_FALSE(cpu::winograd_applies(ConvGeometry{1, 3, 8, 8, 64, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1}));
  CHECK_FALSE(cpu::winograd_applies(ConvGeometry{1, 64, 8, 8, 64, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1}));
  omp_set_num_threads(threads);
}

TEST_CASE("op errors name the op and the shapes") {
  Tensor x = zeros({1, 3, 8, 8}), w = zeros({4, 2, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor()), doctest::Contains("input [1, 3, 8, 8], weight [4, 2, 3, 3]"), Error);
  CHECK_THROWS_WITH_AS(add(zeros({2, 3}), zeros({4})), doctest::Contains("shapes [2, 3] and [4] do not broadcast"), Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({4, 5})), doctest::Contains("inner sizes differ"), Error);
  CHECK_THROWS_WITH_AS(pad2d(zeros({1, 1, 3, 3}), 3, 0, 0, 0, PadMode::Reflect), doctest::Contains("reflect padding"), Error);
}


TEST_CASE("a CUDA error names the last op to start CUDA work, with its shapes") {
  // What every CUDA, cuDNN, cuBLAS and cuFFT error message appends (engine/cuda_check.h); noted without a GPU too.
  Tensor x = uniform_input({1, 3, 5, 7}, 0.f, 1.f, 1), w = uniform_input({1, 66, 4}, 0.f, 1.f, 2);
  note_cuda_tensors("kernel_bank", {x, Tensor(), w});
  CHECK(last_cuda_op() == "kernel_bank on [1, 3, 5, 7], none, [1, 66, 4]");
  Shape g{2, 3}, a{2, 3}, b{3}, deep{1, 2, 3, 4, 5, 6, 7, 8, 9};
  const Shape* backward_shapes[] = {&g, &a, &b};
  note_cuda_op("mul", backward_shapes, 3, true);
  CHECK(last_cuda_op() == "the backward of mul (gradient [2, 3]; inputs [2, 3], [3])");
  const Shape* one[] = {&deep};
  note_cuda_op("copy", one, 1);
  CHECK(last_cuda_op() == "copy on [1, 2, 3, 4, 5, 6, 7, 8, ...]");
  note_cuda_tensors("concat", {x, x, x, x, x, x, x, x});  // more than are kept: the first kMaxNotedShapes
  std::string noted = last_cuda_op();
  int kept = 0;
  for (size_t at = noted.find("[1, 3, 5, 7]"); at != std::string::npos; at = noted.find("[1, 3, 5, 7]", at + 1)) ++kept;
  CHECK(noted.rfind("concat on ", 0) == 0);
  CHECK(kept == kMaxNotedShapes);
}

}  // TEST_SUITE

TEST_SUITE("checkpoints") {

TEST_CASE("safetensors round trip with metadata, atomically") {
  std::string dir = temp_dir(), path = dir + "/t.safetensors";
  Tensor a = uniform_input({2, 3}, -1, 1, 1), b = uniform_input({5}, -1, 1, 2);
  save_safetensors(path, {{"a", a}, {"b.c", b}}, {{"hello", "world"}});
  SafeTensors st = load_safetensors(path);
  CHECK(st.metadata["hello"] == "world");
  CHECK(st.tensors["a"].to_vector() == a.to_vector());
  CHECK(st.tensors["b.c"].shape() == Shape{5});
  for (auto& e : std::filesystem::directory_iterator(dir))
    CHECK_MESSAGE(e.path().string().find(".tmp") == std::string::npos, "temporary file left behind: " << e.path());
  std::filesystem::remove_all(dir);
}

TEST_CASE("malformed safetensors files give one clear sentence") {
  std::string dir = temp_dir(), path = dir + "/bad.safetensors";
  save_safetensors(path, {{"w", uniform_input({4, 4}, -1, 1, 1)}});
  std::string bytes = read_file(path);
  write_file_atomic(path, bytes.substr(0, bytes.size() - 10));  // truncated
  CHECK_THROWS_WITH_AS(load_safetensors(path), doctest::Contains("data offsets outside the file"), Error);
  write_file_atomic(path, "abc");
  CHECK_THROWS_WITH_AS(load_safetensors(path), doctest::Contains("not a safetensors file"), Error);
  std::string h = "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}";
  std::string raw(8, '\0');
  raw[0] = (char)h.size();
  write_file_atomic(path, raw + h + "x");
  CHECK_THROWS_WITH_AS(load_safetensors(path), doctest::Contains("has dtype U8"), Error);
  CHECK_THROWS_WITH_AS(load_safetensors(dir + "/missing.safetensors"), doctest::Contains("cannot open"), Error);
  std::filesystem::remove_all(dir);
}

// The refocus twin of torch_model() in tests/golden/make_golden.py.
static std::shared_ptr<Sequential> twin_model() {
  return std::make_shared<Sequential>(std::vector<std::shared_ptr<UnaryModule>>{
      std::make_shared<Conv2d>(3, 8, 3, ConvOptions::make(1, 1)), std::make_shared<BatchNorm2d>(8),
      std::make_shared<Activation>(Act::ReLU),
      std::make_shared<Conv2d>(8, 2, 3, ConvOptions::make(1, 1), true, PadMode::Reflect)});
}

TEST_CASE("weights written by PyTorch load here and give PyTorch's output") {
  auto m = twin_model();
  load_checkpoint(golden("torch_model"), *m);
  m->eval();
  SafeTensors io = load_safetensors(golden("torch_model_io"));
  Tensor y = m->forward(io.tensors["x"]);
  CHECK(rel_err(y, io.tensors["y"]) < 1e-5);
}

TEST_CASE("weights written here load in PyTorch and give our output") {
  auto m = twin_model();
  m->train();
  for (int i = 0; i < 2; ++i) m->forward(uniform_input({4, 3, 6, 7}, -2, 2, 50 + i));  // move BN statistics
  m->eval();
  std::string dir = temp_dir();
  save_checkpoint(dir + "/ours.safetensors", *m, CheckpointInfo{"twin", {{"width", 8}}, 7});
  Tensor x = uniform_input({2, 3, 6, 7}, -1, 1, 60);
  save_safetensors(dir + "/io.safetensors", {{"x", x}, {"y", m->forward(x)}});
  CheckpointInfo info = read_checkpoint_info(dir + "/ours.safetensors");
  CHECK(info.model == "twin");
  CHECK(info.step == 7);
  CHECK(info.config["width"] == 8);
  bool have_torch = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  if (!have_torch) {
    MESSAGE("PyTorch round trip skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)");
  } else {
    std::string cmd = "/usr/bin/python3 " + std::string(REFOCUS_SOURCE_DIR) + "/tests/golden/torch_roundtrip.py " +
                      dir + "/ours.safetensors " + dir + "/io.safetensors";
    CHECK_MESSAGE(std::system(cmd.c_str()) == 0, "PyTorch could not reproduce our output: " << cmd);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("loading checks names and shapes and says which one is wrong") {
  auto m = twin_model();
  std::string dir = temp_dir(), path = dir + "/w.safetensors";
  auto sd = m->state_dict();
  sd[0].second = zeros({8, 3, 5, 5});
  save_safetensors(path, sd);
  CHECK_THROWS_WITH_AS(load_checkpoint(path, *m), doctest::Contains("'0.weight' has shape [8, 3, 5, 5] but the model expects [8, 3, 3, 3]"), Error);
  sd = m->state_dict();
  sd.pop_back();
  save_safetensors(path, sd);
  CHECK_THROWS_WITH_AS(load_checkpoint(path, *m), doctest::Contains("'1.num_batches_tracked' of shape [] is missing"), Error);
  sd = m->state_dict();
  sd.emplace_back("extra.weight", zeros({2}));
  save_safetensors(path, sd);
  CHECK_THROWS_WITH_AS(load_checkpoint(path, *m), doctest::Contains("'extra.weight' of shape [2] does not belong"), Error);
  std::filesystem::remove_all(dir);
}

}  // TEST_SUITE

TEST_SUITE("modules") {

TEST_CASE("dotted PyTorch-style names, parameter counts, train/eval") {
  auto m = std::make_shared<Sequential>();
  m->push_back(std::make_shared<Conv2d>(3, 4, 3, ConvOptions::make(1, 1)));
  m->push_back(std::make_shared<ResBlock>(4));
  m->push_back(std::make_shared<BatchNorm2d>(4));
  std::vector<std::string> names;
  for (auto& [n, t] : m->named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "1.body.0.weight", "1.body.0.bias", "1.body.2.weight",
                                          "1.body.2.bias", "2.weight", "2.bias"});
  CHECK(m->num_parameters() == 4 * 3 * 9 + 4 + 2 * (4 * 4 * 9 + 4) + 8);
  CHECK(m->named_buffers().size() == 3);
  m->eval();
  CHECK_FALSE((*m)[2].training());
}

TEST_CASE("PyTorch default initialisation bounds") {
  Conv2d c(16, 8, 3);
  float bound = 1.f / std::sqrt(16.f * 9.f);
  auto w = c.weight.to_vector();
  float mx = 0;
  for (float v : w) mx = std::max(mx, std::fabs(v));
  CHECK(mx <= bound);
  CHECK(mx > 0.8f * bound);
  Tensor k = empty({256, 128});
  init::kaiming_normal_(k);
  CHECK(std::sqrt(mean(k * k).item()) == doctest::Approx(std::sqrt(2.0 / 128)).epsilon(0.03));
}

}  // TEST_SUITE

TEST_SUITE("optim") {

static void run_optimizer(const char* name, std::function<std::unique_ptr<Optimizer>(NamedTensors)> make) {
  SafeTensors st = load_safetensors(golden("optimizers"));
  Tensor p0 = st.tensors["p0"].clone().set_requires_grad(), p1 = st.tensors["p1"].clone().set_requires_grad();
  Tensor t0 = st.tensors["t0"], t1 = st.tensors["t1"];
  auto opt = make({{"p0", p0}, {"p1", p1}});
  for (int i = 0; i < 5; ++i) {
    opt->zero_grad();
    Tensor loss = sum(square(p0 - t0)) + sum(sin(p1) * t1);
    loss.backward();
    opt->step();
  }
  CHECK_MESSAGE(rel_err(p0, st.tensors[std::string(name) + ".p0"]) < 1e-5, name);
  CHECK_MESSAGE(rel_err(p1, st.tensors[std::string(name) + ".p1"]) < 1e-5, name);
}

TEST_CASE("SGD, Adam and AdamW follow PyTorch's update rules") {
  run_optimizer("sgd", [](NamedTensors p) { return std::make_unique<SGD>(p, SGDOptions{0.1f}); });
  run_optimizer("sgd_nesterov", [](NamedTensors p) {
    SGDOptions o;
    o.lr = 0.1f;
    o.momentum = 0.9f;
    o.nesterov = true;
    o.weight_decay = 0.01f;
    return std::make_unique<SGD>(p, o);
  });
  run_optimizer("sgd_dampening", [](NamedTensors p) {
    SGDOptions o;
    o.lr = 0.1f;
    o.momentum = 0.8f;
    o.dampening = 0.3f;
    return std::make_unique<SGD>(p, o);
  });
  run_optimizer("adam", [](NamedTensors p) {
    AdamOptions o;
    o.lr = 0.05f;
    o.beta2 = 0.99f;
    o.weight_decay = 0.01f;
    return std::make_unique<Adam>(p, o);
  });
  run_optimizer("adamw", [](NamedTensors p) {
    AdamOptions o;
    o.lr = 0.05f;
    o.weight_decay = 0.1f;
    return std::make_unique<AdamW>(p, o);
  });
}

TEST_CASE("optimizer updates on CUDA match the CPU") {
  if (!cuda_available()) {
    MESSAGE("optimizer CUDA parity skipped (" << cuda_description() << ")");
    return;
  }
  Tensor pc = uniform_input({1000}, -1, 1, 1).set_requires_grad();
  Tensor pg = pc.detach().cuda().set_requires_grad();
  AdamOptions o;
  o.weight_decay = 0.05f;
  AdamW oc({{"p", pc}}, o), og({{"p", pg}}, o);
  for (int i = 0; i < 3; ++i) {
    sum(sin(pc) * pc).backward();
    sum(sin(pg) * pg).backward();
    oc.step();
    og.step();
    oc.zero_grad();
    og.zero_grad();
  }
  CHECK(rel_err(pg.cpu(), pc) < 1e-5);
}

TEST_CASE("learning-rate schedules match PyTorch's schedulers") {
  SafeTensors st = load_safetensors(golden("schedules"));
  std::map<std::string, LRSchedule> s = {{"step", LRSchedule::step(0.1f, 7, 0.5f)},
                                         {"multistep", LRSchedule::multistep(0.1f, {5, 12, 20}, 0.3f)},
                                         {"cosine", LRSchedule::cosine(0.1f, 25, 0.001f)},
                                         {"exponential", LRSchedule::exponential(0.1f, 0.9f)}};
  for (auto& [name_, sched] : s) {
    const std::string& name = name_;  // captured by doctest's message lambda
    auto ref = st.tensors[name].to_vector();
    for (size_t i = 0; i < ref.size(); ++i)
      CHECK_MESSAGE(sched.at((int64_t)i) == doctest::Approx(ref[i]).epsilon(1e-5), name << " step " << i);
  }
}

TEST_CASE("gradient clipping matches torch.nn.utils.clip_grad_norm_") {
  SafeTensors st = load_safetensors(golden("clip_grad_norm"));
  Tensor a = zeros({4}).set_requires_grad(), b = zeros({3, 3}).set_requires_grad();
  a.set_grad(st.tensors["g1"].clone());
  b.set_grad(st.tensors["g2"].clone());
  float norm = clip_grad_norm({a, b}, 0.7f);
  CHECK(norm == doctest::Approx(st.tensors["norm"].item()).epsilon(1e-5));
  CHECK(rel_err(a.grad(), st.tensors["clipped1"]) < 1e-5);
  CHECK(rel_err(b.grad(), st.tensors["clipped2"]) < 1e-5);
}

TEST_CASE("optimizer state round trip") {
  Tensor p = uniform_input({10}, -1, 1, 1).set_requires_grad();
  Adam a({{"p", p}}, AdamOptions{});
  sum(p * p).backward();
  a.step();
  std::string dir = temp_dir();
  a.save(dir + "/opt.safetensors");
  Tensor q = p.detach().clone().set_requires_grad();
  Adam b({{"p", q}}, AdamOptions{});
  b.load(dir + "/opt.safetensors");
  CHECK(b.steps() == 1);
  a.zero_grad();
  sum(p * p).backward();
  sum(q * q).backward();
  a.step();
  b.step();
  CHECK(p.to_vector() == q.to_vector());
  SGD wrong({{"p", q}}, SGDOptions{});
  CHECK_THROWS_WITH_AS(wrong.load(dir + "/opt.safetensors"), doctest::Contains("holds 'adam' optimizer state"), Error);
  std::filesystem::remove_all(dir);
}

}  // TEST_SUITE
