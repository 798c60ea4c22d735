// gs_fit: fit 2-D Gaussian blobs to one image (Sec. 3.1 and Eq. 15 of the GS paper) and render them back.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "data/image.h"
#include "engine/fileio.h"
#include "models/gs.h"
#include "ops/ops.h"
#include "train/cli.h"

using namespace rf;

static const char* kUsage =
    "usage: gs_fit IMAGE --out DIR [--depth FILE] [--iters 600] [--cell 2] [--crop N] [--lr 0.01]\n"
    "              [--device auto|cpu|cuda] [--quiet]\n"
    "Fits one blob per CELLxCELL pixels (Adam, MSE + 0.3 (1 - SSIM) [+ 0.2 L_reg with --depth]) and writes\n"
    "DIR/blobs.safetensors, DIR/render.png, DIR/input.png and DIR/fit.json (PSNR of the render, time).\n"
    "--crop N fits the central N x N pixels. --depth: a depth map (any scale; it is divided by its maximum).";

int main(int argc, char** argv) {
  return run_main("gs_fit", [&] {
    Args a(argc, argv, kUsage, {"--quiet"});
    a.positional(1, "give exactly one IMAGE");
    std::string path = a.positional()[0], out = a.required("--out");
    FitOptions o;
    o.iters = (int)a.integer("--iters", o.iters, 1, 10'000'000);
    o.lr = (float)a.number("--lr", o.lr, 1e-9, 10.0);
    o.verbose = !a.flag("--quiet");
    int64_t cell = a.integer("--cell", 2, 1, 4096), crop = a.integer("--crop", 0, 0, 1 << 20);
    RF_CHECK(crop == 0 || crop >= kMinImageSide, "option --crop must be 0 (the whole image) or at least ", kMinImageSide,
             ", got ", crop);
    std::string depth_path = a.str("--depth", "");
    Device dev = select_device(a.str("--device", "auto"), o.verbose);
    a.check_all_used();

    Tensor img = read_image(path, 3), depth;
    check_min_image_size(img, path, "gs_fit");
    if (!depth_path.empty()) {
      depth = read_image(depth_path, 1);
      RF_CHECK(depth.size(1) == img.size(1) && depth.size(2) == img.size(2), depth_path, " is ", depth.size(2), "x",
               depth.size(1), " but ", path, " is ", img.size(2), "x", img.size(1));
    }
    if (crop > 0) {
      RF_CHECK(img.size(1) >= crop && img.size(2) >= crop, path, " is smaller than --crop ", crop);
      int64_t y0 = (img.size(1) - crop) / 2, x0 = (img.size(2) - crop) / 2;
      auto cut = [&](const Tensor& t) { return slice(slice(t, 1, y0, y0 + crop), 2, x0, x0 + crop); };
      img = cut(img);
      if (depth.defined()) depth = cut(depth);
    }
    img = img.to(dev);
    if (depth.defined()) depth = depth.to(dev);
    FitParams init = analytic_init(img, cell);
    FitResult r = fit_blobs(img, depth, init, o);
    make_dirs(out);
    save_blobs(out + "/blobs.safetensors", r.params, img.size(1), img.size(2));
    {
      NoGrad ng;
      write_png(out + "/render.png", clamp(rasterize(r.params.blobs(), img.size(1), img.size(2)), 0.f, 1.f));
      write_png(out + "/input.png", img);
    }
    nlohmann::json j = {{"image", path},          {"height", img.size(1)},  {"width", img.size(2)},
                        {"blobs", r.params.size()}, {"cell", cell},         {"iterations", o.iters},
                        {"psnr_db", r.psnr},       {"seconds", r.seconds}, {"final_loss", r.final_loss},
                        {"device", device_name(dev)}, {"depth", !depth_path.empty()}};
    write_file_atomic(out + "/fit.json", j.dump(2) + "\n");
    std::printf("gs_fit: %lld blobs, %d iterations, PSNR %.2f dB, %.1f s on %s\n", (long long)r.params.size(), o.iters,
                r.psnr, r.seconds, device_name(dev));
    return 0;
  });
}
