// The synthetic defocus generator (DESIGN §5): dead-leaves scenes on depth planes, a thin-lens camera,
// disk or Gaussian PSFs, occlusion-correct layered compositing in linear light, noise, and an optional
// misalignment of the target. Every sample is a pure function of (seed, index).
#pragma once
#include <nlohmann/json.hpp>

#include "engine/tensor.h"

namespace rf {

struct SynthOptions {
  int64_t height = 512, width = 512;
  uint64_t seed = 0;
  int planes = 16;              // depth planes (plane 0, the farthest, is a full-frame background)
  float max_coc_lo = 8.f;       // largest CoC radius of an image, drawn in [lo, hi] px at DPDD's width
  float max_coc_hi = 30.f;      //   (1680 px) and scaled by width / 1680
  float gaussian_psf_share = 0.4f;  // share of images blurred with a Gaussian PSF instead of a disk
  float focus_on_plane_share = 0.5f;  // share of images focused exactly on one plane (sharp regions)
  float noise = 1.f;            // scale of the sensor noise (0: none)
  float coverage = 2.f;         // leaves cover the frame about this many times over
  float min_leaf_radius = 0.f;  // px; 0: 0.8% of the shorter side (at least 2 px)
  bool misalign = false;        // shift and zoom the target slightly (for jdrl)
};

struct SynthSample {
  Tensor source;   // [3, H, W] defocused, sRGB in [0, 1]
  Tensor target;   // [3, H, W] all in focus
  Tensor depth;    // [1, H, W] depth in metres of the visible surface (aligned with source)
  Tensor defocus;  // [1, H, W] CoC radius in pixels of the visible surface
  nlohmann::json meta;  // camera and scene parameters
};

SynthSample make_synth_sample(const SynthOptions& opt, int64_t index);

// The PSF blurs, exposed for tests. Both take and return one [H, W] plane, edges replicated.
// Disk of radius r with a one-pixel anti-aliased rim (r < 0.5: identity).
void blur_disk(const float* in, float* out, int64_t h, int64_t w, float r);
void blur_gaussian(const float* in, float* out, int64_t h, int64_t w, float sigma);

}  // namespace rf
