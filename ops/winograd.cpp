// Winograd F(2x2, 3x3) for the CPU's 3x3, stride-1 convolutions (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2016). Each 2x2 output tile is A^T [ (G k G^T) ⊙ (B^T d B) ] A with d the tile's 4x4 input
// patch: 16 multiplies per tile and channel pair instead of 36, so the work becomes 16 GEMMs (one per transformed
// position xi) of [c_out x c_in] x [c_in x tiles] — 2.25x fewer multiply-adds than the im2col GEMM, and no column
// matrix. The transforms use only 0, ±1 and ±1/2; the tests hold all three passes within 1e-5 relative error of the
// seven-loop oracle and the im2col path.
//
// The three passes share one tile walk: the data gradient is the forward convolution of gy with the flipped,
// transposed kernel (padding 2 - pad), and the weight gradient is the adjoint of the forward algorithm,
// dk = G^T [ sum over tiles (A dy A^T) V^T ] G — exact, not an approximation.

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/conv_impl.h"
#include "ops/gemm.h"

namespace rf {
namespace cpu {

namespace {

constexpr int64_t kXi = 16;  // transformed positions of a 4x4 tile

// A convolution as the tile walk sees it: zero outside the input, any padding (also negative or above 1).
struct WinoShape {
  int64_t n, c_in, h, w, c_out, h_out, w_out, pad_h, pad_w;
  int64_t tiles_h() const { return (h_out + 1) / 2; }
  int64_t tiles_w() const { return (w_out + 1) / 2; }
  int64_t tiles() const { return n * tiles_h() * tiles_w(); }
};

float* scratch(std::vector<float>& buf, size_t floats) {
  if (buf.size() < floats) buf.resize(floats);
  return buf.data();
}

// Tiles per chunk: the chunk's transformed input and GEMM output ([16][c][T] each) are a thread's working set.
// At least 128 tiles, or the per-call packing of the [c_out x c_in] matrices outweighs a narrow GEMM; fewer when
// the image has too few tiles for every thread to get one chunk.
int64_t chunk_tiles(const WinoShape& s, int threads) {
  const int64_t budget = 1 << 19;  // floats, 2 MiB per thread
  int64_t t = std::max<int64_t>(128, budget / (kXi * (s.c_in + s.c_out)));
  const int64_t fair = (s.tiles() + threads - 1) / threads;
  t = std::min(t, std::max<int64_t>(16, fair));
  return (t + 15) / 16 * 16;
}

// Floats between the transformed kernel's 16 positions: [c_out x c_in] plus a cache line, so that the 16 streams
// transform_kernel writes do not share L1 sets when c_out * c_in is a multiple of 4 KiB.
int64_t u_stride(int64_t c_out, int64_t c_in) { return c_out * c_in + 16; }

// U[xi][co][ci] = (G k G^T)[xi] for a kernel k[co][ci][3][3]; flip_transpose reads k[ci][co][2-a][2-b] instead
// (the data gradient's kernel, with c_out and c_in the data gradient's own).
void transform_kernel(const float* k, int64_t c_out, int64_t c_in, bool flip_transpose, float* u) {
  const int64_t stride = u_stride(c_out, c_in);
#pragma omp parallel for if (c_out * c_in > 4096)
  for (int64_t co = 0; co < c_out; ++co) {
    float* __restrict out = u + co * c_in;
#pragma omp simd
    for (int64_t ci = 0; ci < c_in; ++ci) {
      const float* src = flip_transpose ? k + (ci * c_out + co) * 9 : k + (co * c_in + ci) * 9;
      float g[3][3];
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) g[a][b] = flip_transpose ? src[(2 - a) * 3 + 2 - b] : src[a * 3 + b];
      float t[4][3];  // G g
      for (int b = 0; b < 3; ++b) {
        t[0][b] = g[0][b];
        t[1][b] = 0.5f * (g[0][b] + g[1][b] + g[2][b]);
        t[2][b] = 0.5f * (g[0][b] - g[1][b] + g[2][b]);
        t[3][b] = g[2][b];
      }
      for (int a = 0; a < 4; ++a) {  // (G g) G^T
        out[(a * 4 + 0) * stride + ci] = t[a][0];
        out[(a * 4 + 1) * stride + ci] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
        out[(a * 4 + 2) * stride + ci] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
        out[(a * 4 + 3) * stride + ci] = t[a][2];
      }
    }
  }
}

// The tiles t0..t1-1 of a chunk as runs along rows of tiles: calls f(image, tile row th, tw0, tw1, offset of
// (th, tw0) in the chunk).
template <class F>
void for_tile_rows(const WinoShape& s, int64_t t0, int64_t t1, F f) {
  const int64_t th_n = s.tiles_h(), tw_n = s.tiles_w();
  for (int64_t row = t0 / tw_n; row * tw_n < t1; ++row) {
    const int64_t tw0 = std::max<int64_t>(0, t0 - row * tw_n), tw1 = std::min(tw_n, t1 - row * tw_n);
    f(row / th_n, row % th_n, tw0, tw1, row * tw_n + tw0 - t0);
  }
}

// Row r of a plane as the tile walk reads it, split into even and odd columns of the padded row:
// even[k] = plane[r][2k - pad], odd[k] = plane[r][2k + 1 - pad] for k in [0, n), zero outside the plane. Tile tw
// then reads even[tw], odd[tw], even[tw + 1], odd[tw + 1]: unit strides and no bounds tests, so the transforms'
// loops over the tiles of a row vectorise.
void split_row(const float* plane, int64_t h, int64_t w, int64_t r, int64_t pad, int64_t n, float* even, float* odd) {
  const float* row = r < 0 || r >= h ? nullptr : plane + r * w;
  for (int parity = 0; parity < 2; ++parity) {
    float* out = parity ? odd : even;
    // Column 2k + parity - pad lies in [0, w) for k in [lo, hi).
    const int64_t first = pad - parity;  // k >= first / 2, rounded up
    int64_t lo = first <= 0 ? 0 : (first + 1) / 2, hi = (w + pad - parity + 1) / 2;
    if (!row) lo = hi = 0;
    lo = std::min(lo, n);
    hi = std::clamp(hi, lo, n);
    std::fill(out, out + lo, 0.f);
    const float* src = row ? row + parity - pad : nullptr;
    for (int64_t k = lo; k < hi; ++k) out[k] = src[2 * k];
    std::fill(out + hi, out + n, 0.f);
  }
}

// The chunk's [16][c][ld] matrices are laid out with this many floats between positions: a multiple of 4 KiB
// would put the 16 streams a transform writes (or reads) in the same L1 sets.
int64_t xi_stride(int64_t c, int64_t ld) { return c * ld + 16; }

// V[xi][c][t - t0] = (B^T d B)[xi] for tiles t0..t1-1 of the input x[n][c][h][w], channels c0..c1-1 (all by
// default); ld = the chunk's tile stride.
void transform_input(const WinoShape& s, const float* x, int64_t t0, int64_t t1, int64_t ld, float* v, int64_t c0 = 0,
                     int64_t c1 = -1) {
  const int64_t stride = xi_stride(s.c_in, ld), n = s.tiles_w() + 1;
  thread_local std::vector<float> rows;
  float* buf = scratch(rows, (size_t)(8 * n));
  for (int64_t c = c0; c < (c1 < 0 ? s.c_in : c1); ++c)
    for_tile_rows(s, t0, t1, [&](int64_t img, int64_t th, int64_t tw0, int64_t tw1, int64_t at) {
      const float* plane = x + (img * s.c_in + c) * s.h * s.w;
      const int64_t r0 = 2 * th - s.pad_h;
      for (int i = 0; i < 4; ++i) split_row(plane, s.h, s.w, r0 + i, s.pad_w, n, buf + 2 * i * n, buf + (2 * i + 1) * n);
      const float *__restrict e0 = buf, *__restrict o0 = buf + n, *__restrict e1 = buf + 2 * n, *__restrict o1 = buf + 3 * n;
      const float *__restrict e2 = buf + 4 * n, *__restrict o2 = buf + 5 * n, *__restrict e3 = buf + 6 * n,
                  *__restrict o3 = buf + 7 * n;
      float* __restrict out = v + c * ld + at - tw0;
#pragma omp simd
      for (int64_t tw = tw0; tw < tw1; ++tw) {
        const float d[4][4] = {{e0[tw], o0[tw], e0[tw + 1], o0[tw + 1]},
                               {e1[tw], o1[tw], e1[tw + 1], o1[tw + 1]},
                               {e2[tw], o2[tw], e2[tw + 1], o2[tw + 1]},
                               {e3[tw], o3[tw], e3[tw + 1], o3[tw + 1]}};
        float e[4][4];  // B^T d
        for (int j = 0; j < 4; ++j) {
          e[0][j] = d[0][j] - d[2][j];
          e[1][j] = d[1][j] + d[2][j];
          e[2][j] = d[2][j] - d[1][j];
          e[3][j] = d[1][j] - d[3][j];
        }
        for (int i = 0; i < 4; ++i) {  // (B^T d) B
          out[(i * 4 + 0) * stride + tw] = e[i][0] - e[i][2];
          out[(i * 4 + 1) * stride + tw] = e[i][1] + e[i][2];
          out[(i * 4 + 2) * stride + tw] = e[i][2] - e[i][1];
          out[(i * 4 + 3) * stride + tw] = e[i][1] - e[i][3];
        }
      }
    });
}

// y tiles t0..t1-1 = A^T M A (+ bias), from M[xi][co][t - t0]; the last row/column of an edge tile is dropped.
void transform_output(const WinoShape& s, const float* m, int64_t t0, int64_t t1, int64_t ld, const float* bias,
                      float* y) {
  const int64_t stride = xi_stride(s.c_out, ld), n = s.tiles_w();
  thread_local std::vector<float> rows;
  float* buf = scratch(rows, (size_t)(4 * n));
  for (int64_t c = 0; c < s.c_out; ++c) {
    const float b = bias ? bias[c] : 0.f;
    for_tile_rows(s, t0, t1, [&](int64_t img, int64_t th, int64_t tw0, int64_t tw1, int64_t at) {
      const float* __restrict in = m + c * ld + at - tw0;
      float *__restrict ye0 = buf, *__restrict yo0 = buf + n, *__restrict ye1 = buf + 2 * n, *__restrict yo1 = buf + 3 * n;
#pragma omp simd
      for (int64_t tw = tw0; tw < tw1; ++tw) {
        float mm[4][4];
        for (int xi = 0; xi < 16; ++xi) mm[xi / 4][xi % 4] = in[xi * stride + tw];
        float r[2][4];  // A^T M
        for (int j = 0; j < 4; ++j) {
          r[0][j] = mm[0][j] + mm[1][j] + mm[2][j];
          r[1][j] = mm[1][j] - mm[2][j] - mm[3][j];
        }
        ye0[tw] = r[0][0] + r[0][1] + r[0][2] + b;
        yo0[tw] = r[0][1] - r[0][2] - r[0][3] + b;
        ye1[tw] = r[1][0] + r[1][1] + r[1][2] + b;
        yo1[tw] = r[1][1] - r[1][2] - r[1][3] + b;
      }
      // Interleave the even and odd columns back; an odd-sized output drops the last tile's second row/column.
      float* plane = y + (img * s.c_out + c) * s.h_out * s.w_out;
      const int64_t oh = 2 * th;
      auto write_row = [&](float* row, const float* even, const float* odd) {
        for (int64_t tw = tw0; tw < tw1; ++tw) {
          row[2 * tw] = even[tw];
          if (2 * tw + 1 < s.w_out) row[2 * tw + 1] = odd[tw];
        }
      };
      write_row(plane + oh * s.w_out, ye0, yo0);
      if (oh + 1 < s.h_out) write_row(plane + (oh + 1) * s.w_out, ye1, yo1);
    });
  }
}

// dM[xi][co][t - t0] = (A dy A^T)[xi], dy read as zero beyond the output's edge (the adjoint of transform_output).
void transform_output_grad(const WinoShape& s, const float* gy, int64_t t0, int64_t t1, int64_t ld, float* dm,
                           int64_t c0 = 0, int64_t c1 = -1) {
  const int64_t stride = xi_stride(s.c_out, ld), n = s.tiles_w();
  thread_local std::vector<float> rows;
  float* buf = scratch(rows, (size_t)(4 * n));
  for (int64_t c = c0; c < (c1 < 0 ? s.c_out : c1); ++c)
    for_tile_rows(s, t0, t1, [&](int64_t img, int64_t th, int64_t tw0, int64_t tw1, int64_t at) {
      const float* plane = gy + (img * s.c_out + c) * s.h_out * s.w_out;
      split_row(plane, s.h_out, s.w_out, 2 * th, 0, n, buf, buf + n);
      split_row(plane, s.h_out, s.w_out, 2 * th + 1, 0, n, buf + 2 * n, buf + 3 * n);
      const float *__restrict e0 = buf, *__restrict o0 = buf + n, *__restrict e1 = buf + 2 * n, *__restrict o1 = buf + 3 * n;
      float* __restrict out = dm + c * ld + at - tw0;
#pragma omp simd
      for (int64_t tw = tw0; tw < tw1; ++tw) {
        const float d[2][2] = {{e0[tw], o0[tw]}, {e1[tw], o1[tw]}};
        float e[4][2];  // A dy
        for (int j = 0; j < 2; ++j) {
          e[0][j] = d[0][j];
          e[1][j] = d[0][j] + d[1][j];
          e[2][j] = d[0][j] - d[1][j];
          e[3][j] = -d[1][j];
        }
        for (int i = 0; i < 4; ++i) {  // (A dy) A^T
          out[(i * 4 + 0) * stride + tw] = e[i][0];
          out[(i * 4 + 1) * stride + tw] = e[i][0] + e[i][1];
          out[(i * 4 + 2) * stride + tw] = e[i][0] - e[i][1];
          out[(i * 4 + 3) * stride + tw] = -e[i][1];
        }
      }
    });
}

struct Chunks {
  int64_t size, count;
};
Chunks chunks_of(const WinoShape& s) {
  const int64_t size = chunk_tiles(s, omp_get_max_threads());
  return {size, (s.tiles() + size - 1) / size};
}

// Chunk k's tiles [t0, t1) and the calling thread's buffers for its two transforms ([16][c_in] and [16][c_out]).
struct Chunk {
  int64_t t0, t1;
  float *v, *m;
};
Chunk chunk_at(const WinoShape& s, const Chunks& ch, int64_t k) {
  thread_local std::vector<float> vbuf, mbuf;
  const int64_t t0 = k * ch.size;
  return {t0, std::min(s.tiles(), t0 + ch.size), scratch(vbuf, (size_t)(kXi * xi_stride(s.c_in, ch.size))),
          scratch(mbuf, (size_t)(kXi * xi_stride(s.c_out, ch.size)))};
}

// y = conv(x, k) + bias through transformed kernels u ([16][c_out][c_in]); chunks of tiles spread over the
// threads, each chunk's 16 GEMMs single-threaded.
void winograd_run(const WinoShape& s, const float* x, const float* u, const float* bias, float* y) {
  const Chunks ch = chunks_of(s);
#pragma omp parallel for schedule(static) if (ch.count > 1)
  for (int64_t k = 0; k < ch.count; ++k) {
    const auto [t0, t1, v, m] = chunk_at(s, ch, k);
    const int64_t nt = t1 - t0;
    transform_input(s, x, t0, t1, ch.size, v);
    for (int64_t xi = 0; xi < kXi; ++xi) {
      GemmShape gs = gemm_shape(false, false, s.c_out, nt, s.c_in);
      gs.ldb = ch.size;
      gs.ldc = ch.size;
      gemm(gs, u + xi * u_stride(s.c_out, s.c_in), v + xi * xi_stride(s.c_in, ch.size), m + xi * xi_stride(s.c_out, ch.size));
    }
    transform_output(s, m, t0, t1, ch.size, bias, y);
  }
}

WinoShape shape_of(const ConvGeometry& g) {
  return {g.n, g.c_in, g.h, g.w, g.c_out, g.h_out, g.w_out, g.pad_h, g.pad_w};
}

}  // namespace

// Below 16 channels on either side the GEMMs are too thin to pay for the transforms (the first layer's 3 input
// channels, the last layer's 3 outputs); those stay on the im2col path.
bool winograd_applies(const ConvGeometry& g) {
  return g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 && g.dil_w == 1 &&
         g.groups == 1 && g.c_in >= 16 && g.c_out >= 16 && g.h_out >= 1 && g.w_out >= 1;
}

void winograd_forward(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  std::vector<float> u((size_t)(kXi * u_stride(g.c_out, g.c_in)));
  transform_kernel(w, g.c_out, g.c_in, false, u.data());
  winograd_run(shape_of(g), x, u.data(), bias, y);
}

void winograd_backward_data(const ConvGeometry& g, const float* gy, const float* w, float* gx) {
  // gx[ci, i, j] = sum gy[co, i + pad - a, j + pad - b] k[co, ci, a, b]: a forward convolution of gy with the
  // kernel flipped and transposed, padding 2 - pad, whose output is the input's size.
  std::vector<float> u((size_t)(kXi * u_stride(g.c_in, g.c_out)));
  transform_kernel(w, g.c_in, g.c_out, true, u.data());
  const WinoShape s{g.n, g.c_out, g.h_out, g.w_out, g.c_in, g.h, g.w, 2 - g.pad_h, 2 - g.pad_w};
  winograd_run(s, gy, u.data(), nullptr, gx);
}

// gw = G^T dU G per kernel, from dU[xi][co][ci] (positions u_stride apart): the adjoint of transform_kernel.
static void kernel_gradient(const float* du, int64_t c_out, int64_t c_in, float* gw) {
  const int64_t plane = c_out * c_in, ustride = u_stride(c_out, c_in);
#pragma omp parallel for if (plane > 4096)
  for (int64_t p = 0; p < plane; ++p) {
    float d[4][4];
    for (int xi = 0; xi < 16; ++xi) d[xi / 4][xi % 4] = du[xi * ustride + p];
    float r[3][4];  // G^T dU
    for (int j = 0; j < 4; ++j) {
      r[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
      r[1][j] = 0.5f * (d[1][j] - d[2][j]);
      r[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
    }
    float* out = gw + p * 9;
    for (int a = 0; a < 3; ++a) {  // (G^T dU) G
      out[a * 3 + 0] = r[a][0] + 0.5f * (r[a][1] + r[a][2]);
      out[a * 3 + 1] = 0.5f * (r[a][1] - r[a][2]);
      out[a * 3 + 2] = 0.5f * (r[a][1] + r[a][2]) + r[a][3];
    }
  }
}

// dU[xi] = sum over all tiles of dM[xi] V[xi]^T, when every tile's transforms fit in 32 MiB (deep layers at low
// resolution: 512 channels at 16^2): the 16 positions spread over the threads, each GEMM summing over all tiles, so
// no accumulator per thread and no GEMM with a short sum (512->512 at 16^2, batch 4: 25.5 ms chunked, im2col 21.8).
static bool weight_gradient_whole(const WinoShape& s) {
  return kXi * (s.c_in + s.c_out) * s.tiles() <= (int64_t(1) << 23);
}

static void weight_gradient_whole(const WinoShape& s, const float* x, const float* gy, float* du, int64_t ustride) {
  const int64_t tiles = s.tiles();
  std::vector<float> v((size_t)(kXi * xi_stride(s.c_in, tiles))), m((size_t)(kXi * xi_stride(s.c_out, tiles)));
  const int64_t blocks = s.c_in + s.c_out;  // one channel of either transform per item
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t b = 0; b < blocks; ++b) {
    if (b < s.c_in)
      transform_input(s, x, 0, tiles, tiles, v.data(), b, b + 1);
    else
      transform_output_grad(s, gy, 0, tiles, tiles, m.data(), b - s.c_in, b - s.c_in + 1);
  }
#pragma omp parallel for schedule(static)
  for (int64_t xi = 0; xi < kXi; ++xi) {
    GemmShape gs = gemm_shape(false, true, s.c_out, s.c_in, tiles);
    gs.lda = tiles;
    gs.ldb = tiles;
    gemm(gs, m.data() + xi * xi_stride(s.c_out, tiles), v.data() + xi * xi_stride(s.c_in, tiles), du + xi * ustride);
  }
}

void winograd_backward_weight(const ConvGeometry& g, const float* x, const float* gy, float* gw) {
  const WinoShape s = shape_of(g);
  const int64_t ustride = u_stride(g.c_out, g.c_in), usize = kXi * ustride;
  if (weight_gradient_whole(s)) {
    std::vector<float> du((size_t)usize);
    weight_gradient_whole(s, x, gy, du.data(), ustride);
    kernel_gradient(du.data(), g.c_out, g.c_in, gw);
    return;
  }
  const Chunks ch = chunks_of(s);
  // One accumulator per thread, chunks assigned statically, summed in thread order: deterministic for a given
  // thread count. A thread's first chunk overwrites its accumulator (no zeroing pass over 16 x c_out x c_in).
  const int threads = ch.count > 1 ? omp_get_max_threads() : 1;
  std::vector<float> du((size_t)(threads * usize));
  std::vector<char> used((size_t)threads, 0);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t k = 0; k < ch.count; ++k) {
    const auto [t0, t1, v, m] = chunk_at(s, ch, k);
    const int64_t nt = t1 - t0;
    transform_input(s, x, t0, t1, ch.size, v);
    transform_output_grad(s, gy, t0, t1, ch.size, m);
    const int me = omp_get_thread_num();
    float* acc = du.data() + me * usize;
    for (int64_t xi = 0; xi < kXi; ++xi) {
      GemmShape gs = gemm_shape(false, true, s.c_out, s.c_in, nt, 1.f, used[me] ? 1.f : 0.f);
      gs.lda = ch.size;
      gs.ldb = ch.size;
      gemm(gs, m + xi * xi_stride(s.c_out, ch.size), v + xi * xi_stride(s.c_in, ch.size), acc + xi * ustride);
    }
    used[me] = 1;
  }
  for (int th = 1; th < threads; ++th)
    if (used[th])
      for (int64_t i = 0; i < usize; ++i) du[i] += du[th * usize + i];
  kernel_gradient(du.data(), g.c_out, g.c_in, gw);
}

}  // namespace cpu
}  // namespace rf
