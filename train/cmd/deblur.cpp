// deblur: run a trained model on one image or a folder of images.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "data/image.h"
#include "engine/allocator.h"
#include "engine/fileio.h"
#include "models/registry.h"
#include "ops/ops.h"
#include "train/cli.h"

using namespace rf;
namespace fs = std::filesystem;

static const char* kUsage =
    "usage: deblur --model NAME --weights FILE [--depth FILE_OR_DIR] [--defocus FILE_OR_DIR] [--bits 8|16]\n"
    "              [--tile 1024] [--save-map FILE_OR_DIR] [--linear] [--self-ensemble 1|2|4|8]\n"
    "              [--device auto|cpu|cuda] IN OUT\n"
    "IN and OUT are image files, or folders (every image of IN is deblurred into OUT as NAME.png).\n"
    "--depth / --defocus: a map (or a folder of maps named like the images) for models that read one.\n"
    "--bits 16 writes 16-bit PNG. --tile N: networks that allow it run images larger than N px in tiles\n"
    "of N px with enough context around each that the result equals the whole-image one (0: never tile).\n"
    "--save-map: networks that predict a defocus map (sft) write it too (a file, or NAME.png in a folder when IN\n"
    "is one): 16-bit PNG of the CoC radius, 1 unit = 1/256 px, as make_synth's defocus/ (brighter = blurrier).\n"
    "--linear: the images are linear light (raw-like captures such as the Pixel 4 set): each is brightened and\n"
    "sRGB-encoded for the network (trained on sRGB images), and its result decoded and darkened back.\n"
    "--self-ensemble N: each image is run in N of its eight flips and quarter turns, each result turned back and\n"
    "the N averaged (N times the time; --save-map writes the plain run's map).";

