#include "layers/checkpoint.h"

#include "engine/safetensors.h"

namespace rf {

void save_checkpoint(const std::string& path, const Module& m, const CheckpointInfo& info) {
  save_safetensors(path, m.state_dict(),
                   {{"format", "refocus"},
                    {"version", "1"},
                    {"model", info.model},
                    {"step", std::to_string(info.step)},
                    {"config", info.config.dump()}});
}

static CheckpointInfo info_from(const std::string& path, std::map<std::string, std::string>& meta) {
  CheckpointInfo info;
  info.model = meta["model"];
  if (meta.count("step")) info.step = std::stoll(meta["step"]);
  if (meta.count("config")) {
    try {
      info.config = nlohmann::json::parse(meta["config"]);
    } catch (const std::exception& e) {
      throw Error(cat(path, ": the config in the checkpoint metadata is not valid JSON (", e.what(), ")"));
    }
  }
  return info;
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  SafeTensors st = load_safetensors(path);
  return info_from(path, st.metadata);
}

CheckpointInfo load_checkpoint(const std::string& path, Module& m) {
  SafeTensors st = load_safetensors(path);
  m.load_state_dict(st.tensors, true, path);
  return info_from(path, st.metadata);
}

}  // namespace rf
