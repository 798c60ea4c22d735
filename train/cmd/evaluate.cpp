// evaluate: score a model, a folder of predictions, or the blurry input itself against ground truth.
#include <cstdio>

#include "engine/error.h"
#include "train/cli.h"
#include "train/evaluate.h"

using namespace rf;

static const char* kUsage =
    "usage: evaluate --data DIR (--identity | --pred DIR | --model NAME --weights FILE)\n"
    "                [--split test] [--layout auto] [--out DIR] [--bits 8|16|0] [--crop-multiple N]\n"
    "                [--align] [--warp-gt] [--lpips WEIGHTS.safetensors] [--device auto|cpu|cuda] [--limit N] [--tile 1024]\n"
    "                [--linear] [--self-ensemble 1|2|4|8]\n"
    "Writes OUT/per_image.csv, OUT/summary.json and OUT/results.md (default OUT: eval_out) and prints the table.\n"
    "--align fits a gain and a +-4 px shift per image (for the Pixel 4 set, whose input and GT differ so).\n"
    "--warp-gt warps the ground truth onto each prediction by optical flow first (paper 004's protocol for\n"
    "misaligned sets such as SDD; the plain protocol stays the default).\n"
    "--tile N: models that allow it run images larger than N px in tiles (bounded memory; 0: whole images).\n"
    "--linear (with --model): the inputs are linear light (the Pixel 4 set): the model sees them brightened and\n"
    "sRGB-encoded, as it was trained, and its results are decoded and darkened back before scoring.\n"
    "--self-ensemble N (with --model): each image is run in N of its eight flips and quarter turns, each result\n"
    "turned back and the N averaged (N times the time; the judged figures are plain runs).";

int main(int argc, char** argv) {
  return run_main("evaluate", [&] {
    Args a(argc, argv, kUsage, {"--identity", "--align", "--warp-gt", "--linear"});
    EvalOptions o;
    o.data = a.required("--data");
    o.split = a.str("--split", o.split);
    o.layout = a.str("--layout", o.layout);
    o.out = a.str("--out", o.out);
    o.bits = (int)a.integer("--bits", o.align ? 16 : 8, 0, 16);
    RF_CHECK(o.bits == 0 || o.bits == 8 || o.bits == 16, "option --bits must be 0, 8 or 16, got ", o.bits);
    o.crop_multiple = a.integer("--crop-multiple", 0, 0, 4096);
    o.align = a.flag("--align");
    o.warp_gt = a.flag("--warp-gt");
    if (o.align && !a.has("--bits")) o.bits = 16;
    o.lpips = a.str("--lpips", "");
    o.device = a.str("--device", "auto");
    o.limit = a.integer("--limit", 0, 0, INT64_MAX);
    o.tile = a.integer("--tile", o.tile, 0, 1 << 20);
    int modes = a.flag("--identity") + a.has("--pred") + a.has("--model");
    RF_CHECK(modes == 1, "give exactly one of --identity, --pred DIR or --model NAME\n", kUsage);
    if (a.flag("--identity")) o.mode = "identity";
    if (a.has("--pred")) {
      o.mode = "pred";
      o.pred_dir = a.required("--pred");
    }
    if (a.has("--model")) {
      o.mode = "model";
      o.model = a.required("--model");
      o.weights = a.required("--weights");
    }
    o.linear_input = a.flag("--linear");
    o.self_ensemble = (int)a.integer("--self-ensemble", 1, 1, 8);
    a.check_all_used();
    EvalResult r = evaluate(o);
    std::printf("%s", r.table.c_str());
    std::fprintf(stderr, "evaluate: wrote %s/{per_image.csv,summary.json,results.md}\n", o.out.c_str());
    return 0;
  });
}
