// The programs against hostile input (issue "hardening"): every case must end in exit code 1 with one sentence
// that names the file (or flag) and the problem, never a crash, a hang, gigabytes of memory or a half-written
// file. Covers the crash inputs of ../shared/reliability/ (embedded in reliability_inputs.h), crafted images
// and weight files, configs, flags, output paths, a full disk and kills at random moments.
#include <unistd.h>

#include <chrono>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/fileio.h"
#include "tests/harness.h"
#include "tests/reliability_inputs.h"

namespace fs = std::filesystem;
using rft::binary_dir;
using rft::run_command;

using rft::TempDir;

namespace {

// A run's last line: the program's own error sentence, without the progress lines before it.
std::string last_line(const rft::Run& r) {
  std::string s = r.output;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1);
}

using rft::Run;
Run run(const std::string& program_and_args) { return rft::run_program(program_and_args); }

// A refusal: exit code 1 (not a signal, not 0), and the error sentence holds every one of `words`.
void check_refused(const Run& r, const std::string& what, std::initializer_list<std::string> words) {
  INFO(what << "\n--- output ---\n" << r.output);
  CHECK(r.code == 1);
  for (const auto& w : words) CHECK_MESSAGE(r.output.find(w) != std::string::npos, "missing '" << w << "'");
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
  REQUIRE(f.good());
}

