#include "models/model.h"

#include <algorithm>

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

// The model on one [3, h, w] region (+ maps), padded at the bottom/right to its size multiple.
Tensor deblur_region(Model& m, const Tensor& img, const Tensor& depth, const Tensor& defocus) {
  const int64_t h = img.size(1), w = img.size(2), k = std::max<int64_t>(1, m.size_multiple());
  const int64_t ph = (k - h % k) % k, pw = (k - w % k) % k;
  auto prep = [&](const Tensor& t) {
    if (!t.defined()) return t;
    Tensor p = ph || pw ? pad2d(t, 0, pw, 0, ph, PadMode::Replicate) : t;
    return unsqueeze(p, 0);
  };
  Tensor out = m.deblur(prep(img), prep(depth), prep(defocus))[0];
  if (ph || pw) out = slice(slice(out, 1, 0, h), 2, 0, w);
  return out;
}

Tensor crop(const Tensor& t, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  return t.defined() ? slice(slice(t, 1, y0, y1), 2, x0, x1) : t;
}

}  // namespace

Tensor run_deblur(Model& m, const LoadedSample& s, Device d, const InferenceOptions& o) {
  NoGrad ng;
  m.eval();
  ModelInputs need = m.inputs();
  RF_CHECK(s.input.defined() && s.input.dim() == 3 && s.input.size(0) == 3, m.name(),
           ": expected an RGB image [3, H, W], got ", s.input.defined() ? describe(s.input) : "nothing");
  RF_CHECK(!need.depth || s.depth.defined(), m.description(), " needs a depth map, and none was given");
  RF_CHECK(!need.defocus || s.defocus.defined(), m.description(), " needs a defocus map, and none was given");
  Tensor img = s.input.to(d);
  Tensor depth = need.depth ? s.depth.to(d) : Tensor(), defocus = need.defocus ? s.defocus.to(d) : Tensor();
  const int64_t h = img.size(1), w = img.size(2), ctx = m.tile_context(), tile = o.tile;
  if (ctx <= 0 || tile <= 0 || (h <= tile && w <= tile)) return clamp(deblur_region(m, img, depth, defocus), 0.f, 1.f).cpu();

  // Tiles of tile x tile px, each run with ctx px of the image around it and cut back to its centre: the
  // outputs do not overlap, and with ctx at least the receptive field they equal the whole-image result.
  Tensor out = empty({3, h, w});
  for (int64_t y = 0; y < h; y += tile)
    for (int64_t x = 0; x < w; x += tile) {
      const int64_t y1 = std::min(h, y + tile), x1 = std::min(w, x + tile);
      const int64_t cy0 = std::max<int64_t>(0, y - ctx), cy1 = std::min(h, y1 + ctx);
      const int64_t cx0 = std::max<int64_t>(0, x - ctx), cx1 = std::min(w, x1 + ctx);
      Tensor r = deblur_region(m, crop(img, cy0, cy1, cx0, cx1), crop(depth, cy0, cy1, cx0, cx1),
                               crop(defocus, cy0, cy1, cx0, cx1));
      Tensor centre = clamp(crop(r, y - cy0, y1 - cy0, x - cx0, x1 - cx0), 0.f, 1.f).cpu();
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t yy = y; yy < y1; ++yy)
          std::copy_n(centre.data() + (c * (y1 - y) + (yy - y)) * (x1 - x), x1 - x, out.data() + (c * h + yy) * w + x);
    }
  return out;
}

}  // namespace rf
