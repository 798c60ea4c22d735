#include "data/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <vector>

#include "engine/fileio.h"

extern "C" unsigned char* stbi_zlib_compress(unsigned char* data, int data_len, int* out_len, int quality);

namespace rf {

int64_t max_image_pixels() {
  const char* env = std::getenv("REFOCUS_MAX_PIXELS");
  if (!env || !*env) return kDefaultMaxImagePixels;
  char* end = nullptr;
  long long v = std::strtoll(env, &end, 10);
  RF_CHECK(*end == '\0' && v > 0, "REFOCUS_MAX_PIXELS must be a positive whole number of pixels, got '", env, "'");
  return (int64_t)v;
}

// The format a file's first bytes announce (stb's own message is the last reader's complaint, e.g. a damaged
// JPEG reports "bad png sig"), and for PNG the size its IHDR declares: stb refuses huge PNGs before saying why.
namespace {
struct Sniffed {
  std::string format;  // "" when the bytes match no format refocus reads
  int64_t png_width = -1, png_height = -1;
};

Sniffed sniff(const unsigned char* b, size_t n, const std::string& name) {
  Sniffed s;
  auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(b, magic, len) == 0; };
  if (starts("\x89PNG\r\n\x1a\n", 8)) {
    s.format = "PNG";
    if (n >= 24 && std::memcmp(b + 12, "IHDR", 4) == 0) {
      auto be32 = [&](int o) { return (int64_t)b[o] << 24 | (int64_t)b[o + 1] << 16 | (int64_t)b[o + 2] << 8 | b[o + 3]; };
      s.png_width = be32(16);
      s.png_height = be32(20);
    }
  } else if (starts("\xff\xd8", 2)) {
    s.format = "JPEG";
  } else if (starts("BM", 2)) {
    s.format = "BMP";
  } else if (starts("GIF8", 4)) {
    s.format = "GIF";
  } else if (starts("8BPS", 4)) {
    s.format = "PSD";
  } else if (starts("#?RADIANCE", 10) || starts("#?RGBE", 6)) {
    s.format = "HDR";
  } else if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7') {
    s.format = "PNM";
  } else if (name.size() >= 4 && (name.compare(name.size() - 4, 4, ".tga") == 0 || name.compare(name.size() - 4, 4, ".TGA") == 0)) {
    s.format = "TGA";  // TGA has no magic bytes
  }
  return s;
}


// refocus decodes PNG, JPEG, BMP and PNM only: stb's other readers (GIF, PSD, HDR, PIC, TGA) are refused before
// stb sees the bytes — fewer decoders facing hostile files, and TGA, which has no magic bytes, would otherwise
// be tried on anything. Every dataset the papers use is PNG or JPEG.
void check_supported(const Sniffed& s, const std::string& name) {
  RF_CHECK(!s.format.empty(), name, ": not an image refocus can read (its first bytes are none of PNG, JPEG, BMP or PNM)");
  RF_CHECK(s.format == "PNG" || s.format == "JPEG" || s.format == "BMP" || s.format == "PNM", name, ": a ", s.format,
           " file; refocus reads PNG, JPEG, BMP and PNM images");
}

