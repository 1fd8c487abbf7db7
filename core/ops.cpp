#include "core/ops.h"

#include "core/error.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace zo {

namespace {

// Below this many elements a kernel runs on the calling thread: forking a team costs a few
// microseconds on an idle machine, and a whole scheduler time slice when another process holds
// the other core (decoding one token runs ~10 kernels per layer).
constexpr size_t kParallelMin = size_t(1) << 16;
// exp(x) in plain arithmetic, so that loops over it vectorise (glibc's vector expf is declared
// only under -ffast-math). exp(x) = 2^n * e^r with n = round(x / ln 2), |r| <= ln2/2, and e^r by
// its degree-7 Taylor polynomial (truncation < 7e-9 relative, under f32 rounding). x is clamped
// to [-87, 88]: below, the result is ~1e-38 instead of a subnormal; above, f32 overflows anyway.
// NaN stays NaN (through r), and its n becomes 0 before the int conversion (NaN's would be UB).
inline float exp_fast(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  float n = std::nearbyint(x * 1.44269504088896341f);
  n = n == n ? n : 0.0f;
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;  // ln2 split in two
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
}  // namespace

void linear(float* y, const float* x, const float* W, const float* b, int M, int N, int K,
            bool accumulate) {
  float beta = accumulate ? 1.0f : 0.0f;
  if (b) {
    // Seed y with the bias (or add it to what is there) and let sgemm accumulate: one pass over y.
#pragma omp parallel for schedule(static) if (size_t(M) * N > kParallelMin)
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
  if (M == 1) {
    // One token (decoding): y = W x is a matrix-vector product. sgemm would pack all of W first,
    // doubling the memory traffic of an operation that is nothing but memory traffic.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, W, K, x, 1, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, W, K, beta, y, N);
}

void layernorm(float* out, const float* x, const float* w, const float* b, int M, int C, float eps) {
#pragma omp parallel for schedule(static) if (size_t(M) * C > kParallelMin)
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
#pragma omp parallel for schedule(static) if (size_t(M) * C > kParallelMin)
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
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void swiglu(float* out, const float* gu, int M, int F) {
#pragma omp parallel for schedule(static) if (size_t(M) * F > kParallelMin)
  for (int m = 0; m < M; m++) {
    const float* g = gu + size_t(m) * 2 * F;
    const float* u = g + F;
    float* o = out + size_t(m) * F;
#pragma omp simd
    for (int f = 0; f < F; f++) o[f] = g[f] / (1.0f + exp_fast(-g[f])) * u[f];
  }
}

void add_inplace(float* x, const float* y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
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
#pragma omp parallel for schedule(static) if (size_t(M) * n_heads * head_dim > kParallelMin)
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


// Row-wise causal softmax of a (nq x nk) score tile in place; row r sees kv rows 0..q_off+i0+r.
// Columns past a row's horizon become exact zeros so the P V product can run over the full tile.
void causal_softmax(float* S, int ldS, int nq, int nk, int first_vis) {
  for (int r = 0; r < nq; r++) {
    float* s = S + size_t(r) * ldS;
    int vis = std::min(nk, first_vis + r);
    float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < vis; j++) mx = s[j] > mx ? s[j] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < vis; j++) {
      s[j] = exp_fast(s[j] - mx);
      sum += s[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < vis; j++) s[j] *= inv;
    for (int j = vis; j < ldS; j++) s[j] = 0.0f;
  }
}

// Register-blocked tile kernels for the common head sizes. With D fixed at compile time the
// accumulators live in vector registers: S = Q Kt reads each packed key column once per 4 query
// rows; O = P V reads each value row once per RB query rows. (OpenBLAS sgemm on these shapes,
// K = 64, spends most of its time packing; this runs ~3x faster on AVX-512.)
template <int D>
struct TileKernel {
  static constexpr int RB_S = 4, JB = 32;        // S: 4 rows x 32 columns of accumulators
  static constexpr int RB_O = D <= 64 ? 4 : 2;   // O: RB_O rows x D columns of accumulators

  // Q: [64][D] packed, pre-scaled, zero rows past nq. Kt: [D][ldk] (keys transposed, zero
  // padded). S: [64][ncols], ncols a multiple of JB.
  static void scores(float* S, const float* Q, const float* Kt, int nq, int ncols, int ldk) {
    for (int r0 = 0; r0 < nq; r0 += RB_S)
      for (int j0 = 0; j0 < ncols; j0 += JB) {
        float acc[RB_S][JB] = {};
        for (int d = 0; d < D; d++) {
          const float* kt = Kt + size_t(d) * ldk + j0;
#pragma GCC unroll 4
          for (int r = 0; r < RB_S; r++) {
            const float qv = Q[size_t(r0 + r) * D + d];
#pragma omp simd
            for (int jj = 0; jj < JB; jj++) acc[r][jj] += qv * kt[jj];
          }
        }
        for (int r = 0; r < RB_S && r0 + r < nq; r++)
          std::memcpy(S + size_t(r0 + r) * ncols + j0, acc[r], sizeof(float) * JB);
      }
  }
  // O[r] = sum_j P[r][j] V[j] for the nq rows; V rows have stride ldv.
  static void combine(float* O, int ldo, const float* P, int ldp, const float* V, int ldv, int nq, int nk) {
    for (int r0 = 0; r0 < nq; r0 += RB_O) {
      const int nr = std::min(RB_O, nq - r0);
      float acc[RB_O][D] = {};
      for (int j = 0; j < nk; j++) {
        const float* v = V + size_t(j) * ldv;
#pragma GCC unroll 4
        for (int r = 0; r < RB_O; r++) {
          const float p = r < nr ? P[size_t(r0 + r) * ldp + j] : 0.0f;
#pragma omp simd
          for (int dd = 0; dd < D; dd++) acc[r][dd] += p * v[dd];
        }
      }
      for (int r = 0; r < nr; r++) std::memcpy(O + size_t(r0 + r) * ldo, acc[r], sizeof(float) * D);
    }
  }
};

struct AttnScratch {
  std::vector<float> S, Q, Kt;
};

// One (sequence, head) of causal attention, query tile by query tile: S = scale * Q K^T over the
// keys visible to the tile, softmax row by row, O = P V. The head's keys are transposed once.
template <int D>
void attention_head_fixed(const AttnArgs& a, int h, AttnScratch& sc) {
  using K = TileKernel<D>;
  const int g = h / (a.n_heads / a.n_kv_heads);
  const int ldk = (a.n_kv + K::JB - 1) / K::JB * K::JB;
  if (sc.Q.size() < size_t(kQTile) * D) sc.Q.resize(size_t(kQTile) * D);
  if (sc.Kt.size() < size_t(D) * ldk) sc.Kt.resize(size_t(D) * ldk);
  if (sc.S.size() < size_t(kQTile) * ldk) sc.S.resize(size_t(kQTile) * ldk);
  float* Kt = sc.Kt.data();
  // Kt[d][j] = K[j][d], 16 keys at a time: contiguous 16-float writes per d.
  for (int j0 = 0; j0 < ldk; j0 += 16)
    for (int d = 0; d < D; d++) {
      float* dst = Kt + size_t(d) * ldk + j0;
      for (int jj = 0; jj < 16; jj++)
        dst[jj] = j0 + jj < a.n_kv ? a.k[size_t(j0 + jj) * a.ldk + size_t(g) * D + d] : 0.0f;
    }
  float* Q = sc.Q.data();
  for (int i0 = 0; i0 < a.n_q; i0 += kQTile) {
    const int i1 = std::min(a.n_q, i0 + kQTile), nq = i1 - i0;
    const int nk = std::min(a.n_kv, a.q_off + i1);  // keys visible to the last query of the tile
    const int ldt = std::min(ldk, (nk + K::JB - 1) / K::JB * K::JB);
    for (int r = 0; r < K::RB_S * ((nq + K::RB_S - 1) / K::RB_S); r++) {
      float* qr = Q + size_t(r) * D;
      if (r < nq) {
        const float* src = a.q + size_t(i0 + r) * a.ldq + size_t(h) * D;
#pragma omp simd
        for (int d = 0; d < D; d++) qr[d] = src[d] * a.scale;
      } else {
        std::memset(qr, 0, sizeof(float) * D);
      }
    }
    K::scores(sc.S.data(), Q, Kt, nq, ldt, ldk);
    causal_softmax(sc.S.data(), ldt, nq, nk, a.q_off + i0 + 1);
    K::combine(a.out + size_t(i0) * a.ldo + size_t(h) * D, a.ldo, sc.S.data(), ldt, a.v + size_t(g) * D, a.ldv, nq,
               nk);
  }
}

// Any head size: the same steps through OpenBLAS sgemm (single-threaded inside our parallel
// region: the OpenMP build of OpenBLAS sees it is nested).
void attention_tile_gemm(const AttnArgs& a, int h, int i0, int i1, AttnScratch& sc) {
  const int D = a.head_dim;
  const int g = h / (a.n_heads / a.n_kv_heads);
  const int nq = i1 - i0;
  const int nk = std::min(a.n_kv, a.q_off + i1);
  if (sc.S.size() < size_t(nq) * nk) sc.S.resize(size_t(nq) * nk);
  const float* q = a.q + size_t(i0) * a.ldq + size_t(h) * D;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, D, a.scale, q, a.ldq, a.k + size_t(g) * D, a.ldk,
              0.0f, sc.S.data(), nk);
  causal_softmax(sc.S.data(), nk, nq, nk, a.q_off + i0 + 1);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, 1.0f, sc.S.data(), nk, a.v + size_t(g) * D,
              a.ldv, 0.0f, a.out + size_t(i0) * a.ldo + size_t(h) * D, a.ldo);
}

void attention_head(const AttnArgs& a, int h, AttnScratch& sc) {
  switch (a.head_dim) {
    case 64: return attention_head_fixed<64>(a, h, sc);
    case 128: return attention_head_fixed<128>(a, h, sc);
    default:
      for (int i0 = 0; i0 < a.n_q; i0 += kQTile) attention_tile_gemm(a, h, i0, std::min(a.n_q, i0 + kQTile), sc);
  }
}

}  // namespace

void attention(const AttnArgs* seqs, int n_seqs) {
  // One task per (sequence, head), scheduled dynamically so short and long sequences balance.
  thread_local std::vector<int> task_seq, task_h;  // reused across calls: no allocation per block
  task_seq.clear();
  task_h.clear();
  for (int s = 0; s < n_seqs; s++)
    for (int h = 0; h < seqs[s].n_heads; h++) {
      if (seqs[s].n_q <= 0) continue;
      ZO_CHECK(seqs[s].n_kv >= seqs[s].q_off + seqs[s].n_q, "attention: {} queries at offset {} but {} keys",
               seqs[s].n_q, seqs[s].q_off, seqs[s].n_kv);
      task_seq.push_back(s);
      task_h.push_back(h);
    }
  const int n_tasks = int(task_seq.size());
  // The vectors are the calling thread's; the team reads them through these pointers.
  const int* t_seq = task_seq.data();
  const int* t_head = task_h.data();
  size_t work = 0;  // multiply-adds, roughly
  for (int s = 0; s < n_seqs; s++) work += size_t(seqs[s].n_q) * seqs[s].n_kv * seqs[s].n_heads * seqs[s].head_dim;
#pragma omp parallel if (work > kParallelMin && n_tasks > 1)
  {
    thread_local AttnScratch sc;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < n_tasks; t++) attention_head(seqs[t_seq[t]], t_head[t], sc);
  }
}

void logsumexp_rows(double* lse, const float* logits, int M, int V) {
#pragma omp parallel for schedule(static) if (size_t(M) * V > kParallelMin)
  for (int m = 0; m < M; m++) {
    const float* r = logits + size_t(m) * V;
    float mx = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < V; j++) mx = std::max(mx, r[j]);
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < V; j++) s += double(exp_fast(r[j] - mx));
    lse[m] = double(mx) + std::log(s);
  }
}

}  // namespace zo
