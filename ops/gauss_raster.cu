// CUDA tile rasterizer for 2-D Gaussian blobs.
//
// Forward (after 3D Gaussian Splatting's tile rasterizer, without depth sorting since the image is a
// plain sum): (1) one thread per blob computes its frame and counts the 16x16 tiles its 3-sigma box
// touches; (2) an exclusive scan gives each blob its slots; (3) each blob writes (tile, blob) pairs;
// (4) a stable radix sort by tile groups them, keeping blob order within a tile; (5) per-tile ranges;
// (6) one 16x16 block per tile streams all of its blobs through shared memory, 256 at a time — every
// blob of a tile is rendered, however many.
// Backward: one warp per blob gathers the gradient over the blob's own pixels and reduces it in a fixed
// order, so gradients are deterministic and need no atomics.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "engine/allocator.h"
#include "engine/device.h"
#include "ops/cuda_common.cuh"
#include "ops/gauss_raster_impl.h"

namespace rf::gpu {

namespace {

// Device scratch from the caching allocator, freed at scope exit.
struct Scratch {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Scratch(size_t b) : bytes(b) {
    if (b) p = device_alloc(Device::CUDA, b);
  }
  ~Scratch() { device_free(Device::CUDA, p, bytes); }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

__device__ __forceinline__ int64_t tiles_touched(const BlobFrame& f) {
  if (f.x0 > f.x1 || f.y0 > f.y1) return 0;
  return (int64_t)(f.x1 / kRasterTile - f.x0 / kRasterTile + 1) * (f.y1 / kRasterTile - f.y0 / kRasterTile + 1);
}

__global__ void frames_kernel(RasterGeometry g, const float* means, const float* theta, const float* scales,
                              BlobFrame* frames, int64_t* counts) {
  RF_GRID_STRIDE(i, g.n) {
    BlobFrame f = blob_frame(means, theta, scales, i, g.h, g.w, g.sigmas);
    frames[i] = f;
    counts[i] = tiles_touched(f);
  }
}

__global__ void duplicate_kernel(RasterGeometry g, const BlobFrame* frames, const int64_t* offsets, uint32_t* keys,
                                 int32_t* values) {
  const int64_t tx = g.tiles_x();
  RF_GRID_STRIDE(i, g.n) {
    BlobFrame f = frames[i];
    if (tiles_touched(f) == 0) continue;
    int64_t at = offsets[i];
    for (int ty = f.y0 / kRasterTile; ty <= f.y1 / kRasterTile; ++ty)
      for (int t = f.x0 / kRasterTile; t <= f.x1 / kRasterTile; ++t) {
        keys[at] = (uint32_t)(ty * tx + t);
        values[at] = (int32_t)i;
        ++at;
      }
  }
}

__global__ void ranges_kernel(const uint32_t* keys, int64_t total, int2* ranges) {
  RF_GRID_STRIDE(k, total) {
    uint32_t key = keys[k];
    if (k == 0 || keys[k - 1] != key) ranges[key].x = (int)k;
    if (k == total - 1 || keys[k + 1] != key) ranges[key].y = (int)(k + 1);
  }
}

__global__ void max_range_kernel(const int2* ranges, int64_t tiles, int* max_count) {
  RF_GRID_STRIDE(t, tiles) atomicMax(max_count, ranges[t].y - ranges[t].x);
}

constexpr int kChunk = kRasterTile * kRasterTile;

__global__ void render_kernel(RasterGeometry g, const BlobFrame* frames, const float* colors, const float* opacity,
                              const int32_t* values, const int2* ranges, float* image) {
  __shared__ BlobFrame s_frame[kChunk];
  __shared__ float3 s_col[kChunk];
  const int tile = blockIdx.y * gridDim.x + blockIdx.x;
  const int px = blockIdx.x * kRasterTile + threadIdx.x, py = blockIdx.y * kRasterTile + threadIdx.y;
  const int tid = threadIdx.y * kRasterTile + threadIdx.x;
  const bool inside = px < g.w && py < g.h;
  const int2 range = ranges[tile];
  float3 acc = make_float3(0.f, 0.f, 0.f);
  for (int start = range.x; start < range.y; start += kChunk) {
    __syncthreads();
    if (start + tid < range.y) {
      int i = values[start + tid];
      float o = opacity[i];
      s_frame[tid] = frames[i];
      s_col[tid] = make_float3(colors[3 * i] * o, colors[3 * i + 1] * o, colors[3 * i + 2] * o);
    }
    __syncthreads();
    const int count = min(kChunk, range.y - start);
    if (!inside) continue;
    for (int j = 0; j < count; ++j) {
      const BlobFrame& f = s_frame[j];
      if (px < f.x0 || px > f.x1 || py < f.y0 || py > f.y1) continue;
      float t1, t2, G = blob_weight(f, px, py, t1, t2);
      acc.x += s_col[j].x * G;
      acc.y += s_col[j].y * G;
      acc.z += s_col[j].z * G;
    }
  }
  if (inside) {
    const int64_t hw = g.h * g.w, p = (int64_t)py * g.w + px;
    image[p] = acc.x;
    image[hw + p] = acc.y;
    image[2 * hw + p] = acc.z;
  }
}

__global__ void backward_kernel(RasterGeometry g, const float* means, const float* theta, const float* scales,
                                const float* colors, const float* opacity, const float* grad_image, float* g_means,
                                float* g_theta, float* g_scales, float* g_colors, float* g_opacity) {
  const int64_t lane = threadIdx.x & 31, warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  const int64_t hw = g.h * g.w;
  for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < g.n; i += warps) {
    BlobFrame f = blob_frame(means, theta, scales, i, g.h, g.w, g.sigmas);
    BlobGrad acc;
    const int64_t bw = f.x1 - f.x0 + 1, bh = f.y1 - f.y0 + 1;
    const int64_t npx = (bw > 0 && bh > 0) ? bw * bh : 0;
    const float s1 = scales[2 * i], s2 = scales[2 * i + 1], o = opacity[i];
    for (int64_t k = lane; k < npx; k += 32) {
      int px = f.x0 + (int)(k % bw), py = f.y0 + (int)(k / bw);
      int64_t p = (int64_t)py * g.w + px;
      float gp[3] = {grad_image[p], grad_image[hw + p], grad_image[2 * hw + p]};
      blob_pixel_grad(f, s1, s2, colors + 3 * i, o, px, py, gp, acc);
    }
    acc.mx = warp_sum(acc.mx);
    acc.my = warp_sum(acc.my);
    acc.theta = warp_sum(acc.theta);
    acc.s1 = warp_sum(acc.s1);
    acc.s2 = warp_sum(acc.s2);
    acc.c0 = warp_sum(acc.c0);
    acc.c1 = warp_sum(acc.c1);
    acc.c2 = warp_sum(acc.c2);
    acc.o = warp_sum(acc.o);
    if (lane == 0) store_blob_grad(acc, i, g_means, g_theta, g_scales, g_colors, g_opacity);
  }
}

}  // namespace

void rasterize_forward(const RasterGeometry& g, const float* means, const float* theta, const float* scales,
                       const float* colors, const float* opacity, float* image, int64_t* max_per_tile, int64_t* pairs) {
  const int64_t tiles = g.tiles_x() * g.tiles_y();
  Scratch frames(sizeof(BlobFrame) * std::max<int64_t>(g.n, 1)), counts(sizeof(int64_t) * std::max<int64_t>(g.n, 1)),
      offsets(sizeof(int64_t) * std::max<int64_t>(g.n, 1)), ranges(sizeof(int2) * tiles), max_count(sizeof(int));
  int64_t total = 0;
  if (g.n > 0) {
    frames_kernel<<<rf_blocks(g.n), 256>>>(g, means, theta, scales, frames.as<BlobFrame>(), counts.as<int64_t>());
    RF_LAUNCH_CHECK("rasterize: blob frames");
    size_t tmp_bytes = 0;
    cub::DeviceScan::ExclusiveSum(nullptr, tmp_bytes, counts.as<int64_t>(), offsets.as<int64_t>(), (int)g.n);
    {
      Scratch tmp(tmp_bytes);
      RF_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(tmp.p, tmp_bytes, counts.as<int64_t>(), offsets.as<int64_t>(), (int)g.n));
    }
    int64_t last_offset = 0, last_count = 0;
    RF_CUDA_CHECK(cudaMemcpy(&last_offset, offsets.as<int64_t>() + g.n - 1, sizeof(int64_t), cudaMemcpyDeviceToHost));
    RF_CUDA_CHECK(cudaMemcpy(&last_count, counts.as<int64_t>() + g.n - 1, sizeof(int64_t), cudaMemcpyDeviceToHost));
    total = last_offset + last_count;
  }
  RF_CHECK(total < (int64_t)1 << 31, "rasterize on cuda: ", total, " tile-blob pairs exceed 2^31 (image ", g.h, "x",
           g.w, ", ", g.n, " blobs): the blobs are far too large");
  RF_CUDA_CHECK(cudaMemsetAsync(ranges.p, 0, ranges.bytes));
  RF_CUDA_CHECK(cudaMemsetAsync(max_count.p, 0, sizeof(int)));
  Scratch values_sorted(sizeof(int32_t) * std::max<int64_t>(total, 1));
  if (total > 0) {
    Scratch keys(sizeof(uint32_t) * total), keys_sorted(sizeof(uint32_t) * total), values(sizeof(int32_t) * total);
    duplicate_kernel<<<rf_blocks(g.n), 256>>>(g, frames.as<BlobFrame>(), offsets.as<int64_t>(), keys.as<uint32_t>(),
                                              values.as<int32_t>());
    RF_LAUNCH_CHECK("rasterize: tile pairs");
    int end_bit = 1;
    while (((int64_t)1 << end_bit) < tiles) ++end_bit;
    size_t tmp_bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, tmp_bytes, keys.as<uint32_t>(), keys_sorted.as<uint32_t>(),
                                    values.as<int32_t>(), values_sorted.as<int32_t>(), (int)total, 0, end_bit);
    {
      Scratch tmp(tmp_bytes);
      RF_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp.p, tmp_bytes, keys.as<uint32_t>(), keys_sorted.as<uint32_t>(),
                                                    values.as<int32_t>(), values_sorted.as<int32_t>(), (int)total, 0,
                                                    end_bit));
    }
    ranges_kernel<<<rf_blocks(total), 256>>>(keys_sorted.as<uint32_t>(), total, ranges.as<int2>());
    RF_LAUNCH_CHECK("rasterize: tile ranges");
    max_range_kernel<<<rf_blocks(tiles), 256>>>(ranges.as<int2>(), tiles, max_count.as<int>());
    RF_LAUNCH_CHECK("rasterize: tile statistics");
  }
  dim3 grid((unsigned)g.tiles_x(), (unsigned)g.tiles_y()), block(kRasterTile, kRasterTile);
  render_kernel<<<grid, block>>>(g, frames.as<BlobFrame>(), colors, opacity, values_sorted.as<int32_t>(),
                                 ranges.as<int2>(), image);
  RF_LAUNCH_CHECK("rasterize: render tiles");
  int mx = 0;
  RF_CUDA_CHECK(cudaMemcpy(&mx, max_count.p, sizeof(int), cudaMemcpyDeviceToHost));
  *max_per_tile = mx;
  *pairs = total;
}

void rasterize_backward(const RasterGeometry& g, const float* means, const float* theta, const float* scales,
                        const float* colors, const float* opacity, const float* grad_image, float* g_means,
                        float* g_theta, float* g_scales, float* g_colors, float* g_opacity) {
  if (g.n == 0) return;
  const int threads = 256;
  int64_t blocks = std::min<int64_t>((g.n * 32 + threads - 1) / threads, 65535LL * 8);
  backward_kernel<<<(unsigned)blocks, threads>>>(g, means, theta, scales, colors, opacity, grad_image, g_means, g_theta,
                                                 g_scales, g_colors, g_opacity);
  RF_LAUNCH_CHECK("rasterize backward");
}

}  // namespace rf::gpu
