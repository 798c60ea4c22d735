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
#include <vector>

#include "layers/blocks.h"
#include "layers/layers.h"
#include "models/model.h"
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

// --- the networks ----------------------------------------------------------------------------------------
struct GsConfig {
  int64_t cell = 2;             // one blob per cell x cell pixels (the initializer supports 2)
  bool use_depth = true;        // false: the paper's "w/o depth" variant
  int64_t init_width = 32;      // initializer U-Net width (32 / 64 / 128 channels)
  int64_t dim = 64, heads = 4, blocks = 3, ffn_mult = 4;  // blob deblurrer
  int64_t window = 0;           // attention: 0 = every blob attends to every blob while N <= max_full_tokens
  int64_t max_full_tokens = 131072, window_beyond = 4096;  // ... and windows of window_beyond tokens beyond
  int fit_iters = 600;          // test-time fitting (Sec. 3.4 (ii))
  // [ours] Output = input + render(Phi_a) - render(Phi): the deblurrer's change added to the input, so the
  // fit's own error cancels (the paper outputs render(Phi_a), which carries it). false: the paper's output.
  bool residual = true;
  // [ours] The deblurrer also changes each blob's colour (Eq. 5-8 change only theta, s and o). Measured with an
  // oracle that optimises every blob's change against the sharp target (scripts/experiment_gs_oracle.py, 8
  // synthetic 128^2 crops): Eq. 5-8 alone can gain at most +1.13 dB over the input on fits of a blurry image,
  // with a colour change +4.43 dB: a blurred image's fit keeps the blur in its colours, not in its sizes. Off
  // by default: trained for 600 steps on the demo's data it stayed at the identity, like the paper's head.
  bool color_change = false;
  int64_t head_outputs() const { return color_change ? 7 : 4; }  // dtheta, ds1, ds2, do (+ dc RGB)
  // [ours] How Eq. 7's non-negative shrink is made of the head's output: "relu" (the paper's ReLU(ds)) or "softplus".
  // Trained, every ReLU(ds) ends at zero (mean scale change -1e-7 after 3000 steps) and then has no gradient left;
  // softplus is never flat.
  std::string shrink = "relu";
  // [ours] A shrunk blob keeps its light: its colour is scaled by s1 s2 / (s1' s2'), so that shrinking sharpens the
  // render instead of darkening it (the render is a sum of blobs, each weighing exp(-q/2), whose integral is
  // proportional to s1 s2).
  bool keep_light = false;
  // [ours] A photo darker than this mean level is brightened by one gain to it (clipped at 1) before the fit, and the
  // deblurrer's change darkened back and added to the photo (gs is then exposure-equivariant below it). The synthetic
  // sets' images have means 0.33...0.63; on darker input the deblurrer is outside what it learnt and dimmed the photo
  // (a test image at 1/20 of its exposure came out 34% darker; the linear Pixel 4 photos, means 0.02...0.09, lost
  // 1.2 dB). 0: off. Inference only: no weight depends on it, so configs written before it read the default.
  float exposure_floor = 0.3f;
  // [ours] Each token also carries the local contrast of the fitted render around its blob (centre minus
  // Gaussian blurs at context_scales px, RGB): a blob alone does not know whether it sits on an edge, and
  // undoing blur is a difference between neighbours. false: the paper's tokens (blob parameters + depth).
  bool context = false;
  // The blur scales of the local contrast. Octaves 1, 2, 4 px until session 15; half_octave_scales(n) gives
  // finer bands (an isotropic blur's inverse is an isotropic filter: finer bands approximate it better).
  std::vector<float> context_scales = {1.f, 2.f, 4.f};
  static std::vector<float> half_octave_scales(int64_t n);  // 2^(k/2 - 1/2) px, k = 0..n-1
  // What the local contrast is taken of: "render" (the fitted blobs' render, until session 16), "image" (the
  // input photo) or "both" (the photo's bands, then the render's). The fit is band-limited by its 2x2-px blobs,
  // so a sharp image and a slightly blurred one render alike: only the input shows the fine detail that tells
  // them apart.
  std::string context_source = "render";
  int64_t context_sources() const { return context_source == "both" ? 2 : 1; }
  int64_t context_features() const {  // sources x scales x RGB
    return context ? 3 * (int64_t)context_scales.size() * context_sources() : 0;
  }
  // [ours] Each token also carries the photo's pixels around its blob: a context_patch x context_patch patch centred
  // on the blob (minus the value at the centre, RGB; 0 = none). The bands are isotropic; a patch also says which
  // way an edge runs, and a linear map of it can express any small deconvolution filter. Measured (same fits, 3000
  // steps): +0.85 dB over the input with a 4x4 patch against +0.58 without; judged (8000 steps) +1.05 against +0.84.
  // train_gs's default is 4; configs without the key (before session 17) read 0.
  int64_t context_patch = 0;
  int64_t patch_features() const { return 3 * context_patch * context_patch; }
  // [ours] Each token also carries log(1 + CoC px) at its centre from gs's own defocus estimator
  // (GsDefocusEstimator, trained on the synthetic sets' defocus maps): where the image is in focus and how
  // blurred it is, for any photo, with or without a depth map. false: no estimator.
  bool defocus = false;
  int64_t defocus_width = 16;   // estimator width
  // [ours] Each token also carries a learned description of the photo around its blob: GsPhotoEncoder's features
  // (this many channels; 0 = none), bilinearly sampled at the blob centre and trained with the deblurrer. The
  // patch and bands are fixed linear views of the photo; undoing a blur several pixels wide is a nonlinear,
  // wider one. The tokens stay the paper's blobs, their change stays Eq. 5-8's (+ the colour change).
  int64_t photo_encoder = 0;
  // Per-blob features after the blob's own: local contrast (with context), the patch, defocus (1, with defocus),
  // then the photo encoder's.
  int64_t extra_features() const { return fixed_features() + photo_encoder; }
  // Those computed once per image (GsModel::blob_features); the encoder's are computed with grad in training.
  int64_t fixed_features() const { return context_features() + patch_features() + (defocus ? 1 : 0); }
  int64_t token_features() const { return 31 + extra_features(); }
  nlohmann::json to_json() const;
  static GsConfig from_json(const nlohmann::json& j);
  int64_t window_for(int64_t n) const { return window > 0 ? window : (n <= max_full_tokens ? 0 : window_beyond); }
};

