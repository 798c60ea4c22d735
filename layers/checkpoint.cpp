#include "layers/checkpoint.h"

#include "engine/json.h"
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

CheckpointInfo parse_checkpoint_info(const std::string& path, const std::map<std::string, std::string>& meta) {
  CheckpointInfo info;
  auto get = [&](const char* k) { auto it = meta.find(k); return it == meta.end() ? std::string() : it->second; };
  info.model = get("model");
  if (meta.count("step")) {
    try {
      info.step = std::stoll(get("step"));
    } catch (const std::exception&) {
      throw Error(cat(path, ": the step in the checkpoint metadata is not a number ('", get("step"), "')"));
    }
  }
  if (meta.count("config")) {
    info.config = parse_json(get("config"), cat(path, " (the config in its metadata)"));
  }
  return info;
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  SafeTensors st = load_safetensors(path);
  return parse_checkpoint_info(path, st.metadata);
}

CheckpointInfo load_checkpoint(const std::string& path, Module& m) {
  SafeTensors st = load_safetensors(path);
  m.load_state_dict(st.tensors, true, path);
  return parse_checkpoint_info(path, st.metadata);
}

}  // namespace rf