// stb (Debian's 2.28) writes past a Huffman table when a JPEG's DHT segment lists more than 256 codes: every
// table is checked first. Walks the markers, skipping entropy-coded data (progressive JPEGs have DHTs between scans).
void check_jpeg_tables(const unsigned char* b, size_t n, const std::string& name) {
  size_t at = 2;
  while (at + 4 <= n) {
    if (b[at] != 0xFF) {  // entropy-coded data
      ++at;
      continue;
    }
    const unsigned char m = b[at + 1];
    if (m == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (m == 0x00 || m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) {  // stuffing, TEM, SOI, RSTn: no length
      at += 2;
      continue;
    }
    if (m == 0xD9) return;  // EOI
    const size_t length = (size_t)b[at + 2] << 8 | b[at + 3];
    if (m == 0xC4) {
      // stb reads past the end of a truncated file as zeros: so does this check.
      auto byte = [&](size_t i) { return i < n ? b[i] : (unsigned char)0; };
      size_t p = at + 4;
      const size_t end = at + 2 + length;
      while (p < end) {  // as stb: a table starts wherever bytes of the segment remain
        size_t codes = 0;
        for (size_t i = 1; i <= 16; ++i) codes += byte(p + i);
        RF_CHECK(codes <= 256, name, ": a damaged JPEG file (a Huffman table lists ", codes, " codes; at most 256 exist)");
        p += 17 + codes;
      }
    }
    if (length < 2 || at + 2 + length > n) return;  // the rest is missing: stb stops there too
    at += 2 + length;
  }
}

// stb parses a PNM header's numbers into an int without an overflow check (signed overflow: found by fuzzing):
// they are read here first, as stb reads them (whitespace and # comments skipped), and must be plausible.
void check_pnm_header(const unsigned char* b, size_t n, const std::string& name) {
  size_t at = 2;
  for (int field = 0; field < 3; ++field) {  // width, height, maxval
    for (;;) {  // whitespace and comments
      while (at < n && std::isspace(b[at])) ++at;
      if (at >= n || b[at] != '#') break;
      while (at < n && b[at] != '\n' && b[at] != '\r') ++at;
    }
    uint64_t v = 0;
    for (; at < n && b[at] >= '0' && b[at] <= '9'; ++at) v = std::min<uint64_t>(v * 10 + (b[at] - '0'), uint64_t(1) << 40);
    const uint64_t most = field < 2 ? uint64_t(1) << 24 : 65535;
    RF_CHECK(v <= most, name, ": a damaged PNM file (its header declares ", field == 0 ? "a width" : field == 1 ? "a height" : "a maximum value",
             " of ", v == uint64_t(1) << 40 ? std::string("over 10^12") : std::to_string(v), "; at most ", most, ")");
  }
}

// The checks on a header, wherever it was read from (ok: stb could read it).
ImageInfo checked_info(bool ok, int w, int h, int c, bool is16, const Sniffed& s, const std::string& name) {
  const int64_t limit = max_image_pixels();
  if (!ok) {
    if (s.png_width >= 0) {
      RF_CHECK(s.png_width > 0 && s.png_height > 0, name, ": the image is empty (", s.png_width, "x", s.png_height,
               " pixels)");
      // Both are below 2^32, so their product fits in 64 unsigned bits.
      const uint64_t pixels = (uint64_t)s.png_width * (uint64_t)s.png_height;
      RF_CHECK(pixels <= (uint64_t)limit, name, ": the image declares ", s.png_width, "x", s.png_height, " = ", pixels,
               " pixels, over the limit of ", limit, " (raise it with REFOCUS_MAX_PIXELS)");
    }
    throw Error(cat(name, ": a damaged or truncated ", s.format, " file (its header cannot be read)"));
  }
  // Checked from the header, before decoding: a few hundred crafted bytes can declare gigapixels.
  RF_CHECK(w > 0 && h > 0, name, ": the image is empty (", w, "x", h, " pixels)");
  RF_CHECK(c >= 1 && c <= 4, name, ": the image has ", c, " channels; 1 to 4 are supported");
  RF_CHECK((int64_t)w * h <= limit, name, ": the image declares ", w, "x", h, " = ", (int64_t)w * h,
           " pixels, over the limit of ", limit, " (raise it with REFOCUS_MAX_PIXELS)");
  return ImageInfo{w, h, c, is16 ? 16 : 8};
}
// stb allocates what a PNG chunk's length field claims before reading it: 100 crafted bytes could ask for 2 GiB.
// Every chunk must fit in the file.
void check_png_chunks(const unsigned char* b, size_t n, const std::string& name) {
  size_t at = 8;
  while (at + 8 <= n) {
    const uint64_t length = (uint64_t)b[at] << 24 | (uint64_t)b[at + 1] << 16 | (uint64_t)b[at + 2] << 8 | b[at + 3];
    std::string type(reinterpret_cast<const char*>(b + at + 4), 4);
    for (char& ch : type)
      if (ch < 32 || ch > 126) ch = '?';
    RF_CHECK(length + 12 <= n - at, name, ": a damaged or truncated PNG file (its ", type, " chunk claims ", length,
             " bytes; ", n - at, " remain in the file)");
    if (type == "IEND") return;
    at += 12 + length;
  }
}
}  // namespace

// Header checks from bytes (a whole file, or its first megabyte: enough for any header stb reads).
ImageInfo info_from_bytes(const unsigned char* data, size_t n, const std::string& name, Sniffed* sniffed_out = nullptr) {
  const Sniffed sniffed = sniff(data, n, name);
  if (sniffed_out) *sniffed_out = sniffed;
  check_supported(sniffed, name);
  // stb parses the tables before the frame header even for stbi_info: check them before stb sees the bytes.
  if (sniffed.format == "JPEG") check_jpeg_tables(data, n, name);
  if (sniffed.format == "PNM") check_pnm_header(data, n, name);
  const int len = (int)std::min<size_t>(n, INT32_MAX);
  int w = 0, h = 0, c = 0;
  const bool ok = stbi_info_from_memory(data, len, &w, &h, &c);
  return checked_info(ok, w, h, c, ok && stbi_is_16_bit_from_memory(data, len), sniffed, name);
}

