#include "models/model.h"

#include <algorithm>

#include "data/image.h"
#include "ops/ops.h"

namespace rf {

LossTerms Model::loss(const Batch&, const std::string& stage) {
  throw Error(cat(name(), " has no training loss for stage '", stage, "' (its trainer drives it directly)"));
}

NamedTensors Model::forward_named(const std::map<std::string, Tensor>& in) {
  auto it = in.find("x");
  RF_CHECK(it != in.end(), name(), ": forward takes one input named 'x'");
  return {{"out0", deblur(it->second, Tensor(), Tensor())}};
}

namespace {

Tensor crop(const Tensor& t, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  return t.defined() ? slice(slice(t, 1, y0, y1), 2, x0, x1) : t;
}

Tensor pad_to(const Tensor& t, int64_t h, int64_t w) {
  if (!t.defined() || (t.size(1) == h && t.size(2) == w)) return t;
  return pad2d(t, 0, w - t.size(2), 0, h - t.size(1), PadMode::Replicate);
}

Tensor batch1(const Tensor& t) { return t.defined() ? unsqueeze(t, 0) : t; }

int64_t round_up(int64_t v, int64_t k) { return (v + k - 1) / k * k; }

}  // namespace

float linear_input_gain(const Tensor& image) {
  std::vector<float> v = image.to_vector();
  RF_CHECK(!v.empty(), "linear input: empty image");
  double sum = 0;
  float peak = 0;
  for (float x : v) {
    sum += x;
    peak = std::max(peak, x);
  }
  const double mean = sum / (double)v.size();
  if (peak <= 0) return 1.f;  // black: nothing to brighten
  return (float)std::min(0.2 / std::max(mean, 1e-6), 0.98 / (double)peak);
}

namespace {

// image [C, H, W] on the CPU -> f(image) elementwise.
Tensor map_values(const Tensor& image, float (*f)(float), float scale_before, float scale_after) {
  std::vector<float> v = image.cpu().to_vector();
  for (float& x : v) x = f(x * scale_before) * scale_after;
  return from_vector(v, image.shape());
}

}  // namespace

Tensor encode_linear_input(const Tensor& image, float gain) { return map_values(image, linear_to_srgb, gain, 1.f); }

Tensor decode_linear_output(const Tensor& out, float gain) {
  return clamp(map_values(out, srgb_to_linear, 1.f, 1.f / gain), 0.f, 1.f);
}

Tensor turn_image(const Tensor& img, int t) {
  RF_CHECK(t >= 0 && t < 8, "turn_image: t must be 0...7, got ", t);
  if (!img.defined() || t == 0) return img;
  RF_CHECK(img.dim() == 3, "turn_image: expected [C, H, W], got ", describe(img));
  Tensor src = img.cpu();
  const bool transpose = t & 4, flip_x = t & 1, flip_y = t & 2;
  const int64_t c = src.size(0), h = src.size(1), w = src.size(2), oh = transpose ? w : h, ow = transpose ? h : w;
  Tensor out = empty({c, oh, ow});
  const float* p = src.data();
  float* q = out.data();
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        const int64_t ty = flip_y ? oh - 1 - y : y, tx = flip_x ? ow - 1 - x : x;  // before the flips
        const int64_t sy = transpose ? tx : ty, sx = transpose ? ty : tx;           // before the transpose
        q[(ch * oh + y) * ow + x] = p[(ch * h + sy) * w + sx];
      }
  return out.to(img.device());
}

Tensor unturn_image(const Tensor& img, int t) {
  // The flips are their own inverses; with a transpose they must be undone before it: flips first, then the transpose.
  return turn_image(turn_image(img, t & 3), t & 4);
}

std::vector<int> ensemble_turns(int n) {
  switch (n) {
    case 1: return {0};
    case 2: return {0, 3};
    case 4: return {0, 3, 5, 6};
    case 8: return {0, 1, 2, 3, 4, 5, 6, 7};
    default: throw Error(cat("the self-ensemble must be 1, 2, 4 or 8 runs, got ", n));
  }
}

