// gs — "Performing Defocus Deblurring by Modeling its Formation Process" (paper 000), as Fig. 2 draws it:
//
//   defocused image (+ depth) --initializer--> blobs Phi --fit (Adam, Eq. 15)--> Phi --blob deblurrer--> Phi_a
//                                                                                        --rasterize--> sharp image
//
// A blob is (u, theta, s1, s2, c, o); the image is their plain sum (ops/gauss_raster.h). Fitting optimises
// unconstrained parameters: u, theta, log(s - 0.1), c and logit(o), so that s >= 0.1 px (the deblurrer's
// lower bound) and o in (0, 1) hold throughout, and the deblurrer starts exactly at the identity.
//
// Depth (Sec. 3.3) is normalised per image to d / max(d) in (0, 1]; blob scales enter L_reg as fractions
// of the image's longer side, so that K = 0.05 (the paper's initial value) means a blob reaching 5% of
// the image. Without depth the model is the paper's "w/o depth" variant.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "layers/layers.h"
#include "ops/gauss_raster.h"

namespace rf {

// --- the blob representation being fitted -------------------------------------------------------------
struct FitParams {
  Tensor means, theta, log_scales, colors, opacity_logit;  // per blob (leaves of the fit)
  Tensor d1, log_k;                                        // image-level L_reg parameters ([1] each)
  Blobs blobs() const;                                     // the constrained blob parameters
  NamedTensors named() const;
  int64_t size() const { return means.defined() ? means.size(0) : 0; }
};

// One blob per cell x cell pixels at the cell centre, coloured with the cell's mean so that the overlapping
// Gaussians add up to (a smoothed copy of) the image; isotropic, s = cell / 2, opacity 0.8.
FitParams analytic_init(const Tensor& image, int64_t cell);

// Per-blob depth d2 (normalised as above, sampled at the blob centres) and the initial d1 (mean depth).
Tensor depth_at_blobs(const Tensor& depth_norm, const Tensor& means);
Tensor normalise_depth(const Tensor& depth);  // [1, H, W] -> d / max(d)

// L_reg of Eq. 14, averaged over blobs. d2 [N], scales [N, 2] in pixels, longer image side in pixels.
Tensor depth_regulariser(const Tensor& d2, const Tensor& scales, const Tensor& d1, const Tensor& k, float image_side);

struct FitOptions {
  int iters = 600;
  float lr = 0.01f;             // Adam; per-parameter multipliers below
  float lr_means = 2.f, lr_theta = 2.f, lr_scales = 2.f, lr_colors = 1.f, lr_opacity = 2.f, lr_image_level = 1.f;
  float lambda_ssim = 0.3f;     // Eq. 15
  float lambda_reg = 0.2f;
  bool verbose = false;
};

struct FitResult {
  FitParams params;
  double psnr = 0;      // of the render against the fitted image
  double seconds = 0;
  float final_loss = 0;
};

// Eq. 15: MSE + lambda_r (1 - SSIM) + lambda_reg L_reg (the last only with depth). image [3, H, W].
FitResult fit_blobs(const Tensor& image, const Tensor& depth, FitParams init, const FitOptions& o);

// Blobs on disk: safetensors with means, theta, scales, colors, opacity (+ d1, K) and the image size.
void save_blobs(const std::string& path, const FitParams& p, int64_t height, int64_t width);
FitParams load_blobs(const std::string& path, int64_t* height, int64_t* width);

}  // namespace rf
