#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "ops/attention_impl.h"
#include "ops/vector_math.h"
#include "ops/dispatch.h"
#include "ops/gemm.h"

namespace rf {

namespace cpu {

// Online softmax, one query at a time: running max m, running sum l, running weighted sum acc.
void attention_forward_reference(const AttentionGeometry& g, const float* q, const float* k, const float* v, float* out,
                                 float* lse) {
  const int64_t n = g.n, d = g.d;
#pragma omp parallel for schedule(static) if (g.bh * n > 64)
  for (int64_t r = 0; r < g.bh * n; ++r) {
    const int64_t b = r / n, i = r % n, j0 = i / g.window * g.window, j1 = std::min(n, j0 + g.window);
    const float* qi = q + r * d;
    const float* kb = k + b * n * d;
    const float* vb = v + b * n * d;
    float acc[64] = {0};
    float m = -INFINITY, l = 0.f;
    for (int64_t j = j0; j < j1; ++j) {
      float s = 0.f;
      for (int64_t c = 0; c < d; ++c) s += qi[c] * kb[j * d + c];
      s *= g.scale;
      float m_new = std::max(m, s), corr = std::exp(m - m_new), p = std::exp(s - m_new);
      l = l * corr + p;
      for (int64_t c = 0; c < d; ++c) acc[c] = acc[c] * corr + p * vb[j * d + c];
      m = m_new;
    }
    for (int64_t c = 0; c < d; ++c) out[r * d + c] = acc[c] / l;
    lse[r] = m + std::log(l);
  }
}

// P_ij = exp(s_ij - lse_i) recomputed; dS_ij = P_ij (dO_i . v_j - dO_i . O_i). One pass per query for dQ,
// one per key for dK and dV: every output has a single writer (no races, a fixed order).
void attention_backward_reference(const AttentionGeometry& g, const float* q, const float* k, const float* v,
                                  const float* out, const float* lse, const float* go, float* gq, float* gk, float* gv) {
  const int64_t n = g.n, d = g.d;
  std::vector<float> delta(g.bh * n);
#pragma omp parallel for if (g.bh * n > 256)
  for (int64_t r = 0; r < g.bh * n; ++r) {
    float s = 0.f;
    for (int64_t c = 0; c < d; ++c) s += go[r * d + c] * out[r * d + c];
    delta[r] = s;
  }
  auto score = [&](int64_t b, int64_t i, int64_t j) {
    const float* qi = q + (b * n + i) * d;
    const float* kj = k + (b * n + j) * d;
    float s = 0.f;
    for (int64_t c = 0; c < d; ++c) s += qi[c] * kj[c];
    return s * g.scale;
  };
  auto dot_go_v = [&](int64_t b, int64_t i, int64_t j) {
    float s = 0.f;
    for (int64_t c = 0; c < d; ++c) s += go[(b * n + i) * d + c] * v[(b * n + j) * d + c];
    return s;
  };
#pragma omp parallel for schedule(static) if (g.bh * n > 64)
  for (int64_t r = 0; r < g.bh * n; ++r) {  // dQ
    const int64_t b = r / n, i = r % n, j0 = i / g.window * g.window, j1 = std::min(n, j0 + g.window);
    float acc[64] = {0};
    for (int64_t j = j0; j < j1; ++j) {
      float p = std::exp(score(b, i, j) - lse[r]);
      float ds = p * (dot_go_v(b, i, j) - delta[r]);
      for (int64_t c = 0; c < d; ++c) acc[c] += ds * k[(b * n + j) * d + c];
    }
    for (int64_t c = 0; c < d; ++c) gq[r * d + c] = acc[c] * g.scale;
  }
#pragma omp parallel for schedule(static) if (g.bh * n > 64)
  for (int64_t r = 0; r < g.bh * n; ++r) {  // dK, dV: the queries that see key j are those of its window
    const int64_t b = r / n, j = r % n, i0 = j / g.window * g.window, i1 = std::min(n, i0 + g.window);
    float ak[64] = {0}, av[64] = {0};
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t ri = b * n + i;
      float p = std::exp(score(b, i, j) - lse[ri]);
      float ds = p * (dot_go_v(b, i, j) - delta[ri]);
      for (int64_t c = 0; c < d; ++c) {
        av[c] += p * go[ri * d + c];
        ak[c] += ds * q[ri * d + c];
      }
    }
    for (int64_t c = 0; c < d; ++c) {
      gk[r * d + c] = ak[c] * g.scale;
      gv[r * d + c] = av[c];
    }
  }
}

// --- the blocked CPU path: 64 queries at a time against their key range, with GEMMs ---------------------
// The 64 x (key range) score block is the only O(N) buffer: memory stays O(N * d) overall.
namespace {
constexpr int64_t kQueryBlock = 64;

struct ScoreBlock {
  int64_t i0, i1, j0, j1;  // queries [i0, i1), keys [j0, j1)
};

ScoreBlock block_of(const AttentionGeometry& g, int64_t qb) {
  ScoreBlock b;
  b.i0 = qb * kQueryBlock;
  b.i1 = std::min(g.n, b.i0 + kQueryBlock);
  b.j0 = b.i0 / g.window * g.window;
  b.j1 = std::min(g.n, (b.i1 - 1) / g.window * g.window + g.window);
  return b;
}

// P = softmax(Q K^T * scale) over each query's window, for one block; returns P in `p` ([bq, nk]) and lse.
void block_probabilities(const AttentionGeometry& g, const ScoreBlock& b, const float* q, const float* k, float* p,
                         float* lse) {
  const int64_t bq = b.i1 - b.i0, nk = b.j1 - b.j0;
  gemm(gemm_shape(false, true, bq, nk, g.d, g.scale), q + b.i0 * g.d, k + b.j0 * g.d, p);
  for (int64_t r = 0; r < bq; ++r) {
    const int64_t i = b.i0 + r, lo = i / g.window * g.window - b.j0, hi = std::min(g.n, lo + b.j0 + g.window) - b.j0;
    float* row = p + r * nk;
    std::fill(row, row + lo, 0.f);  // keys outside the query's window
    std::fill(row + hi, row + nk, 0.f);
    // Three passes the compiler vectorizes: the maximum, the exps, their sum in eight fixed lanes (in double, as the
    // sum of a long full-attention row was before).
    float top[8];
    std::fill(top, top + 8, -INFINITY);
    int64_t c = lo;
    for (; c + 8 <= hi; c += 8)
      for (int l = 0; l < 8; ++l) top[l] = row[c + l] > top[l] ? row[c + l] : top[l];
    float m = -INFINITY;
    for (; c < hi; ++c) m = std::max(m, row[c]);
    for (int l = 0; l < 8; ++l) m = std::max(m, top[l]);
    for (c = lo; c < hi; ++c) row[c] = exp_nonpositive(row[c] - m);
    const double sum = lane_sum(hi - lo, [&](int64_t k) { return (double)row[lo + k]; });
    const float inv = (float)(1.0 / sum);
    for (c = lo; c < hi; ++c) row[c] *= inv;
    lse[r] = m + (float)std::log(sum);
  }
}
}  // namespace

void attention_forward(const AttentionGeometry& g, const float* q, const float* k, const float* v, float* out,
                       float* lse) {
  const int64_t nqb = (g.n + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel for schedule(dynamic) if (g.bh * nqb > 1)
  for (int64_t t = 0; t < g.bh * nqb; ++t) {
    const int64_t bh = t / nqb;
    const ScoreBlock b = block_of(g, t % nqb);
    const float *qb = q + bh * g.n * g.d, *kb = k + bh * g.n * g.d, *vb = v + bh * g.n * g.d;
    std::vector<float> p((size_t)((b.i1 - b.i0) * (b.j1 - b.j0)));
    block_probabilities(g, b, qb, kb, p.data(), lse + bh * g.n + b.i0);
    gemm(gemm_shape(false, false, b.i1 - b.i0, g.d, b.j1 - b.j0), p.data(), vb + b.j0 * g.d,
         out + (bh * g.n + b.i0) * g.d);
  }
}

void attention_backward(const AttentionGeometry& g, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* go, float* gq, float* gk, float* gv) {
  const int64_t nqb = (g.n + kQueryBlock - 1) / kQueryBlock, d = g.d;
  std::fill(gk, gk + g.bh * g.n * d, 0.f);
  std::fill(gv, gv + g.bh * g.n * d, 0.f);
  // Parallel over batch x heads; the query blocks of one head run in order (they add into the same dK, dV).
#pragma omp parallel for schedule(dynamic) if (g.bh > 1)
  for (int64_t bh = 0; bh < g.bh; ++bh) {
    const int64_t off = bh * g.n * d;
    std::vector<float> p, dp, lse_unused(kQueryBlock);
    for (int64_t qb = 0; qb < nqb; ++qb) {
      const ScoreBlock b = block_of(g, qb);
      const int64_t bq = b.i1 - b.i0, nk = b.j1 - b.j0;
      p.resize((size_t)(bq * nk));
      dp.resize((size_t)(bq * nk));
      block_probabilities(g, b, q + off, k + off, p.data(), lse_unused.data());
      gemm(gemm_shape(false, true, bq, nk, d), go + off + b.i0 * d, v + off + b.j0 * d, dp.data());  // dO V^T
      for (int64_t r = 0; r < bq; ++r) {  // dS = P (dP - rowsum(dO * O))
        const int64_t i = b.i0 + r;
        float delta = 0.f;
        for (int64_t c = 0; c < d; ++c) delta += go[off + i * d + c] * out[off + i * d + c];
        for (int64_t c = 0; c < nk; ++c) dp[r * nk + c] = p[r * nk + c] * (dp[r * nk + c] - delta);
      }
      gemm(gemm_shape(false, false, bq, d, nk, g.scale), dp.data(), k + off + b.j0 * d, gq + off + b.i0 * d);
      gemm(gemm_shape(true, false, nk, d, bq, g.scale, 1.f), dp.data(), q + off + b.i0 * d, gk + off + b.j0 * d);
      gemm(gemm_shape(true, false, nk, d, bq, 1.f, 1.f), p.data(), go + off + b.i0 * d, gv + off + b.j0 * d);
    }
  }
  (void)lse;
}

}  // namespace cpu

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window) {
  Device dev = same_device("attention", {q, k, v});
  RF_CHECK(q.dim() == 4 && q.shape() == k.shape() && q.shape() == v.shape(),
           "attention: q, k and v must share one [B, H, N, D] shape, got ", q.shape(), ", ", k.shape(), ", ", v.shape());
  const int64_t n = q.size(2), d = q.size(3);
  RF_CHECK(d >= 1 && d <= 64, "attention: head dimension ", d, " is not in 1..64");
  RF_CHECK(window >= 0, "attention: negative window");
  AttentionGeometry g{q.size(0) * q.size(1), n, d, window == 0 || window > n ? n : window, 1.f / std::sqrt((float)d)};
  Tensor out = empty_like(q), lse = empty({g.bh, n}, dev);
  if (n > 0) {
    if (dev == Device::CUDA)
      RF_GPU_OP("attention", (q, k, v),
                gpu::attention_forward(g, q.data(), k.data(), v.data(), out.data(), lse.data()));
    else
      cpu::attention_forward(g, q.data(), k.data(), v.data(), out.data(), lse.data());
  }
  if (needs_grad({q, k, v})) {
    Tensor os = out.detach();
    record(out, "attention", {q, k, v}, [g, q, k, v, os, lse](const Tensor& go) {
      Tensor gq = empty_like(q), gk = empty_like(k), gv = empty_like(v);
      if (g.n > 0) {
        if (go.is_cuda())
          RF_GPU(gpu::attention_backward(g, q.data(), k.data(), v.data(), os.data(), lse.data(), go.data(), gq.data(),
                                         gk.data(), gv.data()));
        else
          cpu::attention_backward(g, q.data(), k.data(), v.data(), os.data(), lse.data(), go.data(), gq.data(),
                                  gk.data(), gv.data());
      }
      return std::vector<Tensor>{gq, gk, gv};
    });
  }
  return out;
}

}  // namespace rf
