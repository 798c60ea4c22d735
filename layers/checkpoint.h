// Checkpoints: a model's state dict as safetensors, with the model name, its configuration (JSON) and the
// training step in __metadata__. Optimizer state goes to a second file (Optimizer::save).
#pragma once
#include <nlohmann/json.hpp>
#include <map>
#include <string>

#include "layers/module.h"

namespace rf {

struct CheckpointInfo {
  std::string model;
  nlohmann::json config;
  int64_t step = 0;
};

void save_checkpoint(const std::string& path, const Module& m, const CheckpointInfo& info);
// Metadata only (to build the right model before loading the weights).
CheckpointInfo read_checkpoint_info(const std::string& path);
// The same, from metadata already read (`path` names the file in errors).
CheckpointInfo parse_checkpoint_info(const std::string& path, const std::map<std::string, std::string>& metadata);
// Loads the weights into m (names and shapes checked, see Module::load_state_dict) and returns the metadata.
CheckpointInfo load_checkpoint(const std::string& path, Module& m);

}  // namespace rf
