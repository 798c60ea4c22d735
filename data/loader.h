// Loading samples as tensors, and the training input pipeline: random crops, flips and 90° rotations,
// batching, and background threads that prepare the next batches while the current one trains.
// Batch s is a pure function of (seed, s): the same on every run, whatever the thread timing, and a
// resumed run continues with exactly the batches it would have seen.
#pragma once
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "engine/tensor.h"

namespace rf {

struct LoadedSample {
  Tensor input, target;  // [3, H, W] in [0, 1] (target undefined when the layout has none)
  Tensor depth;          // [1, H, W] metres (synth) or the map's raw [0, 1] values; undefined when none
  Tensor defocus;        // [1, H, W] CoC radius in px (synth) or raw [0, 1] values; undefined when none
};

LoadedSample load_sample(const Dataset& ds, size_t index);

// The square crop [top, top + size) x [left, left + size) of img [C, H, W], rotated by k quarter turns and
// then flipped: output pixel (y, x) shows crop pixel T(y, x) (see loader.cpp). The training augmentation.
Tensor crop_square(const Tensor& img, int64_t top, int64_t left, int64_t size, int k, bool flip_x, bool flip_y);

struct LoaderOptions {
  int64_t batch = 4;
  int64_t crop = 256;      // square crops; 0 = whole images (all must then share one size)
  bool augment = true;     // random horizontal/vertical flips and 90° rotations
  uint64_t seed = 0;
  int workers = 2;
  int prefetch = 4;        // batches prepared ahead
  bool with_depth = false, with_defocus = false;
  // [ours] The share of crops whose input is replaced by their own sharp target (and defocus map by zeros, in
  // focus): the synthetic sets hold few nearly sharp images, and a network that never sees one sharpens everything.
  // Not with depth maps (a sharp crop's depth would still imply its blur).
  double sharp_fraction = 0;
  size_t cache_mb = 2048;  // decoded images kept in memory (least recently used are dropped)
};

struct Batch {
  int64_t step = 0;
  Tensor input, target, depth, defocus;  // [B, C, crop, crop] on the CPU
};

class TrainLoader {
 public:
  TrainLoader(const Dataset& ds, LoaderOptions o);
  ~TrainLoader();
  TrainLoader(const TrainLoader&) = delete;
  TrainLoader& operator=(const TrainLoader&) = delete;
  // The batch of the next step (0, 1, 2, ... or from the step given to seek()).
  Batch next();
  void seek(int64_t step);
  // Build batch `step` directly on the calling thread (what the workers do).
  Batch make_batch(int64_t step);

 private:
  const LoadedSample& cached(size_t index, std::shared_ptr<LoadedSample>& hold);
  void worker();

  Dataset ds_;
  LoaderOptions o_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Batch> ready_;
  int64_t consume_ = 0, produce_ = 0;
  bool stop_ = false;
  std::string error_;  // the first loading error, rethrown by next()
  std::vector<std::thread> threads_;
  // LRU cache of decoded samples.
  std::mutex cache_mu_;
  std::map<size_t, std::pair<std::shared_ptr<LoadedSample>, int64_t>> cache_;  // index -> (sample, last use)
  size_t cache_bytes_ = 0;
  int64_t clock_ = 0;
};

}  // namespace rf
