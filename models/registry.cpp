#include "models/registry.h"

#include "engine/safetensors.h"
#include "layers/checkpoint.h"
#include "models/config.h"
#include "models/ggkm.h"
#include "models/gs.h"
#include "models/inik.h"
#include "models/jdrl.h"
#include "models/sft.h"

namespace rf {

// One entry per network; a new network adds its line here.
const std::vector<ModelEntry>& model_entries() {
  static const std::vector<ModelEntry> entries = {
      {"gs", "paper 000: 2-D Gaussian blobs fitted to the image, adjusted by a Transformer, rendered sharp",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> { return std::make_unique<GsModel>(GsConfig::from_json(c)); },
       gs_config_from_state_dict},
      {"gkm", "paper 001's predecessor GKMNet: 22 fixed Gaussian kernels mixed by per-pixel maps, 3 scales",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> {
         nlohmann::json j = c;
         j["variant"] = "gkm";
         return std::make_unique<GgkmModel>(GgkmConfig::from_json(j));
       },
       gkm_config_from_official},
      {"ggkm", "paper 001: grouped Gaussian kernel mixtures (21 groups x 4), unrolled fixed-point steps, 3 scales",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> {
         nlohmann::json j = c;
         j["variant"] = "ggkm";
         return std::make_unique<GgkmModel>(GgkmConfig::from_json(j));
       },
       nullptr},
      {"ggkm+", "paper 001's GGKMNet+ (more residual blocks in the backbone)",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> {
         nlohmann::json j = c;
         j["variant"] = "ggkm+";
         return std::make_unique<GgkmModel>(GgkmConfig::from_json(j));
       },
       nullptr},
      {"sft", "paper 002: defocus-map prediction (DID-ANet's branch) + SFT-Dec-conditioned residual deblurring",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> { return std::make_unique<SftModel>(SftConfig::from_json(c)); },
       nullptr},
      {"inik", "paper 003: implicit neural inverse kernels (sine-MLP atoms), per-pixel scale and basis weights, 3 scales",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> { return std::make_unique<InikModel>(InikConfig::from_json(c)); },
       inik_config_from_official},
      {"jdrl", "paper 004: deblurring trained from misaligned pairs with a reblurring module (estimator + deformable fusion + U-Net or Restormer)",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> { return std::make_unique<JdrlModel>(JdrlConfig::from_json(c)); },
       nullptr},
      {"jdrl_reblur", "paper 004's reblurring module alone (JDRL's Reblur_Model, released names; inputs im_s, im_b)",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> {
         ConfigReader(c, "jdrl_reblur config").finish();  // nothing to configure
         return std::make_unique<JdrlReblurModel>();
       },
       jdrl_reblur_config_from_official},
      {"jdrl_unet", "paper 004's conference backbone alone (JDRL's VGG_Deblur, released names; input im_b)",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> {
         ConfigReader r(c, "jdrl_unet config");
         int64_t width = 64;
         r.get("width", width, 1, 1024);
         r.finish();
         return std::make_unique<JdrlUnetModel>(width);
       },
       jdrl_unet_config_from_official},
      {"gs_initializer", "paper 000, gs's initializer alone (for forward): a U-Net placing one blob per 2x2 cell",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> { return std::make_unique<GsInitializer>(GsConfig::from_json(c)); },
       nullptr},
      {"gs_deblurrer", "paper 000, gs's blob deblurrer alone (for forward): fitted blobs -> adjusted blobs",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> { return std::make_unique<BlobDeblurrer>(GsConfig::from_json(c)); },
       nullptr},
      {"gs_photo_encoder", "gs's photo encoder alone (for forward): image -> the features its tokens carry",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> { return std::make_unique<GsPhotoEncoder>(GsConfig::from_json(c)); },
       nullptr},
      {"gs_defocus", "gs's defocus estimator alone (for forward): image -> CoC radius in px per pixel",
       [](const nlohmann::json& c) -> std::unique_ptr<Model> { return std::make_unique<GsDefocusEstimator>(GsConfig::from_json(c)); },
       nullptr},
  };
  return entries;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (auto& e : model_entries()) names.push_back(e.name);
  return names;
}

const ModelEntry& model_entry(const std::string& name) {
  for (auto& e : model_entries())
    if (e.name == name) return e;
  std::string known;
  for (auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(cat("unknown model '", name, "' (this build has: ", known, ")"));
}

std::unique_ptr<Model> make_model(const std::string& name, const nlohmann::json& config) {
  return model_entry(name).make(config.is_null() ? nlohmann::json::object() : config);
}

void save_model(const std::string& path, const Model& m, int64_t step) {
  save_checkpoint(path, m, CheckpointInfo{m.name(), m.config(), step});
}

std::unique_ptr<Model> load_model(const std::string& path, const std::string& expect, Device d,
                                  const nlohmann::json& config) {
  if (!expect.empty()) model_entry(expect);  // an unknown name is the first thing to say
  SafeTensors st = load_safetensors(path);
  std::string name = st.metadata.count("model") ? st.metadata["model"] : "";
  nlohmann::json cfg = config;
  if (name.empty()) {
    RF_CHECK(!expect.empty(), path, ": has no refocus metadata (no model name): say which network it is with --model");
    name = expect;
  } else {
    RF_CHECK(expect.empty() || expect == name, path, ": holds a '", name, "' model, not ", expect);
    CheckpointInfo info = parse_checkpoint_info(path, st.metadata);
    if (!info.config.is_null()) cfg = info.config;
  }
  std::unique_ptr<Model> m;
  try {
    m = make_model(name, cfg);
  } catch (const Error& e) {  // a config error says which file it came from
    throw Error(cat(path, ": ", e.what()));
  }
  m->load_state_dict(st.tensors, true, path);
  m->to(d);
  m->eval();
  return m;
}

}  // namespace rf
