// Image files <-> tensors. Reading: PNG (8- and 16-bit), JPEG and the other formats stb_image knows,
// grayscale/RGBA converted to RGB, values scaled to [0, 1]. Writing: PNG, 8- or 16-bit, atomically.
#pragma once
#include <string>

#include "engine/tensor.h"

namespace rf {

struct ImageInfo {
  int64_t width = 0, height = 0, channels = 0;
  int bits = 8;
};

// Images larger than this are refused from their header, before decoding; REFOCUS_MAX_PIXELS overrides.
constexpr int64_t kDefaultMaxImagePixels = 100'000'000;
int64_t max_image_pixels();

// The smallest image the programs take (the SSIM windows and the networks' downsampling need some room).
constexpr int64_t kMinImageSide = 16;
// Throws "PATH is WxH; WHO needs images of at least 16x16 pixels" for img [C, H, W] smaller than that.
void check_min_image_size(const Tensor& img, const std::string& path, const std::string& who);

// Whether any value of a map is above zero (an all-zero depth map carries no depth).
bool has_positive(const Tensor& map);

// Header only (no decoding); throws naming the file when it is not a readable image, is empty (0 pixels)
// or declares more pixels than max_image_pixels().
ImageInfo image_info(const std::string& path);

// [channels, H, W] float in [0, 1] on the CPU. channels = 3: gray is replicated and alpha dropped;
// channels = 1: the first channel as stored (for depth and defocus maps; colour files are refused).
Tensor read_image(const std::string& path, int channels = 3);
// The same from a file's bytes already in memory (read_image reads the file once and calls this, so the
// header checked and the pixels decoded are the same bytes); `name` is what errors call it.
Tensor decode_image(const std::string& bytes, const std::string& name, int channels = 3);

// img [C, H, W] (C = 1 or 3) or [1, C, H, W]; values clamped to [0, 1], rounded to 8 or 16 bits.
void write_png(const std::string& path, const Tensor& img, int bits = 8);
// Same input; 8-bit JPEG (the synthetic datasets' blurred inputs, like DPDD's).
void write_jpeg(const std::string& path, const Tensor& img, int quality = 95);

// The sRGB transfer curve (IEC 61966-2-1), per value in [0, 1].
float srgb_to_linear(float c);
float linear_to_srgb(float l);  // clamps to [0, 1] first

}  // namespace rf
