#include "engine/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "engine/fileio.h"
#include "engine/json.h"

namespace rf {

using json = nlohmann::json;

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    RF_CHECK(name != "__metadata__", path, ": a tensor may not be called __metadata__");
    RF_CHECK(!header.contains(name), path, ": tensor name '", name, "' is used twice");
    size_t bytes = sizeof(float) * (size_t)t.numel();
    header[name] = {{"dtype", "F32"}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h.push_back(' ');  // keep the data 8-byte aligned
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = (char)((n >> (8 * i)) & 0xff);
  out += h;
  size_t data_start = out.size();
  out.resize(data_start + offset);
  size_t at = data_start;
  for (const auto& [name, t] : tensors) {
    std::vector<float> v = t.to_vector();  // host copy, little-endian floats on every supported machine
    std::memcpy(&out[at], v.data(), v.size() * sizeof(float));
    at += v.size() * sizeof(float);
  }
  write_file_atomic(path, out);
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp((float)man, -24);
  else if (exp == 31)
    v = man ? NAN : INFINITY;
  else
    v = std::ldexp((float)(man | 0x400), (int)exp - 25);
  return sign ? -v : v;
}

SafeTensors load_safetensors(const std::string& path) { return parse_safetensors(read_file(path), path); }

SafeTensors parse_safetensors(const std::string& bytes, const std::string& path) {
  RF_CHECK(bytes.size() >= 8, path, ": not a safetensors file (shorter than its 8-byte header length)");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= (uint64_t)(unsigned char)bytes[i] << (8 * i);
  RF_CHECK(n <= bytes.size() - 8, path, ": not a safetensors file (header length ", n, " exceeds the file size ",
           bytes.size(), ")");
  // A header is tensor name -> {dtype, shape, offsets} plus flat metadata: three levels of nesting.
  json header = parse_json(std::string(bytes.begin() + 8, bytes.begin() + 8 + (std::ptrdiff_t)n),
                           cat(path, " (its safetensors header)"), 8);
  RF_CHECK(header.is_object(), path, ": the safetensors header is not a JSON object");
  SafeTensors out;
  const size_t data_start = 8 + n, data_size = bytes.size() - data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      RF_CHECK(it.value().is_object(), path, ": the safetensors __metadata__ is not a JSON object of strings");
      for (auto m = it.value().begin(); m != it.value().end(); ++m)
        out.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    const json& e = it.value();
    RF_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"), path,
             ": tensor '", name, "' lacks dtype, shape or data_offsets");
    RF_CHECK(e["dtype"].is_string() && e["shape"].is_array() && e["data_offsets"].is_array(), path, ": tensor '",
             name, "' has a malformed dtype, shape or data_offsets entry");
    for (const json& d : e["shape"])
      RF_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, path, ": tensor '", name,
               "' has a shape entry that is not a non-negative integer: ", d.dump());
    for (const json& o : e["data_offsets"])
      RF_CHECK(o.is_number_unsigned(), path, ": tensor '", name, "' has a data offset that is not a non-negative integer");
    std::string dtype = e["dtype"].get<std::string>();
    Shape shape = e["shape"].get<Shape>();
    auto offs = e["data_offsets"].get<std::vector<uint64_t>>();
    RF_CHECK(offs.size() == 2 && offs[0] <= offs[1] && offs[1] <= data_size, path, ": tensor '", name,
             "' has data offsets outside the file");
    size_t elem = (dtype == "F32" || dtype == "I32") ? 4 : (dtype == "F64" || dtype == "I64") ? 8
                  : (dtype == "F16" || dtype == "BF16") ? 2 : 0;
    RF_CHECK(elem, path, ": tensor '", name, "' has dtype ", dtype,
             "; refocus reads F32, F64, F16, BF16, I64 and I32 (converted to float32)");
    uint64_t count = 1;
    for (int64_t d : shape)
      RF_CHECK(!__builtin_mul_overflow(count, (uint64_t)d, &count) && count <= data_size, path, ": tensor '", name,
               "' declares shape ", shape, ", more elements than the file holds");
    RF_CHECK(offs[1] - offs[0] == count * elem, path, ": tensor '", name, "' of shape ", shape, " and dtype ",
             dtype, " should take ", count * elem, " bytes but takes ", offs[1] - offs[0]);
    const char* src = bytes.data() + data_start + offs[0];
    std::vector<float> v((size_t)count);
    for (uint64_t i = 0; i < count; ++i) {
      if (dtype == "F32") {
        std::memcpy(&v[i], src + 4 * i, 4);
      } else if (dtype == "F64") {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        v[i] = (float)d;
      } else if (dtype == "I64") {  // e.g. BatchNorm's num_batches_tracked
        int64_t d;
        std::memcpy(&d, src + 8 * i, 8);
        v[i] = (float)d;
      } else if (dtype == "I32") {
        int32_t d;
        std::memcpy(&d, src + 4 * i, 4);
        v[i] = (float)d;
      } else {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        if (dtype == "F16") {
          v[i] = half_to_float(h);
        } else {
          uint32_t u = (uint32_t)h << 16;
          std::memcpy(&v[i], &u, 4);
        }
      }
    }
    out.tensors[name] = from_vector(v, shape);
  }
  return out;
}

}  // namespace rf