ImageInfo image_info(const std::string& path) {
  RF_CHECK(file_exists(path), path, ": no such file");
  RF_CHECK(!is_folder(path), path, " is a folder, not an image");
  constexpr size_t kPrefix = 1 << 20;  // the whole file is not read to learn its size (datasets check every pair)
  std::string head(kPrefix, '\0');
  FILE* f = std::fopen(path.c_str(), "rb");
  RF_CHECK(f, path, ": cannot open for reading (", std::strerror(errno), ")");
  head.resize(std::fread(head.data(), 1, kPrefix, f));
  const bool whole = std::feof(f);
  std::fclose(f);
  const auto* data = reinterpret_cast<const unsigned char*>(head.data());
  if (!whole) {  // a header longer than the prefix (rare): read everything
    try {
      return info_from_bytes(data, head.size(), path);
    } catch (const Error&) {
      head = read_file(path);
      data = reinterpret_cast<const unsigned char*>(head.data());
    }
  }
  return info_from_bytes(data, head.size(), path);
}

bool has_positive(const Tensor& map) {
  for (float v : map.to_vector())
    if (v > 0.f) return true;
  return false;
}

void check_min_image_size(const Tensor& img, const std::string& path, const std::string& who) {
  RF_CHECK(img.size(-2) >= kMinImageSide && img.size(-1) >= kMinImageSide, path, " is ", img.size(-1), "x", img.size(-2),
           "; ", who, " needs images of at least ", kMinImageSide, "x", kMinImageSide, " pixels");
}

Tensor read_image(const std::string& path, int channels) {
  RF_CHECK(file_exists(path), path, ": no such file");
  RF_CHECK(!is_folder(path), path, " is a folder, not an image");
  return decode_image(read_file(path), path, channels);
}

Tensor decode_image(const std::string& bytes, const std::string& name, int channels) {
  RF_CHECK(channels == 1 || channels == 3, "decode_image: channels must be 1 or 3");
  RF_CHECK(bytes.size() <= (size_t)INT32_MAX, name, ": the file is over 2 GiB, more than the image reader takes");
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const int len = (int)bytes.size();
  Sniffed sniffed;
  const ImageInfo info = info_from_bytes(data, bytes.size(), name, &sniffed);
  if (sniffed.format == "PNG") check_png_chunks(data, bytes.size(), name);
  int w = 0, h = 0, c = 0;
  if (channels == 1)
    RF_CHECK(info.channels <= 2, name, ": expected a single-channel map but the file has ", info.channels,
             " channels");
  std::vector<float> planar;
  auto to_planar = [&](auto* px, float maxv) {
    if (!px)
      throw Error(cat(name, ": a damaged or truncated ", sniffed.format.empty() ? std::string("image") : sniffed.format,
                      " file (its pixel data cannot be decoded)"));
    if (w != info.width || h != info.height || c != info.channels) {  // stb's header and decoder disagree
      stbi_image_free(px);
      throw Error(cat(name, ": decodes to ", w, "x", h, "x", c, " but its header said ", info.width, "x",
                      info.height, "x", info.channels));
    }
    planar.resize((size_t)channels * w * h);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < channels; ++k) {
          int src = (c >= 3) ? k : 0;  // gray (and gray+alpha) replicated into RGB
          planar[((size_t)k * h + y) * w + x] = (float)px[((size_t)y * w + x) * c + src] / maxv;
        }
    stbi_image_free(px);
  };
  if (info.bits == 16)
    to_planar(stbi_load_16_from_memory(data, len, &w, &h, &c, 0), 65535.f);
  else
    to_planar(stbi_load_from_memory(data, len, &w, &h, &c, 0), 255.f);
  return from_vector(planar, {channels, h, w});
}

static uint32_t crc32(const unsigned char* p, size_t n, uint32_t crc = 0) {
  static uint32_t table[256];
  static bool init = false;
  if (!init) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t v = i;
      for (int k = 0; k < 8; ++k) v = (v & 1) ? 0xEDB88320u ^ (v >> 1) : v >> 1;
      table[i] = v;
    }
    init = true;
  }
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static void put_be32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s.push_back((char)((v >> (8 * i)) & 0xff));
}

static void png_chunk(std::string& out, const char* type, const std::string& data) {
  put_be32(out, (uint32_t)data.size());
  std::string body = std::string(type, 4) + data;
  out += body;
  put_be32(out, crc32((const unsigned char*)body.data(), body.size()));
}

