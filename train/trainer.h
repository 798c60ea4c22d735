// The one training loop every network uses. A network's trainer (train/cmd/train_<name>.cpp) is a Recipe:
// which model, its own flags, defaults for the two judging recipes (--recipe cpu|gpu, DESIGN §8), and its
// stages. The Trainer does everything else, once:
//   - common flags (--device --out --iters --batch --crop --lr --seed --config --resume --layout --recipe ...),
//     parsed strictly; a resumed run keeps its configuration and accepts the original command line;
//   - a run folder: config.json (options, model config, recipe, machine, wall time), log.jsonl, report.html
//     (loss curves, validation PSNR, sample crops), train_state.safetensors (weights + optimizer state + the
//     stage and step they belong to: the one atomic record of progress), and the final <model>.safetensors;
//   - stages run in order and resume mid-stage; progress lines with ETA; a validation pass on held-out pairs
//     every --val-every steps; checkpoints every --checkpoint-every steps;
//   - a clear stop, naming the stage, the step and the tensor, when a loss or gradient becomes NaN/Inf
//     (nothing non-finite is ever written as weights).
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "layers/optim.h"
#include "models/model.h"
#include "train/run_dir.h"

namespace rf {

// Options every trainer takes.
struct TrainOptions {
  std::string data, out, device = "auto", layout = "auto", recipe = "cpu";
  int64_t iters = 0, batch = 0, crop = 0;  // meaning per recipe (the main stage's length, its batch and crop)
  float lr = 0;
  uint64_t seed = 0;
  int64_t val_every = 500, val_images = 4, val_crop = 256, checkpoint_every = 500, log_every = 20;
  int64_t limit = 0;                     // train on the first N images only (0: all)
  double sharp_fraction = 0;             // share of training crops shown sharp (see LoaderOptions)
  nlohmann::json net = nlohmann::json::object();  // the network's own flags, by key
  nlohmann::json to_json() const;
};

// Defaults of one judging recipe (DESIGN §8): cpu trains within 45 minutes on 2 cores, gpu within 20 on an H100.
struct RecipeDefaults {
  int64_t iters = 1000, batch = 4, crop = 128;
  float lr = 1e-4f;
  int64_t val_every = 500, val_images = 4, val_crop = 256, checkpoint_every = 500;
  int64_t limit = 0;  // train on the first N images (0: all)
  double sharp_fraction = 0;
  nlohmann::json net = nlohmann::json::object();  // overrides of the network flags' defaults
};

// A network-specific flag: "--fit-iters" <-> net["fit_iters"]. The default's JSON type sets the parsing
// (bool: a switch; integer; number; string); min/max bound numbers.
struct NetFlag {
  std::string flag, key;
  nlohmann::json default_value;
  std::string help;
  double min = -1e300, max = 1e300;
  // What a run saved before this flag existed meant (null: the default): resuming such a run keeps its behaviour when
  // the default has changed since.
  nlohmann::json absent_means = nullptr;
};

// What a step reports: the loss to minimise (undefined when the stage did its own work) and values to log.
using StepResult = LossTerms;

struct Stage {
  std::string name;
  int64_t iters = 0;
  // The parameters this stage trains (empty or null: no optimizer; the step does its own work).
  std::function<NamedTensors()> params;
  // The optimizer for those parameters (default: Adam with the schedule's learning rate).
  std::function<std::unique_ptr<Optimizer>(NamedTensors)> make_optimizer;
  LRSchedule schedule;
  float clip_grad_norm = 0;  // 0: no clipping (the norm is still computed and checked)
  bool validate = true;      // run the validation pass during and after this stage
  std::function<void(int64_t first_step)> begin;  // set up (loaders, caches) before the first step run
  std::function<StepResult(int64_t step)> step;
  std::function<void()> end;
};

struct TrainContext;

struct Recipe {
  std::string program;  // "train_ggkm"
  std::string model;    // registry name of the (default) model
  std::string summary;  // first lines of the usage text
  RecipeDefaults cpu, gpu;
  std::vector<NetFlag> flags;
  // The registry name actually trained (default: `model`), e.g. from a --variant flag.
  std::function<std::string(const TrainContext&)> model_name;
  // The model's config from the options and the dataset ({} = the network's defaults); --config's "model"
  // section is merged over it.
  std::function<nlohmann::json(const TrainContext&)> model_config;
  // Adjusts the recipe's defaults to the network flags of a new run (e.g. a bigger variant trains fewer steps in the
  // recipe's time); the options given in --config or on the command line are applied after it, so they still win.
  std::function<void(TrainOptions&)> adjust_defaults;
  std::function<std::vector<Stage>(TrainContext&)> stages;
  // Builds the model (default: the registry's entry; tests and experiments may train models outside it).
  std::function<std::unique_ptr<Model>(const std::string& name, const nlohmann::json& config)> make;
  // Extra report pictures for one validation image (input, output and target are always shown).
  std::function<std::vector<std::pair<std::string, Tensor>>(TrainContext&, const LoadedSample&)> samples;
};

struct TrainContext {
  TrainOptions opt;
  Dataset train, val;  // val: the dataset's val split, else the last val_images training pairs (held out)
  Device device = Device::CPU;
  RunDir* run = nullptr;
  Model* model = nullptr;
  // The loader options a supervised stage uses: batch, crop, seed and the maps the model reads.
  LoaderOptions loader_options() const;
  // Batch tensors on the training device.
  Batch to_device(const Batch& b) const;
};

// A stage that trains all of the model's parameters on random crops with Model::loss(batch, name): what most
// networks need (the paper's loss lives in the model; the recipe sets the schedule). Its step i draws the
// loader's batch first_batch + i (a later stage passes the steps before it to see new crops).
Stage supervised_stage(TrainContext& ctx, const std::string& name, int64_t iters, LRSchedule schedule,
                       int64_t first_batch = 0);

// Parses the command line, runs (or resumes) the recipe's stages, writes the final weights. Returns the exit code.
int train_main(const Recipe& recipe, int argc, char** argv);

}  // namespace rf
