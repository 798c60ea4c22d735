#include "models/registry.h"

#include <functional>
#include <map>

#include "models/gs.h"
#include "layers/checkpoint.h"

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
    GsResult r = gs_deblur(*model_, s.input.to(dev_), depth.defined() ? depth.to(dev_) : Tensor(), model_->cfg.fit_iters);
    double ds1, ds2;
    scale_change(r.fitted.blobs(), r.deblurred, &ds1, &ds2);
    n_++;
    sum_ds1_ += ds1;
    sum_ds2_ += ds2;
    sum_fit_psnr_ += r.fit_psnr;
    sum_fit_seconds_ += r.fit_seconds;
    return r.sharp.cpu();
  }
  nlohmann::json stats() const override {
    if (!n_) return nlohmann::json::object();
    return {{"images", n_},
            {"mean_s1_change", sum_ds1_ / n_},
            {"mean_s2_change", sum_ds2_ / n_},
            {"mean_fit_psnr_db", sum_fit_psnr_ / n_},
            {"mean_fit_seconds", sum_fit_seconds_ / n_}};
  }
  std::string describe() const override {
    return cat("gs (", model_->cfg.use_depth ? "with depth" : "w/o depth", ", ", model_->cfg.fit_iters,
               " fitting iterations)");
  }

 private:
  Device dev_;
  std::unique_ptr<GsModel> model_;
  int64_t n_ = 0;
  double sum_ds1_ = 0, sum_ds2_ = 0, sum_fit_psnr_ = 0, sum_fit_seconds_ = 0;
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