namespace {

bool is_image(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// The map for `image` from a file or a folder of maps with the image's name; checked against its size.
Tensor read_map(const std::string& where, const std::string& image, const Tensor& input) {
  if (where.empty()) return Tensor();
  std::string p = fs::is_directory(where) ? (fs::path(where) / fs::path(image).filename()).string() : where;
  Tensor m = read_image(p, 1);
  RF_CHECK(m.size(1) == input.size(1) && m.size(2) == input.size(2), p, " is ", m.size(2), "x", m.size(1), " but ",
           image, " is ", input.size(2), "x", input.size(1));
  return m;
}

// The network's own defocus map for one image, in make_synth's defocus/ units (1 unit = 1/256 px of CoC radius).
Tensor defocus_picture(Model& m, const Tensor& image, Device dev) {
  NoGrad ng;
  m.eval();
  Tensor coc_px = m.predict_defocus(unsqueeze(image.to(dev), 0));
  RF_CHECK(coc_px.defined(), "--save-map: ", m.description(), " predicts no defocus map");
  return clamp(coc_px[0] * (float)(256.0 / 65535.0), 0.f, 1.f).cpu();
}

std::string map_path(const std::string& save_map, bool folder, const std::string& output) {
  return folder ? (fs::path(save_map) / fs::path(output).filename()).string() : save_map;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main("deblur", [&] {
    Args a(argc, argv, kUsage, {"--linear"});
    a.positional(2, "give IN and OUT");
    std::string in = a.positional()[0], out = a.positional()[1];
    std::string depth = a.str("--depth", ""), defocus = a.str("--defocus", ""), save_map = a.str("--save-map", "");
    std::string name = a.required("--model"), weights = a.required("--weights");
    int bits = (int)a.integer("--bits", 8, 8, 16);
    RF_CHECK(bits == 8 || bits == 16, "option --bits must be 8 or 16, got ", bits);
    InferenceOptions io;
    io.tile = a.integer("--tile", io.tile, 0, 1 << 20);
    io.linear_input = a.flag("--linear");
    io.self_ensemble = (int)a.integer("--self-ensemble", 1, 1, 8);
    ensemble_turns(io.self_ensemble);  // a count other than 1, 2, 4 or 8 is refused before any work
    Device dev = select_device(a.str("--device", "auto"));
    a.check_all_used();
    auto model = load_model(weights, name, dev);
    std::fprintf(stderr, "deblur: %s\n", model->description().c_str());

    std::vector<std::pair<std::string, std::string>> jobs;  // input, output
    if (fs::is_directory(in)) {
      for (auto& e : fs::directory_iterator(in))
        if (e.is_regular_file() && is_image(e.path()))
          jobs.push_back({e.path().string(), (fs::path(out) / (e.path().stem().string() + ".png")).string()});
      std::sort(jobs.begin(), jobs.end());
      RF_CHECK(!jobs.empty(), in, ": no images (.png, .jpg)");
      std::set<std::string> outputs;
      for (auto& [i, o] : jobs)
        RF_CHECK(outputs.insert(o).second, in, ": two images would be written to the same ", o,
                 " (names that differ only in extension); rename one");
      RF_CHECK(fs::weakly_canonical(in) != fs::weakly_canonical(out), "OUT is the input folder: the inputs would be overwritten");
      if (!save_map.empty()) {
        RF_CHECK(fs::weakly_canonical(save_map) != fs::weakly_canonical(in), "--save-map is the input folder: the inputs would be overwritten");
        RF_CHECK(fs::weakly_canonical(save_map) != fs::weakly_canonical(out),
                 "--save-map is OUT: the maps would overwrite the deblurred images (give the maps their own folder)");
      }
      make_dirs(out);
      if (!save_map.empty()) make_dirs(save_map);
    } else {
      RF_CHECK(fs::exists(in), in, ": no such file");
      RF_CHECK(!fs::exists(out) || !fs::equivalent(in, out), "OUT is the input file: it would be overwritten");
      RF_CHECK(save_map.empty() || !fs::exists(save_map) || !fs::equivalent(in, save_map),
               "--save-map is the input file: it would be overwritten");
      RF_CHECK(save_map.empty() || fs::weakly_canonical(save_map) != fs::weakly_canonical(out),
               "--save-map is OUT: the map would overwrite the deblurred image (give it another name)");
      jobs.push_back({in, out});
    }
    Progress progress("deblur", (int64_t)jobs.size());
    double model_seconds = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      LoadedSample s;
      s.input = read_image(jobs[i].first, 3);
      check_min_image_size(s.input, jobs[i].first, "deblur");
      s.depth = read_map(depth, jobs[i].first, s.input);
      if (s.depth.defined())
        RF_CHECK(has_positive(s.depth), depth, ": the depth map for ", jobs[i].first, " is all zeros");
      s.defocus = read_map(defocus, jobs[i].first, s.input);
      // The map first: a network without one is refused before anything is written. It is made from the image as the
      // network sees it (with --linear, brightened and sRGB-encoded).
      Tensor map;
      if (!save_map.empty())
        map = defocus_picture(*model, io.linear_input ? encode_linear_input(s.input, linear_input_gain(s.input)) : s.input, dev);
      double t0 = now_seconds();
      Tensor sharp = run_deblur(*model, s, dev, io);
      model_seconds += now_seconds() - t0;
      write_png(jobs[i].second, sharp, bits);
      if (map.defined()) write_png(map_path(save_map, fs::is_directory(in), jobs[i].second), map, 16);
      progress.update((int64_t)i + 1, jobs[i].second);
    }
    progress.finish();
    std::string peak = dev == Device::CUDA ? format_bytes(cuda_alloc_stats().peak_allocated_bytes) + " GPU"
                                           : format_bytes(host_alloc_stats().peak_allocated_bytes) + " host";
    std::fprintf(stderr, "deblur: model time %.3f s per image; peak tensor memory %s\n",
                 model_seconds / (double)jobs.size(), peak.c_str());
    return 0;
  });
}
