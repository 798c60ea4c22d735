// make_synth: write a synthetic defocus dataset (see data/synth.h).
#include <stb/stb_image_write.h>

#include <atomic>
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

static void write_jpg(const std::string& path, const Tensor& img) {
  int h = (int)img.size(1), w = (int)img.size(2);
  std::vector<float> v = img.to_vector();
  std::vector<unsigned char> px((size_t)w * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        px[((size_t)y * w + x) * 3 + c] =
            (unsigned char)std::lround(std::fmin(std::fmax(v[((size_t)c * h + y) * w + x], 0.f), 1.f) * 255.f);
  write_atomic_with(path, [&](const std::string& tmp) {
    RF_CHECK(stbi_write_jpg(tmp.c_str(), w, h, 3, px.data(), 95), path, ": cannot write JPEG");
  });
}

int main(int argc, char** argv) {
  return run_main("make_synth", [&] {
    Args args(argc, argv, kUsage, {"--misalign"});
    std::string out = args.required("--out");
    int64_t n = args.integer("--n", 0);
    RF_CHECK(n > 0, "--n must be a positive number of pairs");
    SynthOptions opt;
    std::string size = args.str("--size", "512x512");
    RF_CHECK(std::sscanf(size.c_str(), "%ldx%ld", &opt.height, &opt.width) == 2, "--size expects HxW, got '", size, "'");
    opt.seed = (uint64_t)args.integer("--seed", 0);
    opt.misalign = args.flag("--misalign");
    opt.planes = (int)args.integer("--planes", opt.planes);
    opt.noise = (float)args.number("--noise", 1.0);
    std::string coc = args.str("--max-coc", "");
    if (!coc.empty())
      RF_CHECK(std::sscanf(coc.c_str(), "%f,%f", &opt.max_coc_lo, &opt.max_coc_hi) == 2 && opt.max_coc_lo <= opt.max_coc_hi,
               "--max-coc expects LO,HI in pixels at 1680 px width, got '", coc, "'");
    std::string split = args.str("--split", "train"), layout = args.str("--layout", "dpdd");
    int bits = (int)args.integer("--bits", 8);
    RF_CHECK(bits == 8 || bits == 16, "--bits must be 8 or 16");
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
          write_jpg(out + "/image/" + scene + "/image_0.jpg", s.source);
          write_jpg(out + "/sharp/" + scene + "/0_0.jpg", s.target);
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