// U-Net [ours, after Splatter Image / LGM]: image (+ normalised depth) -> one blob per 2x2 cell.
// It is also a model of its own in the registry ("gs_initializer"), so that `forward` reaches it: inputs x
// [1, 3, H, W] (+ depth [1, 1, H, W], normalised as normalise_depth does), outputs out0..out4 = means,
// theta, log_scales, colors, opacity_logit.
class GsInitializer : public Model {
 public:
  explicit GsInitializer(const GsConfig& c);
  // image [3, H, W] (+ depth_norm [1, H, W] when the config uses depth) -> the blobs, differentiable
  // in the network's weights (for its self-supervised training).
  FitParams forward(const Tensor& image, const Tensor& depth_norm);

  std::string name() const override { return "gs_initializer"; }
  nlohmann::json config() const override { return cfg_.to_json(); }
  Tensor deblur(const Tensor&, const Tensor&, const Tensor&) override;
  std::vector<std::string> forward_inputs() const override;
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;

 private:
  GsConfig cfg_;
  std::shared_ptr<Sequential> enc1_, down1_, down2_, up_, merge_;
  std::shared_ptr<Conv2d> head_;
};

// A part of gs that maps a batch of images to per-pixel maps (the defocus estimator, the photo encoder). Each is also
// a model of its own in the registry, so that `forward` reaches it (input x, output out0); none deblurs by itself.
class GsImageMap : public Model {
 public:
  explicit GsImageMap(const GsConfig& c) : cfg_(c) {}
  virtual Tensor forward(const Tensor& images) = 0;  // [B, 3, H, W] -> [B, C, H, W]
  nlohmann::json config() const override { return cfg_.to_json(); }
  Tensor deblur(const Tensor&, const Tensor&, const Tensor&) override;  // refused: use --model gs
  std::vector<std::string> forward_inputs() const override { return {"x"}; }
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;

 protected:
  GsConfig cfg_;
};

// [ours] gs's defocus estimator: image [B, 3, H, W] -> CoC radius in px [B, 1, H, W] (softplus, >= 0). Three
// stride-2 levels (a receptive field of ~70 px: blur is judged against the structure around it), one skip at
// H/4, the map predicted at H/4 and resized bilinearly. Trained by train_gs's "defocus" stage on the defocus
// maps of the synthetic sets (make_synth writes them). Registry: "gs_defocus".
class GsDefocusEstimator : public GsImageMap {
 public:
  explicit GsDefocusEstimator(const GsConfig& c);
  Tensor forward(const Tensor& images) override;
  std::string name() const override { return "gs_defocus"; }

 private:
  std::shared_ptr<Sequential> enc_, down1_, down2_, down3_, up_, merge_;
  std::shared_ptr<Conv2d> head_;
};

