#include "train/evaluate.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "engine/fileio.h"
#include "models/registry.h"
#include "ops/optical_flow.h"
#include "engine/progress.h"
#include "ops/ops.h"
#include "train/cli.h"
#include "models/lpips.h"
#include "data/metrics.h"

namespace fs = std::filesystem;

namespace rf {

namespace {

Tensor crop_to(const Tensor& img, int64_t h, int64_t w) {
  if (img.size(1) == h && img.size(2) == w) return img;
  return slice(slice(img, 1, 0, h), 2, 0, w);
}

std::string find_prediction(const std::string& dir, const Sample& s) {
  std::vector<std::string> tried;
  for (const std::string& stem : {s.name, fs::path(s.input).stem().string()})
    for (const char* ext : {".png", ".jpg", ".jpeg"}) {
      std::string p = (fs::path(dir) / (stem + ext)).string();
      if (fs::exists(p)) return p;
      tried.push_back(fs::path(p).filename().string());
    }
  throw Error(cat(dir, ": no prediction for ", s.name, " (looked for ", tried[0], ", ", tried[1], ", ...)"));
}

// Best gain and integer shift of pred onto ref (least squares), scored inside a 4-pixel border.
void align_to(const Tensor& pred, const Tensor& ref, Tensor& pred_out, Tensor& ref_out, EvalRow& row) {
  const int64_t c = ref.size(0), h = ref.size(1), w = ref.size(2), b = 4;
  RF_CHECK(h > 2 * b + 8 && w > 2 * b + 8, "--align needs images larger than ", 2 * b + 8, " px");
  auto p = pred.to_vector(), r = ref.to_vector();
  double best = 1e300;
  for (int dy = -b; dy <= b; ++dy)
    for (int dx = -b; dx <= b; ++dx) {
      double pp = 0, pr = 0, rr = 0;
      for (int64_t k = 0; k < c; ++k)
        for (int64_t y = b; y < h - b; ++y)
          for (int64_t x = b; x < w - b; ++x) {
            double pv = p[(k * h + y + dy) * w + x + dx], rv = r[(k * h + y) * w + x];
            pp += pv * pv;
            pr += pv * rv;
            rr += rv * rv;
          }
      double g = pp > 0 ? pr / pp : 1, err = rr - 2 * g * pr + g * g * pp;
      if (err < best) {
        best = err;
        row.gain = g;
        row.shift_y = dy;
        row.shift_x = dx;
      }
    }
  Tensor shifted = slice(slice(pred, 1, b + row.shift_y, h - b + row.shift_y), 2, b + row.shift_x, w - b + row.shift_x);
  pred_out = shifted * (float)row.gain;
  ref_out = slice(slice(ref, 1, b, h - b), 2, b, w - b);
}

std::string fmt(double v, int prec) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

}  // namespace

EvalResult evaluate(const EvalOptions& o) {
  NoGrad ng;
  Dataset ds = open_dataset(o.data, o.split, o.layout);
  RF_CHECK(ds.has_target(), o.data, ": the ", ds.layout, " layout has no ground truth to score against");
  RF_CHECK(o.mode == "identity" || o.mode == "pred" || o.mode == "model", "evaluate: unknown mode '", o.mode, "'");
  RF_CHECK(!o.linear_input || o.mode == "model", "evaluate: --linear changes what a model is given; it goes with --model only");
  RF_CHECK(o.self_ensemble == 1 || o.mode == "model", "evaluate: --self-ensemble runs a model; it goes with --model only");
  ensemble_turns(o.self_ensemble);  // checks the count before any image is read
  RF_CHECK(o.bits == 0 || o.bits == 8 || o.bits == 16, "--bits must be 0, 8 or 16");
  if (o.mode == "pred")
    RF_CHECK(is_folder(o.pred_dir), "--pred ", o.pred_dir, ": no such folder (it should hold one prediction per test image)");
  Device dev = Device::CPU;
  std::unique_ptr<Model> model;
  if (o.mode == "model") {
    dev = select_device(o.device, !o.quiet);
    model = load_model(o.weights, o.model, dev);
    if (!o.quiet) std::fprintf(stderr, "evaluate: %s\n", model->description().c_str());
  }
  double model_seconds = 0;
  std::unique_ptr<Lpips> lp;
  if (!o.lpips.empty()) lp = load_lpips(o.lpips, o.mode == "model" ? dev : Device::CPU);
  EvalResult res;
  size_t n = ds.samples.size();
  if (o.limit > 0 && (size_t)o.limit < n) n = (size_t)o.limit;
  Progress progress("evaluate", (int64_t)n);
  for (size_t i = 0; i < n; ++i) {
    const Sample& s = ds.samples[i];
    LoadedSample ls = load_sample(ds, i);
    Tensor pred;
    if (o.mode == "identity") {
      pred = ls.input;
    } else if (o.mode == "pred") {
      std::string file = find_prediction(o.pred_dir, s);
      pred = read_image(file, 3);
      RF_CHECK(pred.shape() == ls.target.shape(), file, " is ", pred.size(2), "x", pred.size(1), " but the ground truth ",
               s.target, " is ", ls.target.size(2), "x", ls.target.size(1));
    } else {
      double t0 = now_seconds();
      pred = run_deblur(*model, ls, dev, InferenceOptions{o.tile, o.linear_input, o.self_ensemble});
      model_seconds += now_seconds() - t0;
    }
    Tensor ref = ls.target;
    check_min_image_size(ref, s.target, "evaluate");
    int64_t h = ref.size(1), w = ref.size(2);
    if (o.crop_multiple > 0) {
      h = h / o.crop_multiple * o.crop_multiple;
      w = w / o.crop_multiple * o.crop_multiple;
      RF_CHECK(h >= kMinImageSide && w >= kMinImageSide, "--crop-multiple ", o.crop_multiple, " leaves ", w, "x", h,
               " of ", s.target, " (", ref.size(2), "x", ref.size(1), "); use a smaller multiple");
    }
    pred = crop_to(pred, h, w);
    ref = crop_to(ref, h, w);
    if (o.bits) {
      pred = quantize(pred, o.bits);
      ref = quantize(ref, o.bits);
    }
    EvalRow row;
    row.name = s.name;
    row.height = h;
    row.width = w;
    double range = 1.0;
    if (o.warp_gt) {  // the ground truth moved onto the prediction (paper 004's protocol for misaligned sets)
      Tensor p4 = unsqueeze(pred, 0), r4 = unsqueeze(ref, 0);
      ref = warp_bicubic(r4, estimate_flow(p4, r4, pair_alignment_flow()))[0];
    }
    if (o.align) {
      align_to(pred, ref, pred, ref, row);
      range = max(ref.flatten(), 0).item();
    }
    row.psnr = psnr(pred, ref, range);
    row.ssim = ssim(pred, ref, range);
    row.ssim_gaussian = ssim_gaussian(pred, ref, range);
    row.mae = mae(pred, ref);
    if (lp) {
      Device ld = o.mode == "model" ? dev : Device::CPU;
      row.lpips = lp->forward(unsqueeze(pred, 0).to(ld), unsqueeze(ref, 0).to(ld)).item();
    }
    res.rows.push_back(row);
    if (!o.quiet) progress.update((int64_t)i + 1, cat(s.name, " ", fmt(row.psnr, 2), " dB"));
  }
  for (const EvalRow& r : res.rows) {
    res.mean.psnr += r.psnr / n;
    res.mean.ssim += r.ssim / n;
    res.mean.ssim_gaussian += r.ssim_gaussian / n;
    res.mean.mae += r.mae / n;
  }
  res.mean.lpips = -1;
  if (lp) {
    res.mean.lpips = 0;
    for (const EvalRow& r : res.rows) res.mean.lpips += r.lpips / n;
  }
  res.mean.name = "mean";

  // Files: per-image CSV, summary JSON, markdown table.
  make_dirs(o.out);
  std::ostringstream csv;
  csv << "name,height,width,psnr,ssim,ssim_gaussian,mae,lpips,gain,shift_y,shift_x\n";
  for (const EvalRow& r : res.rows)
    csv << r.name << "," << r.height << "," << r.width << "," << fmt(r.psnr, 4) << "," << fmt(r.ssim, 5) << ","
        << fmt(r.ssim_gaussian, 5) << "," << fmt(r.mae, 6) << "," << (r.lpips < 0 ? "" : fmt(r.lpips, 5)) << ","
        << fmt(r.gain, 4) << "," << r.shift_y << "," << r.shift_x << "\n";
  write_file_atomic(o.out + "/per_image.csv", csv.str());
  std::string what = o.mode == "identity" ? "identity (blurry input)"
                     : o.mode == "pred"   ? "predictions in " + o.pred_dir
                                          : o.model + " (" + o.weights + ")" + (o.linear_input ? ", linear input sRGB-encoded" : "") +
                                                (o.self_ensemble > 1 ? cat(", self-ensemble of ", o.self_ensemble) : "");
  std::string bits = o.bits ? std::to_string(o.bits) + "-bit" : "unquantised float";
  std::string crop = o.crop_multiple > 0 ? "cropped to a multiple of " + std::to_string(o.crop_multiple) : "full image";
  std::string align = o.align ? ", per-image gain and shift (+-4 px) fitted, 4 px border dropped, peak = max(GT)" : "";
  if (o.warp_gt) align += ", ground truth warped onto each prediction by optical flow (paper 004's protocol)";
  nlohmann::json summary = {{"data", o.data},
                            {"layout", ds.layout},
                            {"split", o.split},
                            {"mode", o.mode},
                            {"what", what},
                            {"images", n},
                            {"bits", o.bits},
                            {"crop", crop},
                            {"align", o.align},
                            {"warp_gt", o.warp_gt},
                            {"linear_input", o.linear_input},
                            {"self_ensemble", o.self_ensemble},
                            {"psnr", res.mean.psnr},
                            {"ssim", res.mean.ssim},
                            {"ssim_gaussian", res.mean.ssim_gaussian},
                            {"mae", res.mean.mae},
                            {"lpips", lp ? nlohmann::json(res.mean.lpips) : nlohmann::json("unavailable (no weights given)")}};
  if (model) {
    summary["model_stats"] = model->stats();
    summary["seconds_per_image"] = model_seconds / (double)n;
    summary["parameters"] = model->num_parameters();
  }
  write_file_atomic(o.out + "/summary.json", summary.dump(2) + "\n");
  std::ostringstream md;
  md << "| data | scored | images | PSNR (dB) | SSIM | SSIM (Gaussian) | MAE | LPIPS |\n"
     << "|---|---|---|---|---|---|---|---|\n"
     << "| " << o.data << " (" << ds.layout << ", " << o.split << ") | " << what << " | " << n << " | "
     << fmt(res.mean.psnr, 2) << " | " << fmt(res.mean.ssim, 4) << " | " << fmt(res.mean.ssim_gaussian, 4) << " | "
     << fmt(res.mean.mae, 4) << " | " << (lp ? fmt(res.mean.lpips, 4) : "unavailable") << " |\n\n"
     << "Scored at " << bits << ", " << crop << align
     << ". SSIM: scikit-image's default (7x7 uniform window); SSIM (Gaussian): 11x11, sigma 1.5.\n";
  if (model && !model->stats().empty()) md << "\nModel figures: " << model->stats().dump() << "\n";
  res.table = md.str();
  write_file_atomic(o.out + "/results.md", res.table);
  return res;
}

}  // namespace rf
