// JSON parsing for files a user hands us (configs, checkpoint metadata, dataset meta): errors name the
// source, and nesting deeper than max_depth is refused while parsing, so a crafted file of a million
// brackets costs neither stack nor memory.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "engine/error.h"

namespace rf {

inline nlohmann::json parse_json(const std::string& text, const std::string& source, int max_depth = 32) {
  auto depth_guard = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > max_depth) throw Error(cat(source, ": the JSON nests deeper than ", max_depth, " levels"));
    return true;
  };
  try {
    return nlohmann::json::parse(text, depth_guard);
  } catch (const nlohmann::json::exception& e) {
    throw Error(cat(source, ": not valid JSON (", e.what(), ")"));
  }
}

}  // namespace rf
