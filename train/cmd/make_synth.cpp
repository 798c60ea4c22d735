// make_synth: write a synthetic defocus dataset (see data/synth.h).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "data/image.h"
#include "data/synth.h"
#include "engine/fileio.h"
#include "ops/elementwise.h"
#include "train/cli.h"

using namespace rf;

static const char* kUsage =
    "usage: make_synth --out DIR --n N [--size HxW] [--seed S] [--split train|val|test]\n"
    "                  [--layout dpdd|sdd|ded] [--misalign] [--bits 8|16] [--planes K] [--max-coc LO,HI]\n"
    "                  [--noise SCALE]\n"
    "Writes N defocused/sharp pairs. dpdd layout: DIR/<split>_c/{source,target,depth,defocus}/ and\n"
    "DIR/<split>_c/meta.json (depth: 16-bit PNG, 1 unit = 1 mm; defocus: CoC radius, 16-bit, 1 unit = 1/256 px).\n"
    "Every image is a pure function of (seed, index); pairs are written in parallel.";

constexpr double kDepthUnitM = 0.001, kDefocusUnitPx = 1.0 / 256.0;

int main(int argc, char** argv) {
  return run_main("make_synth", [&] {
    Args args(argc, argv, kUsage, {"--misalign"});
    std::string out = args.required("--out");
    int64_t n = args.integer("--n", 0, 1, 10'000'000);
    SynthOptions opt;
    std::string size = args.str("--size", "512x512");
    char rest = 0;
    RF_CHECK(std::sscanf(size.c_str(), "%ldx%ld%c", &opt.height, &opt.width, &rest) == 2 && opt.height >= 16 &&
                 opt.width >= 16 && opt.height <= 16384 && opt.width <= 16384,
             "option --size expects HxW with both between 16 and 16384, got '", size, "'");
    opt.seed = (uint64_t)args.integer("--seed", 0, 0, INT64_MAX);
    opt.misalign = args.flag("--misalign");
    opt.planes = (int)args.integer("--planes", opt.planes, 1, 64);
    opt.noise = (float)args.number("--noise", 1.0, 0.0, 100.0);
    std::string coc = args.str("--max-coc", "");
    if (!coc.empty())
      RF_CHECK(std::sscanf(coc.c_str(), "%f,%f%c", &opt.max_coc_lo, &opt.max_coc_hi, &rest) == 2 &&
                   std::isfinite(opt.max_coc_lo) && std::isfinite(opt.max_coc_hi) && opt.max_coc_lo >= 0 &&
                   opt.max_coc_lo <= opt.max_coc_hi && opt.max_coc_hi <= 200,
               "--max-coc expects LO,HI in pixels at 1680 px width, got '", coc, "'");
    std::string split = args.str("--split", "train"), layout = args.str("--layout", "dpdd");
    int bits = (int)args.integer("--bits", 8, 8, 16);
    RF_CHECK(bits == 8 || bits == 16, "option --bits must be 8 or 16, got ", bits);
    // The split names a sub-folder of --out: a plain name, never a path that could leave it.
    RF_CHECK(!split.empty() && split.find_first_of("/\\") == std::string::npos && split != "." && split != "..",
             "option --split must be a plain folder name such as train, val or test, got '", split, "'");
    RF_CHECK(layout == "dpdd" || layout == "sdd" || layout == "ded", "--layout must be dpdd, sdd or ded, got '", layout, "'");
    args.check_all_used();

    // Folders of each layout.
    std::string root = out + "/" + split + "_c";
    std::string src_dir = root + "/source", tgt_dir = root + "/target";
    if (layout == "sdd") {
      root = out + "/" + (split == "train" ? "train_patches" : split);
      src_dir = root + "/blur";
      tgt_dir = root + "/gt";
    } else if (layout == "ded") {
      root = out;
    }
    if (layout == "dpdd")
      for (const char* d : {"/source", "/target", "/depth", "/defocus"}) make_dirs(root + d);
    if (layout == "sdd") {
      make_dirs(src_dir);
      make_dirs(tgt_dir);
    }

    std::vector<nlohmann::json> metas(n);
    std::atomic<int64_t> done{0};
    Progress progress("make_synth", n);
    std::string error;
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
      try {
        SynthSample s = make_synth_sample(opt, i);
        char name[64];
        std::snprintf(name, sizeof name, "synth_%05lld", (long long)i);
        if (layout == "dpdd" || layout == "sdd") {
          write_png(src_dir + "/" + name + ".png", s.source, bits);
          write_png(tgt_dir + "/" + name + ".png", s.target, bits);
        }
        if (layout == "dpdd") {
          write_png(root + "/depth/" + name + ".png", s.depth * (float)(1.0 / (kDepthUnitM * 65535.0)), 16);
          write_png(root + "/defocus/" + name + ".png", s.defocus * (float)(1.0 / (kDefocusUnitPx * 65535.0)), 16);
        }
        if (layout == "ded") {  // one scene per image: image/<scene>/image_0.jpg, sharp/<scene>/0_0.jpg
          std::string scene = cat("scene_", split, "_", i);
          for (const char* d : {"/image/", "/sharp/", "/filtered/"}) make_dirs(out + d + scene);
          write_jpeg(out + "/image/" + scene + "/image_0.jpg", s.source);
          write_jpeg(out + "/sharp/" + scene + "/0_0.jpg", s.target);
          write_png(out + "/filtered/" + scene + "/defocus_filterd_0.png",
                    s.defocus * (float)(1.0 / (kDefocusUnitPx * 65535.0)), 16);
        }
        s.meta["name"] = name;
        metas[i] = s.meta;
      } catch (const std::exception& e) {
#pragma omp critical
        error = e.what();
      }
      int64_t d = ++done;
#pragma omp critical
      progress.update(d);
    }
    RF_CHECK(error.empty(), error);
    progress.finish();
    nlohmann::json meta = {{"generator", "refocus make_synth"},
                           {"version", 1},
                           {"seed", opt.seed},
                           {"size", {opt.height, opt.width}},
                           {"split", split},
                           {"layout", layout},
                           {"bits", bits},
                           {"planes", opt.planes},
                           {"max_coc_px_at_1680", {opt.max_coc_lo, opt.max_coc_hi}},
                           {"misalign", opt.misalign},
                           {"depth_unit_m", kDepthUnitM},
                           {"defocus_unit_px", kDefocusUnitPx},
                           {"images", metas}};
    make_dirs(root);
    write_file_atomic(root + "/meta.json", meta.dump(1));
    std::fprintf(stderr, "make_synth: wrote %lld pairs to %s\n", (long long)n, root.c_str());
    return 0;
  });
}