uint32_t crc32(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

std::string be32(uint32_t v) { return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; }

// A zlib stream of stored blocks (no compression) holding raw.
std::string zlib_stored(const std::string& raw) {
  std::string z = "\x78\x01";
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  for (size_t at = 0; at == 0 || at < raw.size(); at += 65535) {
    const size_t n = std::min<size_t>(65535, raw.size() - at);
    const bool last = at + n >= raw.size();
    z += (char)(last ? 1 : 0);
    z += {(char)(n & 0xff), (char)(n >> 8), (char)(~n & 0xff), (char)((~n >> 8) & 0xff)};
    z += raw.substr(at, n);
    if (last) break;
  }
  return z + be32(b << 16 | a);
}

std::string png_chunk(const std::string& type, const std::string& data) {
  return be32((uint32_t)data.size()) + type + data + be32(crc32(type + data));
}

// A valid 8-bit grey PNG of w x h pixels, all of one value.
std::string png_gray(uint32_t w, uint32_t h, unsigned char value) {
  std::string raw;
  for (uint32_t y = 0; y < h; ++y) raw += '\0' + std::string(w, (char)value);
  return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", be32(w) + be32(h) + std::string("\x08\x00\x00\x00\x00", 5)) +
         png_chunk("IDAT", zlib_stored(raw)) + png_chunk("IEND", "");
}

// A PNG whose IHDR declares w x h; its pixel data is a few zero rows (the declared size is the attack).
std::string png_declaring(uint32_t w, uint32_t h, bool bad_crc = false) {
  std::string ihdr = be32(w) + be32(h) + std::string("\x08\x02\x00\x00\x00", 5);
  uint32_t crc = crc32("IHDR" + ihdr) ^ (bad_crc ? 1u : 0u);
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + "IHDR" + ihdr + be32(crc) +
         png_chunk("IDAT", zlib_stored(std::string(4, '\0'))) + png_chunk("IEND", "");
}

// A tiny synthetic dataset (48x48) and a gs checkpoint trained on it for a few steps.
struct Fixture {
  TempDir d;
  std::string data = d / "data", weights = d / "run/gs.safetensors";
  std::string image = d / "data/test_c/source/synth_00000.png", depth = d / "data/test_c/depth/synth_00000.png";
  Fixture() {
    Run r = run("make_synth --out " + data + " --n 4 --size 48x48 --seed 1");
    REQUIRE_MESSAGE(r.code == 0, r.output);
    r = run("make_synth --out " + data + " --n 2 --size 48x48 --seed 2 --split test");
    REQUIRE_MESSAGE(r.code == 0, r.output);
    r = run("train_gs " + data + " --out " + (d / "run") + " --device cpu --init-iters 2 --fit-iters 3 --iters 2 --crop 32 --batch 1");
    REQUIRE_MESSAGE(r.code == 0, r.output);
  }
  std::string deblur(const std::string& weights_file, const std::string& in, const std::string& out) const {
    return "deblur --model gs --device cpu --weights " + weights_file + " --depth " + depth + " " + in + " " + out;
  }
};

// The checkpoint with its safetensors header edited by `edit` (or replaced by raw header text).
std::string crafted_weights(const Fixture& f, const std::string& name, const std::function<void(nlohmann::json&)>& edit,
                            const std::string& raw_header = "") {
  std::string bytes = rf::read_file(f.weights);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= (uint64_t)(unsigned char)bytes[i] << (8 * i);
  std::string header = bytes.substr(8, n), data = bytes.substr(8 + n);
  if (raw_header.empty()) {
    nlohmann::json h = nlohmann::json::parse(header);
    edit(h);
    header = h.dump();
  } else {
    header = raw_header;
  }
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = (char)((header.size() >> (8 * i)) & 0xff);
  std::string path = f.d / (name + ".safetensors");
  write_bytes(path, len + header + data);
  return path;
}

// The first tensor's name in the checkpoint (the one the crafted headers break).
std::string first_tensor(nlohmann::json& h) {
  for (auto it = h.begin(); it != h.end(); ++it)
    if (it.key() != "__metadata__") return it.key();
  FAIL("no tensor in the checkpoint");
  return "";
}

void set_config(nlohmann::json& h, const std::string& key, const nlohmann::json& v) {
  nlohmann::json c = nlohmann::json::parse(h["__metadata__"]["config"].get<std::string>());
  c[key] = v;
  h["__metadata__"]["config"] = c.dump();
}

bool has_temp_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir)) return false;
  for (auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_SUITE("bad input") {

TEST_CASE("images that crashed or exhausted the programs, and other hostile images, are refused by name") {
  Fixture f;
  struct Case {
    std::string file, bytes;
    std::vector<std::string> words;  // besides the file's name
  };
  std::vector<Case> cases;
  for (const auto& r : reliability::files()) {
    std::string name = r.name;
    // 0x0 PNMs are empty; the huge BMP is refused from its header; GIF and TGA are formats refocus does not read
    // (the TGA file has no magic bytes and a .png name: it is simply not an image refocus reads).
    std::vector<std::string> words = name.find("0x0") != std::string::npos ? std::vector<std::string>{"the image is empty"}
                                     : name.find("gif") != std::string::npos
                                         ? std::vector<std::string>{"a GIF file; refocus reads PNG, JPEG, BMP and PNM images"}
                                     : name.find("tga") != std::string::npos
                                         ? std::vector<std::string>{"not an image refocus can read"}
                                         : std::vector<std::string>{"over the limit of", "REFOCUS_MAX_PIXELS"};
    cases.push_back({name, r.bytes, words});
  }
  cases.push_back({"zero.ppm", "P6\n0 0\n255\n", {"the image is empty (0x0 pixels)"}});
  cases.push_back({"ihdr_100000x100000.png", png_declaring(100000, 100000), {"declares 100000x100000", "over the limit"}});
  cases.push_back({"ihdr_20000x20000.png", png_declaring(20000, 20000), {"declares 20000x20000", "over the limit"}});
  cases.push_back({"ihdr_max.png", png_declaring(2147483647, 2147483647), {"declares 2147483647x2147483647"}});
  cases.push_back({"ihdr_4294967295x1.png", png_declaring(4294967295u, 1), {"declares 4294967295x1"}});
  // Found by fuzz_image: 3876820321 x 3739619988 overflowed a signed 64-bit product.
  cases.push_back({"ihdr_overflow.png", png_declaring(3876820321u, 3739619988u), {"declares 3876820321x3739619988", "over the limit"}});
  // Found by fuzz_image: an IDAT chunk claiming 2,097,021,123 bytes made stb allocate them before reading.
  {
    std::string png = png_declaring(16, 16);
    const size_t idat = png.find("IDAT") - 4;
    cases.push_back({"idat_claims_2GB.png", png.substr(0, idat) + be32(2097021123u) + "IDAT" + std::string(40, '\x11'),
                     {"a damaged or truncated PNG file (its IDAT chunk claims 2097021123 bytes"}});
  }
  cases.push_back({"ihdr_badcrc.png", png_declaring(100000, 100000, true), {"over the limit"}});
  cases.push_back({"ihdr_0x5.png", png_declaring(0, 5), {"the image is empty"}});
  const std::string good_png = rf::read_file(f.image);
  cases.push_back({"trunc_png_60.png", good_png.substr(0, 60), {"a damaged or truncated PNG file"}});
  cases.push_back({"trunc_png_8.png", good_png.substr(0, 8), {"a damaged or truncated PNG file"}});
  cases.push_back({"trunc_jpeg.jpg", std::string("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00", 20),
                   {"a damaged or truncated JPEG file"}});
  cases.push_back({"text.png", "hello, not an image", {"not an image refocus can read"}});
  // Found by fuzz_image with stb instrumented: a DHT listing more than 256 codes overflows stb's Huffman table.
  {
    std::string jpeg = std::string("\xff\xd8\xff\xc4\x00\x13\x00", 7) + std::string(16, '\x20');  // 16 x 32 codes
    cases.push_back({"dht_512_codes.jpg", jpeg + std::string(64, '\x01') + "\xff\xd9",
                     {"a damaged JPEG file (a Huffman table lists 512 codes; at most 256 exist)"}});
  }
  // Found by fuzz_image: stb's PNM header parser overflows an int on a long number.
  cases.push_back({"pnm_huge_width.ppm", "P6\n3050553050 4\n255\n", {"a damaged PNM file (its header declares a width of 3050553050"}});
  cases.push_back({"header.gif", "GIF89a\x10\x00\x10\x00\x00\x00\x00;", {"a GIF file; refocus reads PNG, JPEG, BMP and PNM images"}});
  for (auto& c : cases) {
    std::string path = f.d / c.file;
    write_bytes(path, c.bytes);
    std::vector<std::string> words = c.words;
    words.push_back(path);
    Run r = run("gs_fit " + path + " --out " + (f.d / "fit") + " --iters 2 --quiet --crop 16");
    for (const auto& w : words) CHECK_MESSAGE(r.output.find(w) != std::string::npos, c.file << ": gs_fit: " << r.output);
    CHECK_MESSAGE(r.code == 1, c.file << ": gs_fit: " << r.output);
    r = run(f.deblur(f.weights, path, f.d / "out.png"));
    for (const auto& w : words) CHECK_MESSAGE(r.output.find(w) != std::string::npos, c.file << ": deblur: " << r.output);
    CHECK_MESSAGE(r.code == 1, c.file << ": deblur: " << r.output);
    CHECK_FALSE(rf::file_exists(f.d / "out.png"));
  }
  // Legal but too small for the programs (SSIM windows, downsampling), a folder where a file belongs.
  fs::create_directories(f.d / "folder.png");
  check_refused(run("gs_fit " + (f.d / "folder.png") + " --out " + (f.d / "fit")), "folder",
                {f.d / "folder.png", "is a folder, not an image"});
  check_refused(run("gs_fit " + f.image + " --out " + (f.d / "fit") + " --depth " + (f.d / "folder.png")), "depth folder",
                {"is a folder, not an image"});
  check_refused(run("gs_fit " + f.image + " --out " + (f.d / "fit") + " --crop 1"), "--crop 1",
                {"option --crop must be 0 (the whole image) or at least 16, got 1"});
}

TEST_CASE("images too small for a program, and all-zero depth maps, are refused by name") {
  Fixture f;
  const std::string one = png_gray(1, 1, 128);
  write_bytes(f.d / "one.png", one);
  check_refused(run("gs_fit " + (f.d / "one.png") + " --out " + (f.d / "fit") + " --iters 2 --quiet"), "gs_fit 1x1",
                {f.d / "one.png", "is 1x1; gs_fit needs images of at least 16x16 pixels"});
  check_refused(run("deblur --model gs --device cpu --weights " + f.weights + " " + (f.d / "one.png") + " " + (f.d / "o.png")),
                "deblur 1x1", {f.d / "one.png", "is 1x1; deblur needs images of at least 16x16 pixels"});
  // A dataset whose depth maps are all zero: the first one is named.
  Run r = run("make_synth --out " + (f.d / "zd") + " --n 2 --size 32x32 --seed 4");
  REQUIRE(r.code == 0);
  for (auto& e : fs::directory_iterator(f.d / "zd/train_c/depth")) write_bytes(e.path().string(), png_gray(32, 32, 0));
  r = run("train_gs " + (f.d / "zd") + " --out " + (f.d / "zdrun") + " --device cpu --iters 2 --init-iters 2 --fit-iters 2 --crop 16 --batch 1");
  CHECK(r.code == 1);
  CHECK_MESSAGE(r.output.find("depth/synth_0000") != std::string::npos, r.output);
}

TEST_CASE("damaged and hostile weight files are refused with the file and the tensor or key named") {
  Fixture f;
  struct Case {
    std::string name;
    std::function<void(nlohmann::json&)> edit;
    std::vector<std::string> words;
    std::string raw_header = "";
  };
  std::vector<Case> cases = {
      {"heads_0", [](nlohmann::json& h) { set_config(h, "heads", 0); }, {"gs config: 'heads' must be 1..64, got 0"}},
      {"heads_neg", [](nlohmann::json& h) { set_config(h, "heads", -4); }, {"'heads' must be 1..64, got -4"}},
      {"heads_text", [](nlohmann::json& h) { set_config(h, "heads", "four"); }, {"'heads' must be an integer, got \"four\""}},
      {"init_width_neg", [](nlohmann::json& h) { set_config(h, "init_width", -32); }, {"'init_width' must be 4..512, got -32"}},
      {"blocks_huge", [](nlohmann::json& h) { set_config(h, "blocks", 1000000); }, {"'blocks' must be 0..64, got 1000000"}},
      {"typo", [](nlohmann::json& h) { set_config(h, "block", 3); }, {"gs config: unknown key 'block'"}},
      {"nested_config", [](nlohmann::json& h) { h["__metadata__"]["config"] = std::string(100000, '[') + std::string(100000, ']'); },
       {"(the config in its metadata): the JSON nests deeper than 32 levels"}},
      {"nested_header", nullptr, {"(its safetensors header): the JSON nests deeper than 8 levels"},
       std::string(100000, '[') + std::string(100000, ']')},
      {"not_json", nullptr, {"(its safetensors header): not valid JSON"}, "{\"a\": "},
      {"meta_array", [](nlohmann::json& h) { h["__metadata__"] = {1, 2}; }, {"__metadata__ is not a JSON object"}},
      {"meta_number", [](nlohmann::json& h) { h["__metadata__"] = 5; }, {"__metadata__ is not a JSON object"}},
      {"step_text", [](nlohmann::json& h) { h["__metadata__"]["step"] = "abc"; }, {"the step in the checkpoint metadata is not a number"}},
      {"step_overflow", [](nlohmann::json& h) { h["__metadata__"]["step"] = "99999999999999999999999"; },
       {"the step in the checkpoint metadata is not a number"}},
      {"dtype_number", [](nlohmann::json& h) { h[first_tensor(h)]["dtype"] = 7; }, {"has a malformed dtype, shape or data_offsets"}},
      {"dtype_unknown", [](nlohmann::json& h) { h[first_tensor(h)]["dtype"] = "C64"; }, {"has dtype C64; refocus reads"}},
      {"offsets_object", [](nlohmann::json& h) { h[first_tensor(h)]["data_offsets"] = {{"a", 1}}; },
       {"has a malformed dtype, shape or data_offsets"}},
      {"offsets_outside", [](nlohmann::json& h) { h[first_tensor(h)]["data_offsets"] = {0, 1ull << 40}; },
       {"has data offsets outside the file"}},
      {"shape_negative", [](nlohmann::json& h) { h[first_tensor(h)]["shape"] = {-8, -8}; }, {"not a non-negative integer: -8"}},
      {"shape_text", [](nlohmann::json& h) { h[first_tensor(h)]["shape"] = "abc"; }, {"has a malformed dtype, shape or data_offsets"}},
      // 320 x 57646075230342349 wraps int64 to 64 elements: refused, not accepted with a wrong shape.
      {"shape_wrapping", [](nlohmann::json& h) { h[first_tensor(h)]["shape"] = {320, 57646075230342349ll}; },
       {"declares shape [320, 57646075230342349], more elements than the file holds"}},
      {"shape_mismatch", [](nlohmann::json& h) { h[first_tensor(h)]["shape"] = {16, 16}; }, {"has shape [16, 16] but the model expects"}},
  };
  for (const auto& c : cases) {
    std::function<void(nlohmann::json&)> edit = c.edit;
    if (!edit) edit = [](nlohmann::json&) {};
    std::string path = crafted_weights(f, c.name, edit, c.raw_header);
    Run r = run(f.deblur(path, f.image, f.d / "out.png"));
    INFO(c.name << ": " << r.output);
    CHECK(r.code == 1);
    CHECK(last_line(r).find(path) != std::string::npos);
    for (const auto& w : c.words) CHECK_MESSAGE(r.output.find(w) != std::string::npos, "missing '" << w << "'");
    CHECK_FALSE(rf::file_exists(f.d / "out.png"));
  }
  // A NaN in a weight: refused at load, naming the tensor (a NaN model would write black images).
  {
    std::string bytes = rf::read_file(f.weights);
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= (uint64_t)(unsigned char)bytes[i] << (8 * i);
    nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
    std::string name = first_tensor(h);
    const size_t at = 8 + n + h[name]["data_offsets"][0].get<size_t>();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(&bytes[at], &nan, 4);
    write_bytes(f.d / "nan.safetensors", bytes);
    check_refused(run(f.deblur(f.d / "nan.safetensors", f.image, f.d / "out.png")), "NaN weight",
                  {f.d / "nan.safetensors", "tensor '" + name + "' holds a non-finite value (nan)"});
    write_bytes(f.d / "trunc.safetensors", bytes.substr(0, bytes.size() / 2));
    check_refused(run(f.deblur(f.d / "trunc.safetensors", f.image, f.d / "out.png")), "truncated",
                  {f.d / "trunc.safetensors", "outside the file"});
  }
  check_refused(run(f.deblur(f.d.path.string(), f.image, f.d / "out.png")), "folder as weights",
                {f.d.path.string(), "is a folder, not a file"});
  check_refused(run("evaluate --data " + f.data + " --identity --lpips " + f.d.path.string() + " --out " + (f.d / "ev")),
                "folder as LPIPS weights", {"is a folder, not a file"});
}

TEST_CASE("configs, numeric flags, unknown flags and paths are checked before any work") {
  Fixture f;
  const std::string train = "train_gs " + f.data + " --device cpu --iters 2 --init-iters 2 --fit-iters 2 --crop 32 --batch 1";
  write_bytes(f.d / "bad.json", "{b");
  check_refused(run(train + " --out " + (f.d / "t1") + " --config " + (f.d / "bad.json")), "config not JSON",
                {f.d / "bad.json", "not valid JSON"});
  write_bytes(f.d / "badtype.json", "{\"model\": {\"heads\": \"four\"}}");
  check_refused(run(train + " --out " + (f.d / "t2") + " --config " + (f.d / "badtype.json")), "config type",
                {"gs config: 'heads' must be an integer, got \"four\""});
  write_bytes(f.d / "deep.json", std::string(5000, '[') + std::string(5000, ']'));
  check_refused(run(train + " --out " + (f.d / "t3") + " --config " + (f.d / "deep.json")), "config depth",
                {f.d / "deep.json", "nests deeper than"});
  check_refused(run(train + " --out " + (f.d / "t4") + " --config " + f.d.path.string()), "config folder",
                {"is a folder, not a file"});
  // Numbers: whole, in range, finite (4294967297 once wrapped to 1 iteration, -1 trained nothing).
  check_refused(run(train + " --out " + (f.d / "t5") + " --iters -1"), "--iters -1", {"option --iters must be between 0 and"});
  check_refused(run(train + " --out " + (f.d / "t6") + " --iters 4294967297"), "--iters wrap", {"option --iters must be between"});
  check_refused(run(train + " --out " + (f.d / "t7") + " --iters 12x"), "--iters 12x", {"option --iters expects an integer, got '12x'"});
  check_refused(run(train + " --out " + (f.d / "t8") + " --lr nan"), "--lr nan", {"option --lr must be between"});
  check_refused(run(train + " --out " + (f.d / "t9") + " --loss l1"), "--loss l1", {"--loss must be mse or psnr, got 'l1'"});
  check_refused(run(train + " --out " + (f.d / "t9b") + " --sharp-fraction 0.1"), "gs --sharp-fraction",
                {"train_gs fits its own sharp pairs (--sharp-pairs N)"});
  write_bytes(f.d / "sharp.json", "{\"train\": {\"sharp_fraction\": 2}}");
  check_refused(run("train_ggkm " + f.data + " --device cpu --iters 1 --crop 32 --out " + (f.d / "t9c") + " --config " +
                    (f.d / "sharp.json")),
                "sharp_fraction 2 in a config", {f.d / "sharp.json", "sharp_fraction must be between 0 and 0.5, got 2"});
  // A refused run leaves no folder behind (rerunning with the same --out then works), nor a config.json in a folder that
  // was there before it.
  CHECK_FALSE(fs::exists(f.d / "t9b"));
  CHECK_FALSE(fs::exists(f.d / "t9c"));
  for (int i = 1; i <= 9; ++i) CHECK_MESSAGE(!fs::exists(f.d / ("t" + std::to_string(i))), "t" << i << " left behind");
  // --crop 30 is refused after config.json and fits/ were written: both go, the user's own file in the folder stays.
  check_refused(run(train + " --out " + (f.d / "t10") + " --crop 30"), "--crop 30", {"--crop must be a multiple of 4"});
  CHECK_MESSAGE(!fs::exists(f.d / "t10"), "t10 left behind");
  fs::create_directories(f.d / "kept");
  write_bytes(f.d / "kept/notes.txt", "mine");
  check_refused(run(train + " --out " + (f.d / "kept") + " --crop 30"), "--crop 30 into a folder", {"--crop must be"});
  CHECK(fs::exists(f.d / "kept/notes.txt"));
  CHECK_FALSE(fs::exists(f.d / "kept/config.json"));
  CHECK_FALSE(fs::exists(f.d / "kept/fits"));
  // Refused at its first step (crops larger than the images): the run is kept, as a failed step keeps it for --resume.
  check_refused(run(train + " --out " + (f.d / "t11") + " --crop 64"), "--crop 64", {"smaller than --crop 64"});
  CHECK(fs::exists(f.d / "t11/config.json"));
  check_refused(run("gs_fit " + f.image + " --out " + (f.d / "g") + " --lr inf"), "gs_fit --lr inf", {"option --lr must be between"});
  check_refused(run("make_synth --out " + (f.d / "m1") + " --n 99999999999999 --size 32x32"), "--n huge", {"option --n must be between"});
  check_refused(run("make_synth --out " + (f.d / "m2") + " --n 1 --size 99999x99999"), "--size huge",
                {"option --size expects HxW with both between 16 and 16384"});
  check_refused(run("make_synth --out " + (f.d / "m3") + " --n 1 --size 32x32 --noise -5"), "--noise -5",
                {"option --noise must be between 0 and"});
  check_refused(run("make_synth --out " + (f.d / "m4") + " --n 1 --size 32x32 --split ../../escape"), "--split escape",
                {"option --split must be a plain folder name"});
  CHECK_FALSE(fs::exists(f.d.path.parent_path().parent_path() / "escape"));
  check_refused(run("evaluate --data " + f.data + " --identity --bits 12 --out " + (f.d / "ev")), "--bits 12",
                {"--bits must be"});
  check_refused(run("evaluate --data " + f.data + " --identity --crop-multiple 4096 --out " + (f.d / "ev")), "crop-multiple",
                {"--crop-multiple 4096 leaves 0x0 of", "use a smaller multiple"});
  check_refused(run("evaluate --data " + f.data + " --pred " + (f.d / "nonexistent") + " --out " + (f.d / "ev")), "--pred",
                {"nonexistent: no such folder"});
  // An unknown flag swallows the next argument: it is named, not "give IN and OUT".
  check_refused(run(f.deblur(f.weights, "--fast " + f.image, f.d / "x.png")), "unknown flag", {"unknown option --fast"});
  // Outputs never overwrite inputs, and two inputs never share an output.
  fs::copy_file(f.image, f.d / "same.png");
  const std::string before = rf::read_file(f.d / "same.png");
  check_refused(run(f.deblur(f.weights, f.d / "same.png", f.d / "same.png")), "same path", {"OUT is the input file"});
  CHECK(rf::read_file(f.d / "same.png") == before);
  fs::create_directories(f.d / "folder");
  fs::copy_file(f.image, f.d / "folder/a.png");
  fs::copy_file(f.image, f.d / "folder/a.jpg");
  check_refused(run("deblur --model gs --device cpu --weights " + f.weights + " " + (f.d / "folder") + " " + (f.d / "outs")),
                "collision", {"two images would be written to the same", "a.png"});
  fs::remove(f.d / "folder/a.jpg");
  check_refused(run("deblur --model gs --device cpu --weights " + f.weights + " " + (f.d / "folder") + " " + (f.d / "folder")),
                "folder onto itself", {"OUT is the input folder"});
}

TEST_CASE("a full disk: the failed write is one sentence, and no truncated or temporary file is left") {
  Fixture f;
  // A file-size limit of 2 KiB with SIGXFSZ ignored makes every larger write fail with EFBIG, like a full disk.
  auto limited = [&](const std::string& program_and_args) {
    int code = 0;
    std::string out = run_command("bash -c \"trap '' XFSZ; ulimit -f 2; exec " + binary_dir() + "/" + program_and_args + "\"", &code);
    return Run{code, out};
  };
  check_refused(limited(f.deblur(f.weights, f.image, f.d / "full.png")), "deblur", {f.d / "full.png", "write failed"});
  CHECK_FALSE(fs::exists(f.d / "full.png"));
  check_refused(limited("gs_fit " + f.image + " --out " + (f.d / "fit") + " --iters 2 --quiet"), "gs_fit", {"write failed"});
  CHECK_FALSE(fs::exists(f.d / "fit/blobs.safetensors"));
  check_refused(limited("make_synth --out " + (f.d / "synth") + " --n 2 --size 64x64"), "make_synth", {"write failed"});
  check_refused(limited("train_gs " + f.data + " --out " + (f.d / "run2") +
                        " --device cpu --iters 2 --init-iters 2 --fit-iters 2 --crop 32 --batch 1"),
                "train_gs", {"write failed"});
  CHECK_FALSE(fs::exists(f.d / "run2/gs.safetensors"));
  CHECK_FALSE(has_temp_files(f.d.path.string()));
}

TEST_CASE("train_gs killed (SIGKILL) at arbitrary moments and resumed ends byte-identical to an uninterrupted run") {
  Fixture f;
  const std::string args = " --device cpu --init-iters 6 --fit-iters 8 --iters 6 --crop 32 --batch 1 --checkpoint-every 1";
  const auto t0 = std::chrono::steady_clock::now();
  Run whole = run("train_gs " + f.data + " --out " + (f.d / "whole") + args);
  REQUIRE_MESSAGE(whole.code == 0, whole.output);
  // Kill delays in proportion to an uninterrupted run (0.5 s on an idle 2-core machine, longer under load): fixed
  // delays let a fast machine finish before the third kill.
  const double whole_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Kills land wherever the clock says: in a step, in the fit cache, between a checkpoint and state.json, in a
  // write. Each restart uses the original command line plus --resume (or nothing, when no run was recorded yet).
  int kills = 0;
  auto command = [&] {
    return binary_dir() + "/train_gs " + f.data + " --out " + (f.d / "parts") + args +
           (fs::exists(f.d / "parts/config.json") ? " --resume" : "");
  };
  for (int attempt = 0; attempt < 16; ++attempt) {
    const double delay = std::max(0.05, whole_s * (0.12 + 0.06 * (attempt % 6)));
    int code = 0;
    std::string out = run_command("timeout -s KILL " + std::to_string(delay) + " " + command(), &code);
    if (code == 0) break;  // finished inside the delay
    if (code == 137) {
      ++kills;
      continue;
    }
    INFO(out);
    CHECK(code == 1);  // killed before config.json was written: the folder is not a run yet, and says so
    fs::remove_all(f.d / "parts");
  }
  int code = 0;
  std::string out = run_command(command(), &code);  // the last part, unhurried (or "already done")
  INFO(out);
  CHECK(code == 0);
  bool finished = fs::exists(f.d / "parts/gs.safetensors");
  REQUIRE(finished);
  MESSAGE("train_gs: killed " << kills << " times before finishing");
  CHECK(kills >= 3);
  CHECK(rf::read_file(f.d / "whole/gs.safetensors") == rf::read_file(f.d / "parts/gs.safetensors"));
  CHECK_FALSE(has_temp_files(f.d / "parts"));
}

}  // TEST_SUITE
