// The networks by name, behind one interface for `deblur` and `evaluate`.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/loader.h"

namespace rf {

class Deblurrer {
 public:
  virtual ~Deblurrer() = default;
  // input [3, H, W] in [0, 1] (with depth [1, H, W] when the model uses it) -> sharp [3, H, W] on the CPU.
  virtual Tensor deblur(const LoadedSample& s) = 0;
  virtual std::string describe() const = 0;
  // Figures the model gathered over the images it deblurred (written into evaluate's summary).
  virtual nlohmann::json stats() const { return nlohmann::json::object(); }
};

// Names of the models this build provides.
std::vector<std::string> model_names();

// Builds the model `name` from a checkpoint written by its trainer (or throws naming the problem).
std::unique_ptr<Deblurrer> load_deblurrer(const std::string& name, const std::string& weights, Device d);

}  // namespace rf
