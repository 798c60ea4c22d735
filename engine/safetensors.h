// safetensors: 8-byte little-endian header length, a JSON header (name -> dtype, shape, byte offsets;
// free-form strings under "__metadata__"), then the raw little-endian data. The format PyTorch users
// load with safetensors.torch.load_file, so weights move both ways without conversion code.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace rf {

struct SafeTensors {
  std::map<std::string, Tensor> tensors;  // CPU tensors, converted to float32
  std::map<std::string, std::string> metadata;
};

// Writes atomically. Tensors may live on any device.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads F32, F64, F16, BF16, I64 and I32 tensors (all converted to float32); anything malformed throws with the
// file name and what is wrong.
// The same from the file's bytes in memory (the fuzz target's entry point); `path` is what errors call it.
SafeTensors parse_safetensors(const std::string& bytes, const std::string& path);
SafeTensors load_safetensors(const std::string& path);

}  // namespace rf
