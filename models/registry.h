// The networks by name. Each entry builds its Model from a config (JSON; {} gives the defaults) and, where
// official code exists, turns a state dict under the official names into a refocus config + weights.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"

namespace rf {

struct ModelEntry {
  std::string name;
  std::string summary;  // one line: paper and what the network is
  std::function<std::unique_ptr<Model>(const nlohmann::json& config)> make;
  // Official state dict -> the config that reproduces the official network (its quirks included). The
  // tensors may be renamed or reshaped in place. Null when there is no official code to convert from.
  std::function<nlohmann::json(std::map<std::string, Tensor>& tensors)> from_official;
};

const std::vector<ModelEntry>& model_entries();
// The entry, or an error listing the names this build has.
const ModelEntry& model_entry(const std::string& name);
std::vector<std::string> model_names();

std::unique_ptr<Model> make_model(const std::string& name, const nlohmann::json& config = nlohmann::json::object());

// A refocus checkpoint: the weights, with the model name, its config and the step in the metadata.
void save_model(const std::string& path, const Model& m, int64_t step = 0);
// Builds the model a checkpoint names and loads its weights (names and shapes checked), on device d, in eval
// mode. `expect`: the name the user asked for ("" = any); a mismatch is an error naming both. A safetensors
// file without refocus metadata (e.g. written by a PyTorch twin) needs `expect`, and `config` then gives its
// configuration ({} = defaults).
std::unique_ptr<Model> load_model(const std::string& path, const std::string& expect, Device d,
                                  const nlohmann::json& config = nlohmann::json::object());

}  // namespace rf
