// Scoring deblurred images against ground truth: the identity baseline (the blurry input itself),
// predictions made elsewhere (a folder of images), or a model of this build.
#pragma once
#include <string>
#include <vector>

namespace rf {

struct EvalOptions {
  std::string data, split = "test", layout = "auto";
  std::string mode = "identity";  // identity | pred | model
  std::string pred_dir, model, weights;
  std::string out = "eval_out";
  int bits = 8;                   // quantise prediction and target to this depth first (0: no quantisation)
  int64_t crop_multiple = 0;      // crop both to a multiple of N from the top-left (0: no crop)
  bool align = false;             // per-image gain fit + integer shift search within +-4 px, 4 px border dropped
  bool warp_gt = false;           // warp the ground truth onto the prediction by optical flow before scoring
  bool linear_input = false;      // models: the inputs are linear light (InferenceOptions::linear_input)
  int self_ensemble = 1;          // models: runs per image in turned copies, averaged (InferenceOptions::self_ensemble)
  std::string lpips;              // LPIPS weights (safetensors); empty: LPIPS reported as unavailable
  std::string device = "auto";
  int64_t limit = 0;              // score only the first N images (0: all)
  int64_t tile = 1024;            // models: tile images larger than this (where the network allows; 0: never)
  bool quiet = false;
};

struct EvalRow {
  std::string name;
  int64_t height = 0, width = 0;
  double psnr = 0, ssim = 0, ssim_gaussian = 0, mae = 0, lpips = -1;  // lpips < 0: unavailable
  double gain = 1;
  int shift_y = 0, shift_x = 0;
};

struct EvalResult {
  std::vector<EvalRow> rows;
  EvalRow mean;
  std::string table;  // the markdown written to results.md
};

// Writes OUT/per_image.csv, OUT/summary.json and OUT/results.md (atomically) and returns the figures.
EvalResult evaluate(const EvalOptions& o);

}  // namespace rf
