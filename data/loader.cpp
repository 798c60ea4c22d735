#include "data/loader.h"

#include <algorithm>
#include <numeric>

#include "data/image.h"
#include "engine/rng.h"
#include "ops/elementwise.h"

namespace rf {

LoadedSample load_sample(const Dataset& ds, size_t i) {
  RF_CHECK(i < ds.samples.size(), "sample ", i, " is out of range (", ds.samples.size(), " samples)");
  const Sample& s = ds.samples[i];
  LoadedSample out;
  out.input = read_image(s.input, 3);
  if (!s.target.empty()) {
    out.target = read_image(s.target, 3);
    RF_CHECK(out.target.shape() == out.input.shape(), s.target, " is ", out.target.size(2), "x", out.target.size(1),
             " but its input ", s.input, " is ", out.input.size(2), "x", out.input.size(1));
  }
  if (!s.depth.empty()) {
    out.depth = read_image(s.depth, 1);
    RF_CHECK(has_positive(out.depth), s.depth, ": the depth map is all zeros (no depth to use)");
    if (ds.depth_unit_m > 0) out.depth = out.depth * (float)(65535.0 * ds.depth_unit_m);
  }
  if (!s.defocus.empty()) {
    out.defocus = read_image(s.defocus, 1);
    if (ds.defocus_unit_px > 0) out.defocus = out.defocus * (float)(65535.0 * ds.defocus_unit_px);
  }
  return out;
}

TrainLoader::TrainLoader(const Dataset& ds, LoaderOptions o) : ds_(ds), o_(o) {
  RF_CHECK(!ds_.samples.empty(), "TrainLoader: the dataset is empty");
  RF_CHECK(ds_.has_target(), ds_.root, ": training needs ground truth, and the ", ds_.layout, " layout has none");
  RF_CHECK(!o_.with_depth || ds_.has_depth(), ds_.root, ": this model needs depth maps, and the dataset has none");
  RF_CHECK(!o_.with_defocus || ds_.has_defocus(), ds_.root,
           ": this model needs defocus maps (DED layout or make_synth's defocus/), and the dataset has none");
  RF_CHECK(o_.batch >= 1, "TrainLoader: batch must be at least 1");
  RF_CHECK(o_.sharp_fraction >= 0 && o_.sharp_fraction <= 0.5, "TrainLoader: sharp_fraction must be between 0 and 0.5, got ",
           o_.sharp_fraction);
  RF_CHECK(!(o_.with_depth && o_.sharp_fraction > 0),
           "TrainLoader: sharp crops with depth maps would show a sharp input whose depth implies blur");
  for (int i = 0; i < std::max(1, o_.workers); ++i) threads_.emplace_back([this] { worker(); });
}

TrainLoader::~TrainLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void TrainLoader::seek(int64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  consume_ = produce_ = step;
  ready_.clear();
  cv_.notify_all();
}

Batch TrainLoader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  int64_t want = consume_;
  cv_.wait(lock, [&] { return ready_.count(want) || !error_.empty(); });
  if (!error_.empty()) throw Error(error_);
  Batch b = std::move(ready_[want]);
  ready_.erase(want);
  consume_++;
  cv_.notify_all();
  return b;
}

void TrainLoader::worker() {
  for (;;) {
    int64_t step;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || produce_ < consume_ + o_.prefetch; });
      if (stop_) return;
      step = produce_++;
    }
    Batch b;
    std::string error;
    try {
      b = make_batch(step);
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!error.empty() && error_.empty()) error_ = error;
    if (step >= consume_) ready_[step] = std::move(b);  // batches made before a seek() are dropped
    cv_.notify_all();
  }
}

const LoadedSample& TrainLoader::cached(size_t index, std::shared_ptr<LoadedSample>& hold) {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(index);
    if (it != cache_.end()) {
      it->second.second = ++clock_;
      hold = it->second.first;
      return *hold;
    }
  }
  hold = std::make_shared<LoadedSample>(load_sample(ds_, index));
  size_t bytes = 0;
  for (const Tensor* t : {&hold->input, &hold->target, &hold->depth, &hold->defocus})
    if (t->defined()) bytes += sizeof(float) * (size_t)t->numel();
  std::lock_guard<std::mutex> lock(cache_mu_);
  while (!cache_.empty() && cache_bytes_ + bytes > o_.cache_mb * (1u << 20)) {
    auto oldest = std::min_element(cache_.begin(), cache_.end(),
                                   [](auto& a, auto& b) { return a.second.second < b.second.second; });
    size_t ob = 0;
    for (const Tensor* t : {&oldest->second.first->input, &oldest->second.first->target, &oldest->second.first->depth,
                            &oldest->second.first->defocus})
      if (t->defined()) ob += sizeof(float) * (size_t)t->numel();
    cache_bytes_ -= ob;
    cache_.erase(oldest);
  }
  cache_[index] = {hold, ++clock_};
  cache_bytes_ += bytes;
  return *hold;
}

