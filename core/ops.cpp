#include "core/ops.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace zo {

void linear(float* y, const float* x, const float* W, const float* b, int M, int N, int K,
            bool accumulate) {
  float beta = accumulate ? 1.0f : 0.0f;
  if (b) {
    // Seed y with the bias (or add it to what is there) and let sgemm accumulate: one pass over y.
#pragma omp parallel for schedule(static) if (size_t(M) * N > (1 << 15))
    for (int m = 0; m < M; m++) {
      float* yr = y + size_t(m) * N;
      if (accumulate) {
        for (int n = 0; n < N; n++) yr[n] += b[n];
      } else {
        std::memcpy(yr, b, sizeof(float) * size_t(N));
      }
    }
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, W, K, beta, y, N);
}

void layernorm(float* out, const float* x, const float* w, const float* b, int M, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) {
    const float* xr = x + size_t(m) * C;
    float* o = out + size_t(m) * C;
    // Two passes in f32 like torch (mean, then centred variance); f64 accumulators cost nothing here.
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += xr[c];
    float mean = float(s / C);
    double v = 0;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; c++) {
      float d = xr[c] - mean;
      v += double(d) * d;
    }
    float rstd = 1.0f / std::sqrt(float(v / C) + eps);
    if (b) {
#pragma omp simd
      for (int c = 0; c < C; c++) o[c] = (xr[c] - mean) * rstd * w[c] + b[c];
    } else {
#pragma omp simd
      for (int c = 0; c < C; c++) o[c] = (xr[c] - mean) * rstd * w[c];
    }
  }
}

void rmsnorm(float* out, const float* x, const float* w, int M, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) {
    const float* xr = x + size_t(m) * C;
    float* o = out + size_t(m) * C;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += double(xr[c]) * xr[c];
    float r = 1.0f / std::sqrt(float(s / C) + eps);
#pragma omp simd
    for (int c = 0; c < C; c++) o[c] = w[c] * (xr[c] * r);
  }
}

void relu_inplace(float* x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void swiglu(float* out, const float* gu, int M, int F) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) {
    const float* g = gu + size_t(m) * 2 * F;
    const float* u = g + F;
    float* o = out + size_t(m) * F;
#pragma omp simd
    for (int f = 0; f < F; f++) o[f] = g[f] / (1.0f + std::exp(-g[f])) * u[f];
  }
}

void add_inplace(float* x, const float* y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (size_t i = 0; i < n; i++) x[i] += y[i];
}

void rope_tables(float* cos_t, float* sin_t, int max_pos, int head_dim, float theta) {
  int half = head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  // torch: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), all in float32.
  for (int i = 0; i < half; i++) {
    float expo = float(2 * i) / float(head_dim);
    inv_freq[size_t(i)] = 1.0f / std::pow(theta, expo);
  }
  for (int p = 0; p < max_pos; p++)
    for (int i = 0; i < half; i++) {
      float ang = float(p) * inv_freq[size_t(i)];  // f32 product, as torch's matmul of f32 tensors
      cos_t[size_t(p) * half + i] = float(std::cos(double(ang)));
      sin_t[size_t(p) * half + i] = float(std::sin(double(ang)));
    }
}

void rope_apply(float* x, int M, int ld, int n_heads, int head_dim, const int32_t* pos,
                const float* cos_t, const float* sin_t) {
  int half = head_dim / 2;
#pragma omp parallel for schedule(static) if (M > 16)
  for (int m = 0; m < M; m++) {
    const float* c = cos_t + size_t(pos[m]) * half;
    const float* s = sin_t + size_t(pos[m]) * half;
    for (int h = 0; h < n_heads; h++) {
      float* x1 = x + size_t(m) * ld + size_t(h) * head_dim;
      float* x2 = x1 + half;
#pragma omp simd
      for (int i = 0; i < half; i++) {
        float a = x1[i], b = x2[i];
        x1[i] = a * c[i] - b * s[i];
        x2[i] = b * c[i] + a * s[i];
      }
    }
  }
}

namespace {

constexpr int kQTile = 64;

// One (sequence, head, query tile) of causal attention. S = scale * Q K^T over the visible kv
// prefix, softmax row by row, O = P V. sgemm runs single-threaded here: OpenBLAS's OpenMP build
// sees it is inside a parallel region.
void attention_tile(const AttnArgs& a, int h, int i0, int i1, std::vector<float>& S) {
  const int D = a.head_dim;
  const int g = h / (a.n_heads / a.n_kv_heads);
  const int nq = i1 - i0;
  const int nk = std::min(a.n_kv, a.q_off + i1);  // keys visible to the last query of the tile
  if (nk <= 0) {
    for (int i = i0; i < i1; i++) std::memset(a.out + size_t(i) * a.ldo + size_t(h) * D, 0, sizeof(float) * D);
    return;
  }
  if (S.size() < size_t(nq) * nk) S.resize(size_t(nq) * nk);
  const float* q = a.q + size_t(i0) * a.ldq + size_t(h) * D;
  const float* k = a.k + size_t(g) * D;
  const float* v = a.v + size_t(g) * D;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, D, a.scale, q, a.ldq, k, a.ldk, 0.0f,
              S.data(), nk);
  for (int r = 0; r < nq; r++) {
    float* s = S.data() + size_t(r) * nk;
    int vis = std::min(nk, a.q_off + i0 + r + 1);  // causal: kv rows 0..q_off+i
    float mx = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < vis; j++) mx = std::max(mx, s[j]);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < vis; j++) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < vis; j++) s[j] *= inv;
    for (int j = vis; j < nk; j++) s[j] = 0.0f;
  }
  float* o = a.out + size_t(i0) * a.ldo + size_t(h) * D;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, 1.0f, S.data(), nk, v, a.ldv, 0.0f,
              o, a.ldo);
}

}  // namespace

void attention(const AttnArgs* seqs, int n_seqs) {
  // Flatten (sequence, head, tile) into one task list so short and long sequences balance.
  std::vector<int> task_seq, task_h, task_i0;
  for (int s = 0; s < n_seqs; s++)
    for (int h = 0; h < seqs[s].n_heads; h++)
      for (int i0 = 0; i0 < seqs[s].n_q; i0 += kQTile) {
        task_seq.push_back(s);
        task_h.push_back(h);
        task_i0.push_back(i0);
      }
  const int n_tasks = int(task_seq.size());
#pragma omp parallel
  {
    thread_local std::vector<float> S;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < n_tasks; t++) {
      const AttnArgs& a = seqs[task_seq[size_t(t)]];
      int i0 = task_i0[size_t(t)];
      attention_tile(a, task_h[size_t(t)], i0, std::min(a.n_q, i0 + kQTile), S);
    }
  }
}

void logsumexp_rows(double* lse, const float* logits, int M, int V) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) {
    const float* r = logits + size_t(m) * V;
    float mx = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < V; j++) mx = std::max(mx, r[j]);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < V; j++) s += double(std::exp(r[j] - mx));
    lse[m] = double(mx) + std::log(s);
  }
}

}  // namespace zo
