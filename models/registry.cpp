#include "models/registry.h"

#include <functional>
#include <map>

namespace rf {

using Factory = std::function<std::unique_ptr<Deblurrer>(const std::string& weights, Device d)>;

// One entry per network; each model file adds itself here as it lands.
static std::map<std::string, Factory>& factories() {
  static std::map<std::string, Factory> f;
  return f;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (auto& [n, f] : factories()) names.push_back(n);
  return names;
}

std::unique_ptr<Deblurrer> load_deblurrer(const std::string& name, const std::string& weights, Device d) {
  auto it = factories().find(name);
  if (it == factories().end()) {
    std::string known;
    for (auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(cat("unknown model '", name, "' (this build has: ", known.empty() ? "none yet" : known, ")"));
  }
  return it->second(weights, d);
}

}  // namespace rf