Tensor run_deblur(Model& m, const LoadedSample& s, Device d, const InferenceOptions& o) {
  if (o.self_ensemble != 1) {
    const std::vector<int> turns = ensemble_turns(o.self_ensemble);
    InferenceOptions single = o;
    single.self_ensemble = 1;
    Tensor sum;
    for (int t : turns) {
      LoadedSample turned = s;
      turned.target = Tensor();  // not read here
      for (Tensor* x : {&turned.input, &turned.depth, &turned.defocus}) *x = turn_image(*x, t);
      Tensor back = unturn_image(run_deblur(m, turned, d, single), t);
      sum = sum.defined() ? sum + back : back;
    }
    return sum * (1.f / (float)turns.size());
  }
  if (o.linear_input) {
    const float gain = linear_input_gain(s.input);
    LoadedSample encoded = s;
    encoded.input = encode_linear_input(s.input, gain);
    InferenceOptions plain = o;
    plain.linear_input = false;
    return decode_linear_output(run_deblur(m, encoded, d, plain), gain);
  }
  NoGrad ng;
  m.eval();
  ModelInputs need = m.inputs();
  RF_CHECK(s.input.defined() && s.input.dim() == 3 && s.input.size(0) == 3, m.name(),
           ": expected an RGB image [3, H, W], got ", s.input.defined() ? describe(s.input) : "nothing");
  RF_CHECK(!need.depth || s.depth.defined(), m.description(), " needs a depth map, and none was given");
  RF_CHECK(!need.defocus || s.defocus.defined(), m.description(), " needs a defocus map, and none was given");
  // The whole image is padded (replicating its last row and column) to the model's size multiple first, so
  // that tiles, which start and end on multiples too, see exactly what the whole image would.
  const int64_t h = s.input.size(1), w = s.input.size(2), k = std::max<int64_t>(1, m.size_multiple());
  const int64_t ph = round_up(h, k), pw = round_up(w, k);
  Tensor img = pad_to(s.input.to(d), ph, pw);
  Tensor depth = need.depth ? pad_to(s.depth.to(d), ph, pw) : Tensor();
  Tensor defocus = need.defocus ? pad_to(s.defocus.to(d), ph, pw) : Tensor();
  auto region = [&](int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
    return m.deblur(batch1(crop(img, y0, y1, x0, x1)), batch1(crop(depth, y0, y1, x0, x1)),
                    batch1(crop(defocus, y0, y1, x0, x1)))[0];
  };
  const int64_t ctx = m.tile_context() > 0 ? round_up(m.tile_context(), k) : 0;
  const int64_t tile = o.tile > 0 ? round_up(o.tile, k) : 0;
  if (ctx == 0 || tile == 0 || (ph <= tile && pw <= tile)) return clamp(crop(region(0, ph, 0, pw), 0, h, 0, w), 0.f, 1.f).cpu();

  // Tiles of tile x tile px, each run with ctx px of the image around it and cut back to its centre: the
  // outputs do not overlap, and with ctx at least the receptive field they equal the whole-image result.
  Tensor out = empty({3, h, w});
  for (int64_t y = 0; y < h; y += tile)
    for (int64_t x = 0; x < w; x += tile) {
      const int64_t y1 = std::min(h, y + tile), x1 = std::min(w, x + tile);
      const int64_t cy0 = std::max<int64_t>(0, y - ctx), cy1 = std::min(ph, round_up(y1, k) + ctx);
      const int64_t cx0 = std::max<int64_t>(0, x - ctx), cx1 = std::min(pw, round_up(x1, k) + ctx);
      Tensor centre = clamp(crop(region(cy0, cy1, cx0, cx1), y - cy0, y1 - cy0, x - cx0, x1 - cx0), 0.f, 1.f).cpu();
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t yy = y; yy < y1; ++yy)
          std::copy_n(centre.data() + (c * (y1 - y) + (yy - y)) * (x1 - x), x1 - x, out.data() + (c * h + yy) * w + x);
    }
  return out;
}

}  // namespace rf
