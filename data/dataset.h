// Dataset layouts (DESIGN §5): which files pair with which. Detected from the folder given, or named.
//
//   dpdd     {train,val,test}_c/{source,target}/*.png        pairs by sorted order (names differ)
//   synth    dpdd + depth/, defocus/ and meta.json           (written by make_synth)
//   lfdof    {train_data,test_data}/input/IMG_x/IMG_x_*.png + ground_truth/IMG_x.png (many inputs per GT)
//   realdof  source/NN.png + target/NN.png                   pairs by sorted order
//   rtf      image/0/image_NN.png + GT/sharp_NN.png
//   ded      image/<scene>/image_<n>.jpg + sharp/<scene>/<p>_<n>.jpg + filtered/<scene>/defocus_filterd_<n>.png
//   sdd      {train_patches,test}/{blur,gt}/NAME              same names
//   pairs    blur/NAME + sharp/NAME                           same names (e.g. the Pixel 4 dual-pixel set)
//   cuhk     blur/*.jpg (masks in mask/ are ignored), or a folder of images: inputs only, no ground truth
#pragma once
#include <string>
#include <vector>

namespace rf {

struct Sample {
  std::string name;     // output file stem, unique within the dataset
  std::string input;    // the defocused image
  std::string target;   // sharp ground truth ("" when the layout has none)
  std::string depth;    // depth map ("" when none)
  std::string defocus;  // defocus map ("" when none)
};

struct Dataset {
  std::string layout, root, split;
  std::vector<Sample> samples;
  double depth_unit_m = 0;       // synth: metres per 16-bit depth unit
  double defocus_unit_px = 0;    // synth: CoC pixels per 16-bit defocus unit
  bool has_target() const { return !samples.empty() && !samples[0].target.empty(); }
  bool has_depth() const { return !samples.empty() && !samples[0].depth.empty(); }
  bool has_defocus() const { return !samples.empty() && !samples[0].defocus.empty(); }
};

// split: train | val | test (layouts without splits ignore it). layout: "auto" or one of the names above.
// Checks that every pair's images have the same size (headers only); errors name the files.
Dataset open_dataset(const std::string& dir, const std::string& split = "test", const std::string& layout = "auto");

// The layout names open_dataset understands.
const std::vector<std::string>& dataset_layouts();

}  // namespace rf
