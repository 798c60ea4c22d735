// Reading a network's configuration (a --config file, a checkpoint's metadata) with one rule for all of them:
// every key has a type and a range, a value outside it is refused with the key named, and a key the network
// does not know is refused too (a typo such as "block" for "blocks" would otherwise be silently ignored).
// Ranges also apply to the defaults, so a config that leaves a key out is checked the same way.
#pragma once
#include <cmath>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"

namespace rf {

class ConfigReader {
 public:
  // what: how errors name the config, e.g. "gs config".
  ConfigReader(const nlohmann::json& j, std::string what) : j_(j), what_(std::move(what)) {
    RF_CHECK(j_.is_object() || j_.is_null(), what_, ": expected a JSON object, got ", j_.dump());
  }

  bool has(const char* key) const { return j_.is_object() && j_.contains(key); }

  void get(const char* key, int64_t& v, int64_t lo, int64_t hi) {
    if (const nlohmann::json* x = find(key)) {
      RF_CHECK(x->is_number_integer(), what_, ": '", key, "' must be an integer, got ", x->dump());
      v = x->get<int64_t>();
    }
    RF_CHECK(v >= lo && v <= hi, what_, ": '", key, "' must be ", lo, "..", hi, ", got ", v);
  }
  void get(const char* key, int& v, int lo, int hi) {
    int64_t w = v;
    get(key, w, lo, hi);
    v = (int)w;
  }
  void get(const char* key, float& v, double lo, double hi) {
    double w = v;
    get(key, w, lo, hi);
    v = (float)w;
  }
  void get(const char* key, double& v, double lo, double hi) {
    if (const nlohmann::json* x = find(key)) {
      RF_CHECK(x->is_number(), what_, ": '", key, "' must be a number, got ", x->dump());
      v = x->get<double>();
    }
    RF_CHECK(std::isfinite(v) && v >= lo && v <= hi, what_, ": '", key, "' must be ", lo, "..", hi, ", got ", v);
  }
  void get(const char* key, bool& v) {
    if (const nlohmann::json* x = find(key)) {
      RF_CHECK(x->is_boolean(), what_, ": '", key, "' must be true or false, got ", x->dump());
      v = x->get<bool>();
    }
  }
  void get(const char* key, std::string& v, std::initializer_list<const char*> allowed) {
    if (const nlohmann::json* x = find(key)) {
      RF_CHECK(x->is_string(), what_, ": '", key, "' must be a string, got ", x->dump());
      v = x->get<std::string>();
    }
    std::string list;
    for (const char* a : allowed) {
      if (v == a) return;
      list += (list.empty() ? "" : ", ") + std::string(a);
    }
    throw Error(cat(what_, ": '", key, "' must be one of ", list, ", got '", v, "'"));
  }
  // A list of exactly n integers, each lo..hi.
  void get(const char* key, std::vector<int64_t>& v, size_t n, int64_t lo, int64_t hi) {
    if (const nlohmann::json* x = find(key)) {
      RF_CHECK(x->is_array() && x->size() == n, what_, ": '", key, "' must be a list of ", n, " integers, got ",
               x->dump());
      v.clear();
      for (const auto& e : *x) {
        RF_CHECK(e.is_number_integer(), what_, ": '", key, "' must hold integers, got ", e.dump());
        v.push_back(e.get<int64_t>());
      }
    }
    RF_CHECK(v.size() == n, what_, ": '", key, "' needs ", n, " entries");
    for (int64_t e : v) RF_CHECK(e >= lo && e <= hi, what_, ": entries of '", key, "' must be ", lo, "..", hi, ", got ", e);
  }
  // A list of min_n..max_n numbers, each lo..hi.
  void get(const char* key, std::vector<float>& v, size_t min_n, size_t max_n, double lo, double hi) {
    if (const nlohmann::json* x = find(key)) {
      RF_CHECK(x->is_array() && x->size() >= min_n && x->size() <= max_n, what_, ": '", key, "' must be a list of ", min_n,
               "..", max_n, " numbers, got ", x->dump());
      v.clear();
      for (const auto& e : *x) {
        RF_CHECK(e.is_number(), what_, ": '", key, "' must hold numbers, got ", e.dump());
        v.push_back(e.get<float>());
      }
    }
    for (float e : v)
      RF_CHECK(std::isfinite(e) && e >= lo && e <= hi, what_, ": entries of '", key, "' must be ", lo, "..", hi, ", got ", e);
  }

  // Every key of the object must have been read.
  void finish() const {
    if (!j_.is_object()) return;
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (read_.count(it.key())) continue;
      std::string known;
      for (const auto& k : read_) known += (known.empty() ? "" : ", ") + k;
      throw Error(cat(what_, ": unknown key '", it.key(), "' (known: ", known, ")"));
    }
  }

 private:
  const nlohmann::json* find(const char* key) {
    read_.insert(key);
    return has(key) ? &j_.at(key) : nullptr;
  }
  const nlohmann::json& j_;
  std::string what_;
  std::set<std::string> read_;
};

}  // namespace rf