// [ours] gs's photo encoder: image [B, 3, H, W] -> features [B, cfg.photo_encoder, H, W], three 3x3 convolutions
// (dilations 1, 2, 4: each feature sees kReach px of the photo on every side; ReLU between, none after), zero
// padding. Its features at each blob centre join the blob's token (GsConfig::photo_encoder). gs pads the photo
// first (replicated edges; GsModel::pad_for_encoder), by enough that no sampled feature sees the zero padding:
// a training crop's features then see the photo around it as a whole image's do. Registry: "gs_photo_encoder".
class GsPhotoEncoder : public GsImageMap {
 public:
  static constexpr int64_t kReach = 7;
  static constexpr int64_t kPad = kReach + 1;  // the photo's padding: the reach and a bilinear tap beyond a centre
  explicit GsPhotoEncoder(const GsConfig& c);
  Tensor forward(const Tensor& images) override;
  std::string name() const override { return "gs_photo_encoder"; }

 private:
  std::shared_ptr<Conv2d> conv0_, conv1_, conv2_;
};

// The blob deblurrer of Sec. 3.2: a Transformer over all blobs (3 blocks of self-attention + FFN). A token
// is a blob's parameters with a Fourier encoding of its position, its depth and the image-level d1, K.
// With cfg.context the token also carries the local contrast, with cfg.context_patch the photo's patch, with
// cfg.defocus the estimated defocus, with cfg.photo_encoder the encoder's features.
// Outputs (dtheta, ds1, ds2, do) applied by Eq. 5-8 (+ a colour change dc with cfg.color_change; the shrink made
// non-negative by cfg.shrink, the light kept with cfg.keep_light); the output layer starts at zero, so the
// deblurrer starts at the identity, except for a bias giving a 1e-3 px shrink (so that ReLU(ds) has a gradient
// from the start).
// It is also a model of its own in the registry ("gs_deblurrer"), so that `forward` reaches it (the PyTorch twin):
// inputs means, theta, scales, colors, opacity (one row per blob), image_size [2] = (H, W), + d2, d1, log_k with
// depth, + extra [N, cfg.extra_features()] when the config has any; outputs out0..out4 = the adjusted blobs.
class BlobDeblurrer : public Model {
 public:
  explicit BlobDeblurrer(const GsConfig& c);
  std::string name() const override { return "gs_deblurrer"; }
  nlohmann::json config() const override { return cfg_.to_json(); }
  Tensor deblur(const Tensor&, const Tensor&, const Tensor&) override;
  std::vector<std::string> forward_inputs() const override;
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;
  // d2 [N] (or undefined), d1 and log_k [1] (or undefined): depth inputs. extra [N, cfg.extra_features()]: the
  // per-blob features, GsModel::blob_features (computed on the whole image the blobs came from: training crops
  // pass them, so that a crop's edge does not change them) then GsModel::with_encoder_features'; they may be left
  // undefined only when the only ones are the render's local contrast, which is then computed from b. Returns the
  // adjusted blobs.
  Blobs forward(const Blobs& b, const Tensor& d2, const Tensor& d1, const Tensor& log_k, int64_t height, int64_t width,
                const Tensor& extra = Tensor());

 private:
  GsConfig cfg_;
  std::shared_ptr<Linear> embed_, head_;
  std::shared_ptr<LayerNorm> ln_out_;
  std::vector<std::shared_ptr<TransformerBlock>> blocks_;  // blocks.<i>.{ln1, qkv, proj, ln2, fc1, fc2}
};

// [ours] The local contrast of an image at each blob centre: image - gaussian_blur(image, sigma) for each sigma
// (GsConfig::context_scales), bilinearly sampled at the centre, x4 -> [N, 3 x sigmas] (sigma-major, RGB within).
// image [3, H, W]. A constant (no gradient): the fitted blobs are the deblurrer's input, not its output.
Tensor local_contrast(const Tensor& image, const Tensor& means, const std::vector<float>& sigmas);
// The photo around each blob centre: a p x p grid of bilinear samples at offsets -(p-1)/2 ... (p-1)/2 px from the
// centre, minus the sample at the centre, x4 -> [N, p x p x 3] (row-major over the grid, RGB within). A constant.
Tensor image_patches(const Tensor& image, const Tensor& means, int64_t p);
// image_patches' columns (starting at column `first`) as a crop seen through crop_square's rotation k and flips
// sees them: the grid turns with the crop (crop_blobs carries the rows unchanged, as for isotropic features).
Tensor orient_patches(const Tensor& extra, int64_t first, int64_t p, int k, bool flip_x, bool flip_y);
// local_contrast of the blobs' render.
Tensor blob_context(const Blobs& b, int64_t height, int64_t width, const std::vector<float>& sigmas);