// stb_image_write only writes 8-bit PNGs; this is the 16-bit one (big-endian samples, "Up" filter,
// deflate by stb's zlib compressor).
static std::string encode_png16(const std::vector<uint16_t>& px, int w, int h, int c) {
  const size_t row = (size_t)w * c * 2;
  std::vector<unsigned char> raw((row + 1) * h);
  for (int y = 0; y < h; ++y) {
    unsigned char* r = &raw[(row + 1) * y];
    r[0] = y ? 2 : 0;  // filter: Up (previous row) except for the first row
    for (size_t i = 0; i < (size_t)w * c; ++i) {
      uint16_t v = px[(size_t)y * w * c + i], above = y ? px[(size_t)(y - 1) * w * c + i] : 0;
      unsigned char hi = v >> 8, lo = v & 0xff;
      r[1 + 2 * i] = (unsigned char)(hi - (y ? (above >> 8) : 0));
      r[2 + 2 * i] = (unsigned char)(lo - (y ? (above & 0xff) : 0));
    }
  }
  int zlen = 0;
  unsigned char* z = stbi_zlib_compress(raw.data(), (int)raw.size(), &zlen, 6);
  RF_CHECK(z, "PNG compression failed");
  std::string out("\x89PNG\r\n\x1a\n", 8), ihdr;
  put_be32(ihdr, (uint32_t)w);
  put_be32(ihdr, (uint32_t)h);
  ihdr += std::string{(char)16, (char)(c == 3 ? 2 : 0), 0, 0, 0};  // depth 16, RGB or gray
  png_chunk(out, "IHDR", ihdr);
  png_chunk(out, "IDAT", std::string((const char*)z, zlen));
  png_chunk(out, "IEND", "");
  free(z);
  return out;
}

// stb's file writers ignore fwrite errors (a full disk leaves a truncated file); encoding to memory and
// writing through write_file_atomic checks every byte and fsyncs before the rename.
static void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), (size_t)size);
}

static std::vector<unsigned char> to_interleaved8(const Tensor& img, const std::string& path) {
  RF_CHECK(img.dim() == 3 && (img.size(0) == 1 || img.size(0) == 3), path,
           ": expected a [1 or 3, H, W] image, got ", describe(img));
  int c = (int)img.size(0), h = (int)img.size(1), w = (int)img.size(2);
  std::vector<float> v = img.to_vector();
  std::vector<unsigned char> px((size_t)w * h * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) {
        float f = v[((size_t)k * h + y) * w + x];
        f = std::isnan(f) ? 0.f : std::fmin(std::fmax(f, 0.f), 1.f);
        px[((size_t)y * w + x) * c + k] = (unsigned char)std::lround(f * 255.f);
      }
  return px;
}

void write_jpeg(const std::string& path, const Tensor& img_in, int quality) {
  RF_CHECK(quality >= 1 && quality <= 100, path, ": JPEG quality must be 1 to 100, got ", quality);
  Tensor img = img_in.dim() == 4 && img_in.size(0) == 1 ? img_in[0] : img_in;
  std::vector<unsigned char> px = to_interleaved8(img, path);
  int c = (int)img.size(0), h = (int)img.size(1), w = (int)img.size(2);
  std::string bytes;
  RF_CHECK(stbi_write_jpg_to_func(append_bytes, &bytes, w, h, c, px.data(), quality) && !bytes.empty(), path,
           ": JPEG encoding failed");
  write_file_atomic(path, bytes);
}

float srgb_to_linear(float c) { return c <= 0.04045f ? c / 12.92f : std::pow((c + 0.055f) / 1.055f, 2.4f); }

float linear_to_srgb(float l) {
  l = std::fmin(std::fmax(l, 0.f), 1.f);
  return l <= 0.0031308f ? 12.92f * l : 1.055f * std::pow(l, 1.f / 2.4f) - 0.055f;
}

void write_png(const std::string& path, const Tensor& img_in, int bits) {
  RF_CHECK(bits == 8 || bits == 16, path, ": PNG bit depth must be 8 or 16, got ", bits);
  Tensor img = img_in.dim() == 4 && img_in.size(0) == 1 ? img_in[0] : img_in;
  RF_CHECK(img.dim() == 3 && (img.size(0) == 1 || img.size(0) == 3), path, ": expected a [1 or 3, H, W] image, got ",
           describe(img_in));
  int c = (int)img.size(0), h = (int)img.size(1), w = (int)img.size(2);
  std::vector<float> v = img.to_vector();
  const float maxv = bits == 16 ? 65535.f : 255.f;
  auto quant = [&](int k, int y, int x) {
    float f = v[((size_t)k * h + y) * w + x];
    f = std::isnan(f) ? 0.f : std::fmin(std::fmax(f, 0.f), 1.f);
    return (uint32_t)std::lround(f * maxv);
  };
  if (bits == 8) {
    std::vector<unsigned char> px = to_interleaved8(img, path);
    std::string bytes;
    RF_CHECK(stbi_write_png_to_func(append_bytes, &bytes, w, h, c, px.data(), w * c) && !bytes.empty(), path,
             ": PNG encoding failed");
    write_file_atomic(path, bytes);
  } else {
    std::vector<uint16_t> px((size_t)w * h * c);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < c; ++k) px[((size_t)y * w + x) * c + k] = (uint16_t)quant(k, y, x);
    write_file_atomic(path, encode_png16(px, w, h, c));
  }
}

}  // namespace rf