// Copy the crop [top, top+s) x [left, left+s) of src [C, H, W] into dst [C, s, s], flipped and rotated:
// output (y, x) reads crop pixel T(y, x) with T = rotate by k quarter turns, then flip.
static void crop_transform(const Tensor& src, float* dst, int64_t top, int64_t left, int64_t s, int k, bool flip_x,
                           bool flip_y) {
  const int64_t c = src.size(0), h = src.size(1), w = src.size(2);
  const float* p = src.data();
  for (int64_t y = 0; y < s; ++y)
    for (int64_t x = 0; x < s; ++x) {
      int64_t cy = y, cx = x;
      switch (k) {
        case 1: cy = x; cx = s - 1 - y; break;
        case 2: cy = s - 1 - y; cx = s - 1 - x; break;
        case 3: cy = s - 1 - x; cx = y; break;
        default: break;
      }
      if (flip_x) cx = s - 1 - cx;
      if (flip_y) cy = s - 1 - cy;
      for (int64_t ch = 0; ch < c; ++ch) dst[(ch * s + y) * s + x] = p[(ch * h + top + cy) * w + left + cx];
    }
}

Tensor crop_square(const Tensor& img, int64_t top, int64_t left, int64_t size, int k, bool flip_x, bool flip_y) {
  RF_CHECK(img.dim() == 3 && top >= 0 && left >= 0 && top + size <= img.size(1) && left + size <= img.size(2),
           "crop_square: the crop ", size, "x", size, " at (", top, ", ", left, ") leaves ", describe(img));
  Tensor src = img.cpu(), o = empty({img.size(0), size, size});
  crop_transform(src, o.data(), top, left, size, k, flip_x, flip_y);
  return o;
}

Batch TrainLoader::make_batch(int64_t step) {
  const int64_t n = (int64_t)ds_.samples.size(), B = o_.batch;
  Batch out;
  out.step = step;
  std::vector<int64_t> perm;
  int64_t perm_epoch = -1;
  std::vector<LoadedSample> crops;
  int64_t size_h = 0, size_w = 0;
  std::vector<Tensor> ins, tgts, deps, defs;
  for (int64_t b = 0; b < B; ++b) {
    int64_t pos = step * B + b, epoch = pos / n;
    if (epoch != perm_epoch) {  // a fresh shuffle of the dataset for every epoch
      perm.resize(n);
      std::iota(perm.begin(), perm.end(), 0);
      Generator g(o_.seed * 1000003ull + (uint64_t)epoch);
      for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[g.randint(i + 1)]);
      perm_epoch = epoch;
    }
    std::shared_ptr<LoadedSample> hold;
    const LoadedSample& s = cached((size_t)perm[pos % n], hold);
    Generator g(o_.seed * 0x9E3779B97F4A7C15ull + (uint64_t)pos * 0xBF58476D1CE4E5B9ull + 7);
    const int64_t h = s.input.size(1), w = s.input.size(2);
    int64_t crop = o_.crop;
    if (crop > 0) {
      RF_CHECK(h >= crop && w >= crop, ds_.samples[perm[pos % n]].input, " is ", w, "x", h, ", smaller than --crop ", crop);
    }
    int64_t top = crop > 0 ? g.randint(h - crop + 1) : 0, left = crop > 0 ? g.randint(w - crop + 1) : 0;
    int k = o_.augment && crop > 0 ? (int)g.randint(4) : 0;
    bool fx = o_.augment && g.uniform() < 0.5f, fy = o_.augment && g.uniform() < 0.5f;
    auto take = [&](const Tensor& t) { return crop <= 0 ? t.clone() : crop_square(t, top, left, crop, k, fx, fy); };
    // Its own generator, so that the crops above stay what they were without sharp pairs.
    const bool sharp = o_.sharp_fraction > 0 &&
                       Generator(o_.seed * 0xD1B54A32D192ED03ull + (uint64_t)pos * 0x94D049BB133111EBull + 11).uniform() <
                           o_.sharp_fraction;
    tgts.push_back(take(s.target));
    ins.push_back(sharp ? tgts.back() : take(s.input));  // stack() copies both
    if (o_.with_depth) deps.push_back(take(s.depth));
    if (o_.with_defocus) defs.push_back(sharp ? zeros({1, ins.back().size(1), ins.back().size(2)}) : take(s.defocus));
    if (b == 0) {
      size_h = ins.back().size(1);
      size_w = ins.back().size(2);
    } else {
      RF_CHECK(ins.back().size(1) == size_h && ins.back().size(2) == size_w,
               "images of different sizes cannot share a batch without --crop");
    }
  }
  auto stack = [&](const std::vector<Tensor>& ts) {
    if (ts.empty()) return Tensor();
    Shape s = ts[0].shape();
    s.insert(s.begin(), (int64_t)ts.size());
    Tensor o = empty(s);
    for (size_t i = 0; i < ts.size(); ++i)
      std::copy(ts[i].data(), ts[i].data() + ts[i].numel(), o.data() + i * ts[i].numel());
    return o;
  };
  out.input = stack(ins);
  out.target = stack(tgts);
  out.depth = stack(deps);
  out.defocus = stack(defs);
  return out;
}

}  // namespace rf