// The whole network: initializer.*, deblurrer.* (+ estimator.*, encoder.*) parameters in one checkpoint.
class GsModel : public Model {
 public:
  explicit GsModel(const GsConfig& c);
  GsConfig cfg;
  std::shared_ptr<GsInitializer> initializer;
  std::shared_ptr<BlobDeblurrer> deblurrer;
  std::shared_ptr<GsDefocusEstimator> estimator;  // with cfg.defocus
  std::shared_ptr<GsPhotoEncoder> encoder;        // with cfg.photo_encoder > 0

  // The deblurrer's per-blob features computed once per image ([N, cfg.fixed_features()], undefined when none):
  // the local contrast (of b's render or of the image, cfg.context_source), the photo's patch and log(1 + the
  // estimated CoC) at each centre. image [3, H, W].
  Tensor blob_features(const Blobs& b, const Tensor& image);
  // `fixed` (blob_features, may be undefined) followed, with the photo encoder, by the encoder's features at each
  // blob centre ([N, cfg.photo_encoder], differentiable in the encoder's weights): all of the deblurrer's extra
  // features. photo [3, H + 2 pad, W + 2 pad]: the image padded by `pad` px on every side (pad_for_encoder, or a
  // training crop taken of such an image); means in the image's (the crop's) pixels.
  Tensor with_encoder_features(const Tensor& fixed, const Tensor& photo, const Tensor& means, int64_t pad);
  // [3, H, W] -> [3, H + 2 pad, W + 2 pad], replicated edges.
  static Tensor pad_for_encoder(const Tensor& image, int64_t pad = GsPhotoEncoder::kPad);

  std::string name() const override { return "gs"; }
  nlohmann::json config() const override { return cfg.to_json(); }
  ModelInputs inputs() const override { return {cfg.use_depth, false}; }
  std::string description() const override;
  // `forward`: x [B, 3, H, W] (+ depth [B, 1, H, W] when it uses depth) -> out0 = the deblurred images.
  std::vector<std::string> forward_inputs() const override;
  NamedTensors forward_named(const std::map<std::string, Tensor>& inputs) override;
  // Sec. 3.4 for each image of the batch (initializer, fit, deblurrer, render); the fit runs with grad on.
  Tensor deblur(const Tensor& input, const Tensor& depth, const Tensor& defocus) override;
  Tensor predict_defocus(const Tensor& input) override;  // the estimator's map (with cfg.defocus)
  nlohmann::json stats() const override;

 private:
  int64_t images_ = 0;
  double sum_ds1_ = 0, sum_ds2_ = 0, sum_fit_psnr_ = 0, sum_fit_seconds_ = 0;
  int64_t brightened_ = 0;  // images below cfg.exposure_floor
};

// `convert` for gs (there is no official code): a state dict under refocus's own names, e.g. from the
// PyTorch twin in tests/golden, with the config read off the tensor shapes.
nlohmann::json gs_config_from_state_dict(std::map<std::string, Tensor>& tensors);

struct GsResult {
  Tensor sharp;             // [3, H, W]
  FitParams fitted;         // before the deblurrer (of the photo brightened by exposure_gain)
  Blobs deblurred;          // after
  double fit_psnr = 0, fit_seconds = 0;
  float exposure_gain = 1;  // GsConfig::exposure_floor's gain (1: the photo was bright enough)
};

// Sec. 3.4 (i)-(iv): initializer -> fit -> deblurrer -> render (with cfg.residual, added to the input as
// a change). depth may be undefined (w/o depth).
GsResult gs_deblur(GsModel& m, const Tensor& image, const Tensor& depth, int fit_iters, bool verbose = false);
// GsConfig::exposure_floor: floor / mean(image) when the image's mean level is below floor (and above 0), else 1.
float exposure_gain(const Tensor& image, float floor);

// Mean relative change of s1 and s2 from fitted to deblurred blobs (the paper reports -21% / -19% on DPDD).
void scale_change(const Blobs& before, const Blobs& after, double* ds1, double* ds2);

// The blobs of a square crop (centres within `margin` px of it), seen through the same rotation and flips
// as data/loader.h's crop_square, so that they render the transformed crop. d2 [N] and extra [N, F] (per
// blob, may be undefined; rotation-invariant features) are carried along.
Blobs crop_blobs(const Blobs& b, const Tensor& d2, int64_t top, int64_t left, int64_t size, int k, bool flip_x,
                 bool flip_y, float margin, Tensor* d2_out, const Tensor& extra = Tensor(),
                 Tensor* extra_out = nullptr);

// Blobs on disk: safetensors with means, theta, scales, colors, opacity (+ d1, K) and the image size.
void save_blobs(const std::string& path, const FitParams& p, int64_t height, int64_t width);
FitParams load_blobs(const std::string& path, int64_t* height, int64_t* width);

}  // namespace rf
