// deblur: run a trained model on one image or a folder of images.
#include <cstdio>
#include <filesystem>

#include "data/image.h"
#include "engine/fileio.h"
#include "models/registry.h"
#include "train/cli.h"

using namespace rf;
namespace fs = std::filesystem;

static const char* kUsage =
    "usage: deblur --model NAME --weights FILE [--depth FILE_OR_DIR] [--device auto|cpu|cuda] IN OUT\n"
    "IN and OUT are image files, or folders (every image of IN is deblurred into OUT with the same name,\n"
    "as PNG). --depth: a depth map (or a folder of maps with the images' names) for models that use one.";

int main(int argc, char** argv) {
  return run_main("deblur", [&] {
    Args a(argc, argv, kUsage);
    RF_CHECK(a.positional().size() == 2, "give IN and OUT\n", kUsage);
    std::string in = a.positional()[0], out = a.positional()[1], depth = a.str("--depth", "");
    std::string name = a.required("--model"), weights = a.required("--weights");
    Device dev = select_device(a.str("--device", "auto"));
    a.check_all_used();
    auto model = load_deblurrer(name, weights, dev);
    std::fprintf(stderr, "deblur: %s\n", model->describe().c_str());
    std::vector<std::pair<std::string, std::string>> jobs;  // input, output
    if (fs::is_directory(in)) {
      make_dirs(out);
      for (auto& e : fs::directory_iterator(in)) {
        std::string ext = e.path().extension().string();
        if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".PNG" || ext == ".JPG")
          jobs.push_back({e.path().string(), (fs::path(out) / (e.path().stem().string() + ".png")).string()});
      }
      std::sort(jobs.begin(), jobs.end());
      RF_CHECK(!jobs.empty(), in, ": no images");
    } else {
      jobs.push_back({in, out});
    }
    Progress progress("deblur", (int64_t)jobs.size());
    for (size_t i = 0; i < jobs.size(); ++i) {
      LoadedSample s;
      s.input = read_image(jobs[i].first, 3);
      if (!depth.empty()) {
        std::string dp = fs::is_directory(depth) ? (fs::path(depth) / fs::path(jobs[i].first).filename()).string() : depth;
        s.depth = read_image(dp, 1);
        RF_CHECK(s.depth.size(1) == s.input.size(1) && s.depth.size(2) == s.input.size(2), dp, " does not match the size of ",
                 jobs[i].first);
      }
      write_png(jobs[i].second, model->deblur(s));
      progress.update((int64_t)i + 1, jobs[i].second);
    }
    return 0;
  });
}
