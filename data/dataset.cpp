#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "engine/json.h"
#include "data/image.h"
#include "engine/error.h"
#include "engine/fileio.h"

namespace fs = std::filesystem;

namespace rf {

const std::vector<std::string>& dataset_layouts() {
  static const std::vector<std::string> names = {"dpdd", "synth", "lfdof", "realdof", "rtf", "ded", "sdd", "pairs", "cuhk"};
  return names;
}

namespace {

bool is_dir(const fs::path& p) { return fs::is_directory(p); }

bool is_image(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), ::tolower);
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".tif" || e == ".tiff";
}

// Image files directly in `dir`, sorted by name.
std::vector<fs::path> images_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && is_image(e.path())) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<fs::path> subdirs(const fs::path& dir) {
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Two folders whose images pair one to one by sorted order.
void pair_by_order(const fs::path& inputs, const fs::path& targets, std::vector<Sample>& out) {
  auto a = images_in(inputs), b = images_in(targets);
  RF_CHECK(!a.empty(), inputs.string(), ": no images");
  RF_CHECK(a.size() == b.size(), inputs.string(), " holds ", a.size(), " images but ", targets.string(), " holds ",
           b.size(), ": they pair by sorted order, so the counts must match");
  for (size_t i = 0; i < a.size(); ++i) out.push_back({a[i].stem().string(), a[i].string(), b[i].string(), "", ""});
}

// Two folders whose images pair by identical names.
void pair_by_name(const fs::path& inputs, const fs::path& targets, std::vector<Sample>& out) {
  auto a = images_in(inputs);
  RF_CHECK(!a.empty(), inputs.string(), ": no images");
  for (auto& p : a) {
    fs::path t = targets / p.filename();
    RF_CHECK(fs::exists(t), p.string(), " has no ground truth: ", t.string(), " does not exist");
    out.push_back({p.stem().string(), p.string(), t.string(), "", ""});
  }
}

// The folder of a split in layouts with "<split>_c" folders: the root itself may already be one.
fs::path dpdd_split_dir(const fs::path& root, const std::string& split) {
  if (is_dir(root / "source") && is_dir(root / "target")) return root;
  return root / (split + "_c");
}

std::string detect(const fs::path& root, const std::string& split) {
  // source/ + target/ directly inside: a DPDD split folder given directly ("test_c"), a synthetic one
  // (it has depth/), or RealDOF.
  if (is_dir(root / "source") && is_dir(root / "target")) {
    if (is_dir(root / "depth")) return "synth";
    std::string name = fs::absolute(root).lexically_normal().filename().string();
    if (name.empty()) name = fs::absolute(root).lexically_normal().parent_path().filename().string();
    return name.size() > 2 && name.compare(name.size() - 2, 2, "_c") == 0 ? "dpdd" : "realdof";
  }
  fs::path d = root / (split + "_c");
  if (is_dir(d / "source") && is_dir(d / "target")) return is_dir(d / "depth") ? "synth" : "dpdd";
  for (const char* s : {"train_c", "val_c", "test_c"})
    if (is_dir(root / s / "source")) return is_dir(root / s / "depth") ? "synth" : "dpdd";
  if (is_dir(root / "train_data") || is_dir(root / "test_data")) return "lfdof";
  if (is_dir(root / "image") && is_dir(root / "sharp") && is_dir(root / "filtered")) return "ded";
  if (is_dir(root / "image" / "0") && is_dir(root / "GT")) return "rtf";
  if (is_dir(root / "train_patches") || (is_dir(root / "test" / "blur") && is_dir(root / "test" / "gt"))) return "sdd";
  if (is_dir(root / "blur") && is_dir(root / "sharp")) return "pairs";
  if (is_dir(root / "source") && is_dir(root / "target")) return "realdof";
  if (is_dir(root / "blur") || !images_in(root).empty()) return "cuhk";
  return "";
}

void check_sizes(const Sample& s) {
  ImageInfo a = image_info(s.input);
  for (const std::string* other : {&s.target, &s.depth, &s.defocus}) {
    if (other->empty()) continue;
    ImageInfo b = image_info(*other);
    RF_CHECK(a.width == b.width && a.height == b.height, "size mismatch: ", s.input, " is ", a.width, "x", a.height,
             " but ", *other, " is ", b.width, "x", b.height);
  }
}

}  // namespace

