#include "models/registry.h"

#include <functional>
#include <map>

#include "models/gs.h"
#include "train/checkpoint.h"

namespace rf {

using Factory = std::function<std::unique_ptr<Deblurrer>(const std::string& weights, Device d)>;

namespace {

class GsDeblurrer : public Deblurrer {
 public:
  GsDeblurrer(const std::string& weights, Device d) : dev_(d) {
    CheckpointInfo info = read_checkpoint_info(weights);
    RF_CHECK(info.model == "gs", weights, ": a '", info.model, "' checkpoint, not gs");
    model_ = std::make_unique<GsModel>(GsConfig::from_json(info.config));
    load_checkpoint(weights, *model_);
    model_->to(d);
    model_->eval();
  }
  Tensor deblur(const LoadedSample& s) override {
    Tensor depth = model_->cfg.use_depth ? s.depth : Tensor();
    RF_CHECK(!model_->cfg.use_depth || depth.defined(),
             "this gs model was trained with depth maps, and the input has none");
    return gs_deblur(*model_, s.input.to(dev_), depth.defined() ? depth.to(dev_) : Tensor(), model_->cfg.fit_iters)
        .sharp.cpu();
  }
  std::string describe() const override {
    return cat("gs (", model_->cfg.use_depth ? "with depth" : "w/o depth", ", ", model_->cfg.fit_iters,
               " fitting iterations)");
  }

 private:
  Device dev_;
  std::unique_ptr<GsModel> model_;
};

}  // namespace

// One entry per network.
static std::map<std::string, Factory>& factories() {
  static std::map<std::string, Factory> f = {
      {"gs", [](const std::string& w, Device d) { return std::make_unique<GsDeblurrer>(w, d); }},
  };
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
