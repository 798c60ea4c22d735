#include "engine/json.h"
#include "train/trainer.h"

#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <thread>

#include "data/image.h"
#include "data/metrics.h"
#include "engine/fileio.h"
#include "engine/safetensors.h"
#include "models/registry.h"
#include "ops/ops.h"
#include "train/cli.h"

namespace rf {

nlohmann::json TrainOptions::to_json() const {
  return {{"data", data},
          {"layout", layout},
          {"recipe", recipe},
          {"iters", iters},
          {"batch", batch},
          {"crop", crop},
          {"lr", lr},
          {"seed", seed},
          {"val_every", val_every},
          {"val_images", val_images},
          {"val_crop", val_crop},
          {"checkpoint_every", checkpoint_every},
          {"log_every", log_every},
          {"limit", limit},
          {"sharp_fraction", sharp_fraction},
          {"net", net}};
}

LoaderOptions TrainContext::loader_options() const {
  LoaderOptions lo;
  lo.batch = opt.batch;
  lo.crop = opt.crop;
  lo.seed = opt.seed;
  lo.sharp_fraction = opt.sharp_fraction;
  ModelInputs need = model->training_inputs();
  lo.with_depth = need.depth;
  lo.with_defocus = need.defocus;
  return lo;
}

Batch TrainContext::to_device(const Batch& b) const {
  Batch d;
  d.step = b.step;
  for (auto [src, dst] : {std::pair{&b.input, &d.input}, {&b.target, &d.target}, {&b.depth, &d.depth},
                          {&b.defocus, &d.defocus}})
    if (src->defined()) *dst = src->to(device);
  return d;
}

Stage supervised_stage(TrainContext& ctx, const std::string& name, int64_t iters, LRSchedule schedule,
                       int64_t first_batch) {
  auto loader = std::make_shared<std::unique_ptr<TrainLoader>>();
  Stage s;
  s.name = name;
  s.iters = iters;
  s.schedule = schedule;
  s.params = [&ctx] { return ctx.model->named_parameters(); };
  s.begin = [&ctx, loader, first_batch](int64_t first) {
    *loader = std::make_unique<TrainLoader>(ctx.train, ctx.loader_options());
    (*loader)->seek(first_batch + first);
  };
  s.step = [&ctx, loader, name](int64_t) { return ctx.model->loss(ctx.to_device((*loader)->next()), name); };
  s.end = [loader] { loader->reset(); };
  return s;
}

namespace {

// --- options ------------------------------------------------------------------------------------------
struct CommonFlag {
  const char* flag;
  const char* help;
};

const std::vector<CommonFlag> kCommonFlags = {
    {"--out RUN", "run folder (default runs/<model>)"},
    {"--device auto|cpu|cuda", "training device (default auto: CUDA when usable)"},
    {"--recipe cpu|gpu", "defaults sized for 45 min on 2 CPU cores, or 20 min on one H100 (DESIGN §8)"},
    {"--iters N", "steps of the main stage"},
    {"--batch N", "images per step"},
    {"--crop N", "square training crops of N px"},
    {"--lr X", "learning rate"},
    {"--seed N", "seed of the whole run (weights, crops, augmentation)"},
    {"--config FILE.json", "{\"model\": {...}, \"train\": {...}}: model config and option defaults"},
    {"--layout NAME", "dataset layout (default auto)"},
    {"--val-every N", "validation pass every N steps (0: only at the end of a stage)"},
    {"--val-images N", "held-out pairs for validation (0: no validation)"},
    {"--val-crop N", "validate on centre crops of at most N px (0: whole images)"},
    {"--checkpoint-every N", "save weights and optimizer state every N steps"},
    {"--log-every N", "log the loss every N steps"},
    {"--limit N", "train on the first N images only"},
    {"--sharp-fraction F", "share (0-0.5) of training crops whose input is their own sharp target (not train_gs: --sharp-pairs)"},
    {"--resume", "continue the run in --out where it stopped (the original command line is accepted)"},
    {"--stop-after N", "save and stop after N steps of all stages together (continue later with --resume)"},
};

std::string usage(const Recipe& r) {
  std::string u = cat("usage: ", r.program, " DIR [options]\n", r.summary, "\nDIR: a dataset in any supported layout (its train split).\n\nOptions:\n");
  auto line = [&](const std::string& f, const std::string& h) {
    char buf[512];
    std::snprintf(buf, sizeof buf, "  %-26s %s\n", f.c_str(), h.c_str());
    u += buf;
  };
  for (auto& c : kCommonFlags) line(c.flag, c.help);
  if (!r.flags.empty()) u += cat("\n", r.model, " options:\n");
  for (auto& f : r.flags) {
    std::string shown = f.flag + (f.default_value.is_boolean() ? "" : " V");
    line(shown, cat(f.help, f.default_value.is_boolean() ? "" : cat(" (default ", f.default_value.dump(), ")")));
  }
  auto recipe = [](const RecipeDefaults& d) {
    return cat(d.iters, " steps, batch ", d.batch, ", crop ", d.crop, ", lr ", d.lr,
               d.sharp_fraction > 0 ? cat(", sharp fraction ", d.sharp_fraction) : std::string());
  };
  u += cat("\nRecipes: cpu = ", recipe(r.cpu), "; gpu = ", recipe(r.gpu), ".");
  return u;
}

// The flags as given on the command line, in the options' JSON form; bounds checked.
nlohmann::json flags_given(const Recipe& r, const Args& a) {
  nlohmann::json g = nlohmann::json::object();
  auto integer = [&](const char* flag, const char* key, int64_t lo, int64_t hi) {
    if (!a.has(flag)) return;
    g[key] = a.integer(flag, 0, lo, hi);
  };
  integer("--iters", "iters", 0, 1000000000);
  integer("--batch", "batch", 1, 4096);
  integer("--crop", "crop", 8, 16384);
  integer("--seed", "seed", 0, INT64_MAX);
  integer("--val-every", "val_every", 0, 1000000000);
  integer("--val-images", "val_images", 0, 100000);
  integer("--val-crop", "val_crop", 0, 16384);
  integer("--checkpoint-every", "checkpoint_every", 1, 1000000000);
  integer("--log-every", "log_every", 1, 1000000000);
  integer("--limit", "limit", 0, 1000000000);
  if (a.has("--lr")) {
    double lr = a.number("--lr", 0, 0, 10);
    RF_CHECK(lr > 0, "option --lr must be a positive number, got ", lr);
    g["lr"] = lr;
  }
  if (a.has("--sharp-fraction")) g["sharp_fraction"] = a.number("--sharp-fraction", 0, 0, 0.5);
  if (a.has("--layout")) g["layout"] = a.str("--layout", "auto");
  nlohmann::json net = nlohmann::json::object();
  for (auto& f : r.flags) {
    if (!a.has(f.flag)) continue;
    if (f.default_value.is_boolean()) {
      net[f.key] = a.flag(f.flag);
    } else if (f.default_value.is_number_integer()) {
      net[f.key] = a.integer(f.flag, 0, (int64_t)f.min, (int64_t)f.max);
    } else if (f.default_value.is_number()) {
      net[f.key] = a.number(f.flag, 0, f.min, f.max);
    } else {
      net[f.key] = a.str(f.flag, "");
    }
  }
  if (!net.empty()) g["net"] = net;
  return g;
}

void apply(TrainOptions& o, const nlohmann::json& j, const std::string& source) {
  try {
    auto get = [&](const char* k, auto& v) {
      if (j.contains(k)) v = j.at(k).get<std::decay_t<decltype(v)>>();
    };
    get("layout", o.layout);
    get("iters", o.iters);
    get("batch", o.batch);
    get("crop", o.crop);
    get("lr", o.lr);
    get("seed", o.seed);
    get("val_every", o.val_every);
    get("val_images", o.val_images);
    get("val_crop", o.val_crop);
    get("checkpoint_every", o.checkpoint_every);
    get("log_every", o.log_every);
    get("limit", o.limit);
    get("sharp_fraction", o.sharp_fraction);
    if (j.contains("net")) o.net.update(j.at("net"));
  } catch (const nlohmann::json::exception& e) {
    throw Error(cat(source, ": a training option has the wrong type (", e.what(), ")"));
  }
  RF_CHECK(o.sharp_fraction >= 0 && o.sharp_fraction <= 0.5, source, ": sharp_fraction must be between 0 and 0.5, got ",
           o.sharp_fraction);
}

TrainOptions defaults(const Recipe& r, const std::string& recipe) {
  RF_CHECK(recipe == "cpu" || recipe == "gpu", "option --recipe must be cpu or gpu, got '", recipe, "'");
  const RecipeDefaults& d = recipe == "cpu" ? r.cpu : r.gpu;
  TrainOptions o;
  o.recipe = recipe;
  o.iters = d.iters;
  o.batch = d.batch;
  o.crop = d.crop;
  o.lr = d.lr;
  o.val_every = d.val_every;
  o.val_images = d.val_images;
  o.val_crop = d.val_crop;
  o.checkpoint_every = d.checkpoint_every;
  o.limit = d.limit;
  o.sharp_fraction = d.sharp_fraction;
  for (auto& f : r.flags) o.net[f.key] = f.default_value;
  o.net.update(d.net);
  return o;
}

// A resumed run keeps its configuration: a flag given again must say the same thing.
void check_same(const nlohmann::json& given, const nlohmann::json& saved, const std::string& run) {
  for (auto it = given.begin(); it != given.end(); ++it) {
    if (it.key() == "net") {
      check_same(it.value(), saved.value("net", nlohmann::json::object()), run);
      continue;
    }
    if (!saved.contains(it.key())) continue;
    const nlohmann::json& s = saved[it.key()];
    bool same = it.value() == s || (it.value().is_number() && s.is_number() &&
                                    std::fabs(it.value().get<double>() - s.get<double>()) <= 1e-9 * std::fabs(s.get<double>()));
    RF_CHECK(same, "--resume: ", it.key(), " = ", it.value().dump(), " differs from the run's ", s.dump(), " (", run,
             "/config.json); a resumed run keeps its configuration: drop the flag, or start a new --out");
  }
}

std::string machine_description(Device d) {
  std::string cpu_model;
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  while (std::getline(info, line))
    if (line.rfind("model name", 0) == 0) {
      cpu_model = line.substr(line.find(':') + 2);
      break;
    }
  std::string s = cat(std::thread::hardware_concurrency(), " CPU threads (", cpu_model, "), ", cpu_description());
  if (d == Device::CUDA) s += ", GPU: " + cuda_description();
  return s;
}

// --- the training state file: one atomic record of progress -----------------------------------------------
const char* kStateFile = "train_state.safetensors";

struct Position {
  size_t stage = 0;
  int64_t step = 0;  // steps of that stage already done
};

void save_state(TrainContext& ctx, const std::vector<Stage>& stages, Position pos, int64_t global_step,
                const Optimizer* opt) {
  NoGrad ng;
  NamedTensors t;
  for (auto& [n, p] : ctx.model->state_dict()) {
    // A non-finite weight is never written: it would poison every later resume.
    RF_CHECK(std::isfinite(sum(abs(p)).item()), "stage ", pos.stage < stages.size() ? stages[pos.stage].name : "end",
             ", step ", pos.step, ": weight '", n, "' is not finite; the last good checkpoint is kept");
    t.emplace_back("model." + n, p);
  }
  std::map<std::string, std::string> meta = {{"format", "refocus train state"},
                                             {"model", ctx.model->name()},
                                             {"config", ctx.model->config().dump()},
                                             {"stage_index", std::to_string(pos.stage)},
                                             {"stage", pos.stage < stages.size() ? stages[pos.stage].name : "done"},
                                             {"stage_step", std::to_string(pos.step)},
                                             {"step", std::to_string(global_step)}};
  if (opt) {
    for (auto& [n, s] : opt->state_tensors()) t.emplace_back("optim." + n, s);
    for (auto& [k, v] : opt->state_metadata()) meta["optim_" + k] = v;
  }
  save_safetensors(ctx.run->file(kStateFile), t, meta);
  // Derived, for people reading the folder: the state file above is what --resume trusts.
  ctx.run->save_state({{"stage", meta["stage"]}, {"stage_step", pos.step}, {"step", global_step}});
}

struct LoadedState {
  Position pos;
  std::map<std::string, Tensor> optim;
  std::map<std::string, std::string> optim_meta;
};

LoadedState load_state(TrainContext& ctx, const std::vector<Stage>& stages) {
  std::string path = ctx.run->file(kStateFile);
  SafeTensors st = load_safetensors(path);
  auto meta = [&](const char* k) {
    RF_CHECK(st.metadata.count(k), path, ": the metadata has no '", k, "'");
    return st.metadata[k];
  };
  RF_CHECK(meta("model") == ctx.model->name(), path, ": holds a '", meta("model"), "' run, not ", ctx.model->name());
  LoadedState s;
  try {
    s.pos.stage = (size_t)std::stoull(meta("stage_index"));
    s.pos.step = std::stoll(meta("stage_step"));
  } catch (const std::exception&) {
    throw Error(cat(path, ": the stage position in the metadata is not a number"));
  }
  RF_CHECK(s.pos.stage <= stages.size() && (s.pos.stage == stages.size() || meta("stage") == stages[s.pos.stage].name),
           path, ": stage '", meta("stage"), "' is not stage ", s.pos.stage, " of this trainer");
  std::map<std::string, Tensor> weights;
  for (auto& [n, t] : st.tensors) {
    if (n.rfind("model.", 0) == 0) weights[n.substr(6)] = t;
    if (n.rfind("optim.", 0) == 0) s.optim[n.substr(6)] = t;
  }
  for (auto& [k, v] : st.metadata)
    if (k.rfind("optim_", 0) == 0) s.optim_meta[k.substr(6)] = v;
  ctx.model->load_state_dict(weights, true, path);
  return s;
}

// --- validation and report ------------------------------------------------------------------------------
struct ValImage {
  LoadedSample sample;
  double input_psnr = 0;
};

LoadedSample centre_crop(const LoadedSample& s, int64_t size) {
  if (size <= 0) return s;
  const int64_t h = s.input.size(1), w = s.input.size(2), ch = std::min(h, size), cw = std::min(w, size);
  const int64_t y = (h - ch) / 2, x = (w - cw) / 2;
  auto c = [&](const Tensor& t) { return t.defined() ? slice(slice(t, 1, y, y + ch), 2, x, x + cw) : t; };
  return LoadedSample{c(s.input), c(s.target), c(s.depth), c(s.defocus)};
}

std::vector<ValImage> load_val(const TrainContext& ctx) {
  std::vector<ValImage> v;
  for (size_t i = 0; i < ctx.val.samples.size() && (int64_t)i < ctx.opt.val_images; ++i) {
    ValImage im;
    im.sample = centre_crop(load_sample(ctx.val, i), ctx.opt.val_crop);
    im.input_psnr = psnr(im.sample.input, im.sample.target);
    v.push_back(im);
  }
  return v;
}

// Mean PSNR of the model's outputs on the validation images (the model goes back to training mode after).
double validate(TrainContext& ctx, const std::vector<ValImage>& val, Tensor* first_output) {
  double total = 0;
  for (size_t i = 0; i < val.size(); ++i) {
    Tensor out = run_deblur(*ctx.model, val[i].sample, ctx.device, InferenceOptions{0});
    total += psnr(out, val[i].sample.target);
    if (i == 0 && first_output) *first_output = out;
  }
  ctx.model->train();
  return val.empty() ? 0 : total / (double)val.size();
}

// report.html with the validation image's input, output and target (and, at the end, the recipe's extra pictures).
void write_samples(const Recipe& r, TrainContext& ctx, const std::vector<ValImage>& val, const Tensor& output,
                   bool final) {
  std::vector<std::pair<std::string, std::string>> images;
  if (!val.empty() && output.defined()) {
    make_dirs(ctx.run->file("samples"));
    std::vector<std::pair<std::string, Tensor>> pics = {{"input (defocused)", val[0].sample.input},
                                                         {"output", output},
                                                         {"target (sharp)", val[0].sample.target}};
    if (r.samples && final)
      for (auto& p : r.samples(ctx, val[0].sample)) pics.push_back(p);
    for (size_t i = 0; i < pics.size(); ++i) {
      std::string rel = cat("samples/", i, ".png");
      write_png(ctx.run->file(rel), clamp(pics[i].second.cpu(), 0.f, 1.f));
      images.push_back({pics[i].first, rel});
    }
  }
  ctx.run->write_report(cat(r.program, ": ", ctx.model->description()), images);
}

std::string first_nonfinite_grad(const NamedTensors& params) {
  NoGrad ng;
  for (auto& [n, p] : params)
    if (p.grad().defined() && !std::isfinite(sum(abs(p.grad())).item())) return n;
  return "?";
}

}  // namespace

int train_main(const Recipe& r, int argc, char** argv) {
  return run_main(r.program.c_str(), [&]() -> int {
    std::set<std::string> switches = {"--resume"};
    for (auto& f : r.flags)
      if (f.default_value.is_boolean()) switches.insert(f.flag);
    Args a(argc, argv, usage(r), switches);
    a.positional(1, "give exactly one dataset folder");
    const bool resume = a.flag("--resume");
    RunDir run(a.str("--out", "runs/" + r.model), resume);
    // A refusal while the run is set up leaves no half-made run behind (the same --out works once fixed). Disarmed
    // when the steps begin: from there a failure keeps the run for --resume.
    struct DiscardIfRefused {
      const RunDir& run;
      bool armed = true;
      const int unwinding = std::uncaught_exceptions();
      ~DiscardIfRefused() {
        if (armed && std::uncaught_exceptions() > unwinding) run.discard_if_unstarted();
      }
    } discard_if_refused{run};
    Device dev = select_device(a.str("--device", "auto"));
    nlohmann::json given = flags_given(r, a);
    std::string recipe = a.str("--recipe", "cpu");
    std::string config_file = a.str("--config", "");
    const int64_t stop_after = a.integer("--stop-after", -1, -1, INT64_MAX);
    a.check_all_used();

    TrainContext ctx;
    ctx.device = dev;
    ctx.run = &run;
    nlohmann::json saved = resume ? run.load_config() : nlohmann::json();
    nlohmann::json model_cfg;
    if (resume) {
      RF_CHECK(saved.contains("train") && saved.contains("model"), run.file("config.json"),
               ": not a config written by a refocus trainer (no 'train' or 'model' section)");
      // Runs saved before --sharp-fraction existed showed every crop blurred, whatever a recipe's default is now.
      if (saved["train"].is_object() && !saved["train"].contains("sharp_fraction")) saved["train"]["sharp_fraction"] = 0.0;
      if (a.has("--recipe")) check_same({{"recipe", recipe}}, saved["train"], run.path());
      check_same(given, saved["train"], run.path());
      ctx.opt = defaults(r, saved["train"].value("recipe", std::string("cpu")));
      nlohmann::json saved_train = saved["train"];
      if (saved_train.contains("net") && saved_train["net"].is_object())
        for (auto& f : r.flags)
          if (!f.absent_means.is_null() && !saved_train["net"].contains(f.key)) saved_train["net"][f.key] = f.absent_means;
      apply(ctx.opt, saved_train, run.file("config.json"));
      model_cfg = saved["model"];
    } else {
      ctx.opt = defaults(r, recipe);
      nlohmann::json file_cfg;
      if (!config_file.empty()) {
        file_cfg = parse_json(read_file(config_file), config_file);
        RF_CHECK(file_cfg.is_object(), config_file, ": expected a JSON object with \"model\" and/or \"train\"");
      }
      const bool file_train = file_cfg.is_object() && file_cfg.contains("train");
      if (r.adjust_defaults) {  // sees the network flags first; the explicit options below still win
        TrainOptions flags_only = ctx.opt;
        if (file_train) apply(flags_only, file_cfg["train"], config_file);
        apply(flags_only, given, "the command line");
        ctx.opt.net = flags_only.net;
        r.adjust_defaults(ctx.opt);
      }
      if (file_train) apply(ctx.opt, file_cfg["train"], config_file);
      apply(ctx.opt, given, "the command line");
      if (file_cfg.contains("model")) model_cfg = file_cfg["model"];
    }
    ctx.opt.data = a.positional()[0];
    ctx.opt.out = run.path();

    // Data: the train split, and held-out pairs for validation.
    ctx.train = open_dataset(ctx.opt.data, "train", ctx.opt.layout);
    RF_CHECK(ctx.train.has_target(), ctx.opt.data, ": the ", ctx.train.layout, " layout has no sharp targets to train on");
    if (ctx.opt.limit > 0 && (size_t)ctx.opt.limit < ctx.train.samples.size()) ctx.train.samples.resize((size_t)ctx.opt.limit);
    if (ctx.opt.val_images > 0) {
      try {
        Dataset v = open_dataset(ctx.opt.data, "val", ctx.opt.layout);
        if (v.has_target() && v.samples[0].input != ctx.train.samples[0].input) ctx.val = v;
      } catch (const Error&) {  // no val split: hold pairs out of the training set below
      }
      if (ctx.val.samples.empty()) {
        size_t n = ctx.train.samples.size(), k = std::min<size_t>((size_t)ctx.opt.val_images, n / 5);
        ctx.val = ctx.train;
        ctx.val.samples.assign(ctx.train.samples.end() - (long)k, ctx.train.samples.end());
        ctx.train.samples.resize(n - k);
      }
    }
    RF_CHECK(!ctx.train.samples.empty(), ctx.opt.data, ": no training pairs");

    // The model.
    std::string model_name = resume ? saved.value("model_name", r.model) : (r.model_name ? r.model_name(ctx) : r.model);
    if (!resume) {
      nlohmann::json base = r.model_config ? r.model_config(ctx) : nlohmann::json::object();
      if (model_cfg.is_object()) base.update(model_cfg);
      model_cfg = base;
    }
    manual_seed(ctx.opt.seed);
    std::unique_ptr<Model> model;
    try {
      model = r.make ? r.make(model_name, model_cfg) : make_model(model_name, model_cfg);
    } catch (const Error& e) {  // a config error names the file it came from
      const std::string from = resume ? run.file("config.json") : config_file;
      if (from.empty()) throw;
      throw Error(cat(from, ": ", e.what()));
    }
    model->to(dev);
    model->train();
    ctx.model = model.get();
    std::fprintf(stderr, "%s: %s, %zu training pairs and %zu validation pairs (%s layout), %lld parameters\n",
                 r.program.c_str(), model->description().c_str(), ctx.train.samples.size(), ctx.val.samples.size(),
                 ctx.train.layout.c_str(), (long long)model->num_parameters());
    nlohmann::json config = {{"program", r.program},
                             {"model_name", model_name},
                             {"model", model->config()},
                             {"train", ctx.opt.to_json()},
                             {"parameters", model->num_parameters()},
                             {"images", ctx.train.samples.size()},
                             {"val_images", ctx.val.samples.size()},
                             {"layout", ctx.train.layout}};
    if (!resume) run.save_config(config);
    else config = saved;

    std::vector<Stage> stages = r.stages(ctx);
    int64_t total_steps = 0;
    std::vector<int64_t> stage_offset;
    for (auto& s : stages) {
      stage_offset.push_back(total_steps);
      total_steps += s.iters;
    }
    LoadedState loaded;
    if (resume && file_exists(run.file(kStateFile))) {
      loaded = load_state(ctx, stages);
      int64_t g = loaded.pos.stage < stages.size() ? stage_offset[loaded.pos.stage] + loaded.pos.step : total_steps;
      run.rewind(g);
      std::fprintf(stderr, "%s: resuming at stage %s, step %lld\n", r.program.c_str(),
                   loaded.pos.stage < stages.size() ? stages[loaded.pos.stage].name.c_str() : "done",
                   (long long)loaded.pos.step);
    } else if (resume) {
      run.rewind(0);  // killed before the first checkpoint: start over
    }

    std::vector<ValImage> val = load_val(ctx);
    discard_if_refused.armed = false;
    Tensor last_output;
    const double t_start = now_seconds();
    // config.json also records the wall time (summed over resumed parts) and the machine.
    auto record_time = [&] {
      config["wall_seconds"] = config.value("wall_seconds", 0.0) + (now_seconds() - t_start);
      config["machine"] = machine_description(dev);
      config["device"] = device_name(dev);
      run.save_config(config);
    };
    auto stopped = [&](int64_t at) {
      record_time();
      std::fprintf(stderr, "\n%s: stopped after step %lld as asked (--stop-after); continue with --resume\n",
                   r.program.c_str(), (long long)at);
      return 0;
    };
    for (size_t si = loaded.pos.stage; si < stages.size(); ++si) {
      Stage& st = stages[si];
      int64_t first = si == loaded.pos.stage ? loaded.pos.step : 0;
      if (first >= st.iters) continue;
      if (st.begin) st.begin(first);
      NamedTensors params = st.params ? st.params() : NamedTensors();
      std::unique_ptr<Optimizer> opt;
      std::vector<Tensor> plist;
      if (!params.empty()) {
        opt = st.make_optimizer ? st.make_optimizer(params) : std::make_unique<Adam>(params, AdamOptions{st.schedule.at(0)});
        if (si == loaded.pos.stage && first > 0 && !loaded.optim.empty())
          opt->load_state(loaded.optim, loaded.optim_meta, run.file(kStateFile));
        for (auto& [n, p] : params) plist.push_back(p);
      }
      Progress progress(cat(r.program, " ", st.name), st.iters);
      for (int64_t step = first; step < st.iters; ++step) {
        const int64_t gstep = stage_offset[si] + step;
        if (opt) {
          opt->set_lr(st.schedule.at(step));
          opt->zero_grad();
        }
        StepResult res = st.step(step);
        nlohmann::json fields;
        for (auto& [k, v] : res.parts) fields[k] = v;
        if (res.total.defined()) {
          RF_CHECK(opt, "internal: stage ", st.name, " returned a loss but trains no parameters");
          float loss = res.total.item();
          RF_CHECK(std::isfinite(loss), "stage ", st.name, ", step ", step, ": the loss is ", loss,
                   "; stopped before it reached the weights (the last checkpoint is kept). Lower --lr and --resume");
          res.total.backward();
          float gn = st.clip_grad_norm > 0 ? clip_grad_norm(plist, st.clip_grad_norm) : grad_norm(plist);
          RF_CHECK(std::isfinite(gn), "stage ", st.name, ", step ", step, ": the gradient of '",
                   first_nonfinite_grad(params), "' is not finite; stopped before it reached the weights (the last ",
                   "checkpoint is kept). Lower --lr and --resume");
          opt->step();
          fields["loss"] = loss;
          fields["grad_norm"] = gn;
          fields["lr"] = opt->lr();
        }
        res.total = Tensor();
        const bool last = step + 1 == st.iters;
        if (step % ctx.opt.log_every == 0 || last) {
          fields["gstep"] = gstep;
          run.log(st.name, step, fields);
          std::string shown = fields.contains("loss") ? cat("loss ", fields["loss"].get<float>()) : "";
          for (auto& [k, v] : res.parts) shown += cat(shown.empty() ? "" : ", ", k, " ", v);
          progress.update(step + 1, shown);
        }
        if (st.validate && !val.empty() && ((ctx.opt.val_every > 0 && (step + 1) % ctx.opt.val_every == 0) || last)) {
          double v = validate(ctx, val, &last_output);
          double base = 0;
          for (auto& im : val) base += im.input_psnr / (double)val.size();
          run.log(st.name, step, {{"gstep", gstep}, {"val_psnr", v}, {"val_input_psnr", base}});
          std::fprintf(stderr, "%s%s step %lld: validation PSNR %.2f dB (input %.2f dB)\n", "", st.name.c_str(),
                       (long long)step + 1, v, base);
        }
        if (((step + 1) % ctx.opt.checkpoint_every == 0 || gstep + 1 == stop_after) && !last) {
          save_state(ctx, stages, {si, step + 1}, gstep + 1, opt.get());
          write_samples(r, ctx, val, last_output, false);
        }
        if (gstep + 1 == stop_after && !last) return stopped(stop_after);
      }
      progress.finish();
      if (st.end) st.end();
      save_state(ctx, stages, {si + 1, 0}, stage_offset[si] + st.iters, nullptr);
      write_samples(r, ctx, val, last_output, false);
      if (stage_offset[si] + st.iters == stop_after && si + 1 < stages.size()) return stopped(stop_after);
    }

    std::string weights = run.file(model->name() + ".safetensors");
    save_model(weights, *model, total_steps);
    if (!val.empty()) {
      double v = validate(ctx, val, &last_output);
      std::fprintf(stderr, "%s: final validation PSNR %.2f dB\n", r.program.c_str(), v);
    }
    write_samples(r, ctx, val, last_output, true);
    record_time();
    std::fprintf(stderr, "%s: wrote %s (report: %s)\n", r.program.c_str(), weights.c_str(), run.file("report.html").c_str());
    return 0;
  });
}

}  // namespace rf
