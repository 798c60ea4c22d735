// The one interface every network implements, so that the trainer, `deblur`, `evaluate`, `forward` and
// `convert` handle all of them the same way. A network file (models/<name>.{h,cpp}) defines a Model
// subclass that reads like its paper's figure; models/registry.cpp lists it by name.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "layers/module.h"

namespace rf {

// What a network reads besides the defocused image.
struct ModelInputs {
  bool depth = false;    // a depth map [B, 1, H, W] (synthetic sets carry one; see data/loader.h for units)
  bool defocus = false;  // a defocus (CoC) map [B, 1, H, W]
};

// A training loss: the total that is differentiated, and named parts for the log (values, not graphs).
struct LossTerms {
  Tensor total;
  std::vector<std::pair<std::string, float>> parts;
};

class Model : public Module {
 public:
  virtual std::string name() const = 0;              // the registry name, e.g. "gs"
  virtual nlohmann::json config() const = 0;         // everything needed to rebuild it (stored in checkpoints)
  virtual ModelInputs inputs() const { return {}; }
  // What its training batches carry besides image pairs (e.g. sft's ground-truth defocus maps).
  virtual ModelInputs training_inputs() const { return inputs(); }
  virtual std::string description() const { return name(); }  // one line for the programs' logs

  // Inference: input [B, 3, H, W] in [0, 1] (depth / defocus [B, 1, H, W] when inputs() asks for them,
  // undefined otherwise) -> sharp [B, 3, H, W]. Called in eval mode under NoGrad by run_deblur().
  virtual Tensor deblur(const Tensor& input, const Tensor& depth, const Tensor& defocus) = 0;

  // Training: the network's loss on one batch (on the training device) in the named stage of its recipe.
  virtual LossTerms loss(const Batch& batch, const std::string& stage);

  // `forward`: the official forward's arguments by name, and every output in its return order (out0,
  // out1, ...). The default is one argument "x" -> out0 = deblur(x).
  virtual std::vector<std::string> forward_inputs() const { return {"x"}; }
  virtual NamedTensors forward_named(const std::map<std::string, Tensor>& inputs);

  // Full-resolution inference in bounded memory: the context (px) a tile needs on each side for its
  // centre to equal the whole-image result; 0 = this network must see whole images.
  virtual int64_t tile_context() const { return 0; }
  // Input sizes must be multiples of this (run_deblur pads and crops back).
  virtual int64_t size_multiple() const { return 1; }

  // The defocus map the network predicts on its own (CoC radius in px, [B, 1, H, W]) for input [B, 3, H, W],
  // for networks that predict one (sft); undefined for the others. Called under NoGrad by `deblur --save-map`.
  virtual Tensor predict_defocus(const Tensor& input) { (void)input; return Tensor(); }

  // Figures gathered over the images it deblurred (evaluate writes them into its summary).
  virtual nlohmann::json stats() const { return nlohmann::json::object(); }
};

struct InferenceOptions {
  int64_t tile = 1024;  // tile side in px for images larger than this (networks with tile_context() > 0); 0: never
  // [ours] The input is linear light (a raw-like capture, e.g. the Pixel 4 set): the networks learnt on sRGB images
  // of ordinary exposure, so it is brightened by one gain and sRGB-encoded on the way in, decoded and darkened back
  // on the way out (linear_input_gain). The blurry input itself passes through unchanged.
  bool linear_input = false;
  // [ours] Self-ensemble: the image is run in this many of the square's eight symmetries (1, 2, 4 or 8:
  // ensemble_turns()), each result turned back, and the results averaged. It costs that many whole runs (gs fits its
  // blobs afresh in each: averaging the fits is most of what it gains). Not part of the papers' protocols, so the
  // judged figures are plain runs and an ensemble's are reported beside them. A model's stats() count every run.
  int self_ensemble = 1;
};

// The eight symmetries of the square as t = 0..7: bit 2 transposes (x <-> y), then bit 0 flips x, bit 1 flips y.
// turn_image(img [C, H, W], t) applies t (a transpose gives [C, W, H]); unturn_image undoes it. ensemble_turns(n):
// 1 = {identity}, 2 adds the half turn, 4 = the four quarter turns, 8 = all.
Tensor turn_image(const Tensor& img, int t);
Tensor unturn_image(const Tensor& img, int t);
std::vector<int> ensemble_turns(int n);

// The gain linear_input applies to a linear image [C, H, W]: its mean brought to 0.2 (the synthetic sets' mean in
// linear light is 0.16-0.36), but its brightest value kept at most 0.98, so that nothing clips; 1 for a black image.
float linear_input_gain(const Tensor& image);
// What the network sees of a linear image: sRGB(gain x image); and its result brought back: sRGB^-1(out) / gain.
Tensor encode_linear_input(const Tensor& image, float gain);
Tensor decode_linear_output(const Tensor& out, float gain);

// One image through a model: input [3, H, W] on any device (+ depth/defocus [1, H, W] as the model needs)
// -> [3, H, W] in [0, 1] on the CPU. Pads to size_multiple(), tiles with context where allowed, eval mode,
// NoGrad; around that, o's linear-light encoding and self-ensemble (the outermost: each turn is a whole run).
// Throws naming what is missing when the model needs a map the sample lacks.
Tensor run_deblur(Model& m, const LoadedSample& s, Device d, const InferenceOptions& o = {});

}  // namespace rf