Dataset open_dataset(const std::string& dir, const std::string& split, const std::string& layout_in) {
  fs::path root(dir);
  RF_CHECK(is_dir(root), dir, ": not a folder");
  RF_CHECK(split == "train" || split == "val" || split == "test", "split must be train, val or test, got '", split, "'");
  std::string layout = layout_in == "auto" ? detect(root, split) : layout_in;
  RF_CHECK(!layout.empty(), dir,
           ": matches no dataset layout (DPDD's <split>_c/{source,target}, LFDOF's test_data/, RealDOF's "
           "source/+target/, RTF's image/0/+GT/, DED's image/+sharp/+filtered/, SDD's train_patches/, blur/+sharp/, "
           "or a folder of images); name one with --layout");
  RF_CHECK(std::find(dataset_layouts().begin(), dataset_layouts().end(), layout) != dataset_layouts().end(),
           "unknown layout '", layout, "'");
  Dataset ds;
  ds.layout = layout;
  ds.root = dir;
  ds.split = split;
  auto& out = ds.samples;
  auto need = [&](const fs::path& p) { RF_CHECK(is_dir(p), dir, ": the ", layout, " layout needs the folder ", p.string()); };

  if (layout == "dpdd" || layout == "synth") {
    fs::path d = dpdd_split_dir(root, split);
    need(d / "source");
    need(d / "target");
    pair_by_order(d / "source", d / "target", out);
    if (layout == "synth") {
      need(d / "depth");
      need(d / "defocus");
      for (auto& s : out) {
        std::string file = fs::path(s.input).filename().string();
        s.depth = (d / "depth" / file).string();
        s.defocus = (d / "defocus" / file).string();
        RF_CHECK(fs::exists(s.depth) && fs::exists(s.defocus), s.input, " has no depth or defocus map in ", d.string());
      }
      fs::path meta = d / "meta.json";
      RF_CHECK(fs::exists(meta), meta.string(), " is missing (it holds the depth and defocus units)");
      try {
        auto j = parse_json(read_file(meta.string()), meta.string());
        ds.depth_unit_m = j.at("depth_unit_m").get<double>();
        ds.defocus_unit_px = j.at("defocus_unit_px").get<double>();
      } catch (const nlohmann::json::exception& e) {
        throw Error(cat(meta.string(), ": not a make_synth meta.json (", e.what(), ")"));
      }
    }
  } else if (layout == "lfdof") {
    fs::path d = root / (split == "train" ? "train_data" : "test_data");
    need(d / "input");
    need(d / "ground_truth");
    for (auto& scene : subdirs(d / "input")) {
      fs::path gt;
      for (const char* ext : {".png", ".jpg"})
        if (fs::exists(d / "ground_truth" / (scene.filename().string() + ext))) gt = d / "ground_truth" / (scene.filename().string() + ext);
      RF_CHECK(!gt.empty(), scene.string(), " has no ground truth ", (d / "ground_truth" / scene.filename()).string(), ".png");
      for (auto& p : images_in(scene)) out.push_back({p.stem().string(), p.string(), gt.string(), "", ""});
    }
  } else if (layout == "realdof") {
    pair_by_order(root / "source", root / "target", out);
  } else if (layout == "rtf") {
    need(root / "image" / "0");
    std::regex num("image_(\\d+)");
    for (auto& p : images_in(root / "image" / "0")) {
      std::smatch m;
      std::string stem = p.stem().string();
      RF_CHECK(std::regex_search(stem, m, num), p.string(), ": RTF inputs are named image_NN");
      fs::path gt = root / "GT" / ("sharp_" + m[1].str() + p.extension().string());
      RF_CHECK(fs::exists(gt), p.string(), " has no ground truth: ", gt.string(), " does not exist");
      out.push_back({stem, p.string(), gt.string(), "", ""});
    }
  } else if (layout == "ded") {
    std::regex num("image_(\\d+)");
    for (auto& scene : subdirs(root / "image")) {
      std::string sc = scene.filename().string();
      for (auto& p : images_in(scene)) {
        std::smatch m;
        std::string stem = p.stem().string();
        RF_CHECK(std::regex_search(stem, m, num), p.string(), ": DED inputs are named image_<n>");
        std::string n = m[1].str();
        fs::path sharp;
        if (is_dir(root / "sharp" / sc))
          for (auto& q : images_in(root / "sharp" / sc)) {
            std::string qs = q.stem().string();
            if (qs.size() > n.size() && qs.compare(qs.size() - n.size() - 1, n.size() + 1, "_" + n) == 0) sharp = q;
          }
        RF_CHECK(!sharp.empty(), p.string(), " has no sharp image *_", n, " in ", (root / "sharp" / sc).string());
        fs::path map = root / "filtered" / sc / ("defocus_filterd_" + n + ".png");
        RF_CHECK(fs::exists(map), p.string(), " has no defocus map: ", map.string(), " does not exist");
        out.push_back({sc + "_" + stem, p.string(), sharp.string(), "", map.string()});
      }
    }
  } else if (layout == "sdd") {
    fs::path d = root / (split == "train" ? "train_patches" : "test");
    need(d / "blur");
    need(d / "gt");
    pair_by_name(d / "blur", d / "gt", out);
  } else if (layout == "pairs") {
    pair_by_name(root / "blur", root / "sharp", out);
  } else if (layout == "cuhk") {
    fs::path d = is_dir(root / "blur") ? root / "blur" : root;
    for (auto& p : images_in(d)) out.push_back({p.stem().string(), p.string(), "", "", ""});
  }
  RF_CHECK(!out.empty(), dir, ": the ", layout, " layout found no images for split '", split, "'");
  for (auto& s : out) check_sizes(s);
  return ds;
}

}  // namespace rf
