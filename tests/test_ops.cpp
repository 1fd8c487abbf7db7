// CPU kernels against float64 references computed here from the definitions (the oracle is the
// math, evaluated in double precision, not the kernels' own code paths).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/ops.h"

namespace zo {
namespace {

std::vector<float> randn(size_t n, uint64_t seed, float sd = 1.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Causal attention in float64: out[i] = sum_j softmax_j(scale q_i.k_j) v_j over j <= q_off + i.
std::vector<double> attention_ref(const AttnArgs& a) {
  const int D = a.head_dim, G = a.n_heads / a.n_kv_heads;
  std::vector<double> out(size_t(a.n_q) * a.n_heads * D);
  for (int h = 0; h < a.n_heads; h++)
    for (int i = 0; i < a.n_q; i++) {
      int vis = a.q_off + i + 1;
      std::vector<double> s(static_cast<size_t>(vis));
      double mx = -1e300;
      for (int j = 0; j < vis; j++) {
        double d = 0;
        for (int k = 0; k < D; k++)
          d += double(a.q[size_t(i) * a.ldq + size_t(h) * D + k]) * a.k[size_t(j) * a.ldk + size_t(h / G) * D + k];
        s[size_t(j)] = d * a.scale;
        mx = std::max(mx, s[size_t(j)]);
      }
      double z = 0;
      for (auto& x : s) z += (x = std::exp(x - mx));
      for (int k = 0; k < D; k++) {
        double o = 0;
        for (int j = 0; j < vis; j++) o += s[size_t(j)] / z * a.v[size_t(j) * a.ldv + size_t(h / G) * D + k];
        out[(size_t(i) * a.n_heads + h) * D + k] = o;
      }
    }
  return out;
}

struct AttnCase {
  int n_q, n_kv, heads, kv_heads, D;
};

class Attention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(Attention, MatchesFloat64) {
  const AttnCase c = GetParam();
  const int ldq = c.heads * c.D, ldkv = c.kv_heads * c.D;
  auto q = randn(size_t(c.n_q) * ldq, 1), k = randn(size_t(c.n_kv) * ldkv, 2), v = randn(size_t(c.n_kv) * ldkv, 3);
  std::vector<float> out(size_t(c.n_q) * ldq, -7.0f);
  AttnArgs a{out.data(), ldq, q.data(), ldq, k.data(), ldkv, v.data(), ldkv, c.n_q, c.n_kv, c.n_kv - c.n_q,
             c.heads, c.kv_heads, c.D, 1.0f / std::sqrt(float(c.D))};
  attention(&a, 1);
  auto ref = attention_ref(a);
  double mx = 0;
  for (size_t i = 0; i < out.size(); i++) mx = std::max(mx, std::fabs(out[i] - ref[i]));
  EXPECT_LT(mx, 2e-5) << "n_q " << c.n_q << " n_kv " << c.n_kv << " D " << c.D;
}

// Head sizes with a register-blocked kernel (64, 128) and without (24: the sgemm path); tiles
// that are partial, a KV-cache offset (n_kv > n_q), single-token decoding, and GQA.
INSTANTIATE_TEST_SUITE_P(Shapes, Attention,
                         ::testing::Values(AttnCase{1, 1, 2, 2, 64}, AttnCase{7, 7, 3, 1, 64}, AttnCase{64, 64, 2, 2, 64},
                                           AttnCase{130, 130, 4, 2, 64}, AttnCase{1, 77, 4, 4, 64},
                                           AttnCase{5, 200, 2, 1, 64}, AttnCase{70, 70, 2, 2, 128},
                                           AttnCase{3, 40, 2, 2, 128}, AttnCase{100, 100, 3, 3, 24},
                                           AttnCase{9, 33, 4, 2, 24}));

TEST(Attention, PackedSequencesDoNotSeeEachOther) {
  // Two sequences in one call: each must equal its own single-sequence result.
  const int D = 64, H = 2, ld = H * D;
  auto q = randn(size_t(50) * ld, 4), k = randn(size_t(50) * ld, 5), v = randn(size_t(50) * ld, 6);
  std::vector<float> both(size_t(50) * ld), one(size_t(50) * ld);
  AttnArgs a0{both.data(), ld, q.data(), ld, k.data(), ld, v.data(), ld, 20, 20, 0, H, H, D, 0.125f};
  AttnArgs a1{both.data() + 20 * ld, ld, q.data() + 20 * ld, ld, k.data() + 20 * ld, ld, v.data() + 20 * ld, ld, 30, 30, 0, H, H, D, 0.125f};
  AttnArgs two[2] = {a0, a1};
  attention(two, 2);
  AttnArgs s1 = a1;
  s1.out = one.data();
  attention(&s1, 1);
  for (int i = 0; i < 30 * ld; i++) EXPECT_EQ(both[size_t(20 * ld + i)], one[size_t(i)]);
}

TEST(Norms, LayerNormAndRmsNormMatchFloat64) {
  const int M = 5, C = 576;
  auto x = randn(size_t(M) * C, 7, 3.0f), w = randn(size_t(C), 8), b = randn(size_t(C), 9);
  std::vector<float> ln(size_t(M) * C), rms(size_t(M) * C);
  layernorm(ln.data(), x.data(), w.data(), b.data(), M, C, 1e-5f);
  rmsnorm(rms.data(), x.data(), w.data(), M, C, 1e-6f);
  for (int m = 0; m < M; m++) {
    double mean = 0, var = 0, ss = 0;
    for (int c = 0; c < C; c++) mean += x[size_t(m) * C + c];
    mean /= C;
    for (int c = 0; c < C; c++) {
      double d = x[size_t(m) * C + c] - mean;
      var += d * d;
      ss += double(x[size_t(m) * C + c]) * x[size_t(m) * C + c];
    }
    var /= C;
    for (int c = 0; c < C; c++) {
      double xv = x[size_t(m) * C + c];
      EXPECT_NEAR(ln[size_t(m) * C + c], (xv - mean) / std::sqrt(var + 1e-5) * w[size_t(c)] + b[size_t(c)], 1e-5);
      EXPECT_NEAR(rms[size_t(m) * C + c], xv / std::sqrt(ss / C + 1e-6) * w[size_t(c)], 1e-5);
    }
  }
}

TEST(Rope, HalfSplitRotationMatchesFloat64) {
  const int D = 64, H = 3, M = 4, maxpos = 600;
  std::vector<float> cs(size_t(maxpos) * D / 2), sn(cs.size());
  rope_tables(cs.data(), sn.data(), maxpos, D, 10000.0f);
  auto x = randn(size_t(M) * H * D, 10), y = x;
  std::vector<int32_t> pos = {0, 1, 17, 599};
  rope_apply(y.data(), M, H * D, H, D, pos.data(), cs.data(), sn.data());
  for (int m = 0; m < M; m++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < D / 2; i++) {
        double ang = pos[size_t(m)] * std::pow(10000.0, -2.0 * i / D);
        double a = x[(size_t(m) * H + h) * D + i], b = x[(size_t(m) * H + h) * D + i + D / 2];
        // f32 angles (as torch computes them) drift by ~pos * 2^-24 rad from the f64 ones
        EXPECT_NEAR(y[(size_t(m) * H + h) * D + i], a * std::cos(ang) - b * std::sin(ang), 1e-4);
        EXPECT_NEAR(y[(size_t(m) * H + h) * D + i + D / 2], b * std::cos(ang) + a * std::sin(ang), 1e-4);
      }
}

TEST(Activations, SwigluAndLogsumexpMatchFloat64) {
  const int M = 3, F = 1000;
  auto gu = randn(size_t(M) * 2 * F, 11, 6.0f);
  std::vector<float> out(size_t(M) * F);
  swiglu(out.data(), gu.data(), M, F);
  for (int m = 0; m < M; m++)
    for (int f = 0; f < F; f++) {
      double g = gu[size_t(m) * 2 * F + f], u = gu[size_t(m) * 2 * F + F + f];
      double want = g / (1 + std::exp(-g)) * u;
      EXPECT_NEAR(out[size_t(m) * F + f], want, 1e-6 * (1 + std::fabs(want)));
    }
  auto lg = randn(size_t(M) * 50000, 12, 4.0f);
  std::vector<double> lse(static_cast<size_t>(M));
  logsumexp_rows(lse.data(), lg.data(), M, 50000);
  for (int m = 0; m < M; m++) {
    double mx = -1e300, s = 0;
    for (int j = 0; j < 50000; j++) mx = std::max(mx, double(lg[size_t(m) * 50000 + j]));
    for (int j = 0; j < 50000; j++) s += std::exp(lg[size_t(m) * 50000 + j] - mx);
    EXPECT_NEAR(lse[size_t(m)], mx + std::log(s), 1e-6);
  }
}

class Linear : public ::testing::TestWithParam<int> {};

// M = 1 takes the matrix-vector path (decoding), larger M the sgemm path.
TEST_P(Linear, MatchesFloat64WithBiasAndAccumulate) {
  const int M = GetParam(), N = 70, K = 129;
  auto x = randn(size_t(M) * K, 13), W = randn(size_t(N) * K, 14), b = randn(size_t(N), 15), y0 = randn(size_t(M) * N, 16);
  std::vector<float> y = y0;
  linear(y.data(), x.data(), W.data(), b.data(), M, N, K, /*accumulate=*/true);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = y0[size_t(m) * N + n] + b[size_t(n)];
      for (int k = 0; k < K; k++) s += double(x[size_t(m) * K + k]) * W[size_t(n) * K + k];
      EXPECT_NEAR(y[size_t(m) * N + n], s, 1e-4);
    }
  std::vector<float> z(size_t(M) * N);
  linear(z.data(), x.data(), W.data(), nullptr, M, N, K);  // no bias, no accumulate
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = 0;
      for (int k = 0; k < K; k++) s += double(x[size_t(m) * K + k]) * W[size_t(n) * K + k];
      EXPECT_NEAR(z[size_t(m) * N + n], s, 1e-4);
    }
}

INSTANTIATE_TEST_SUITE_P(Rows, Linear, ::testing::Values(1, 2, 33));

}  // namespace
}  // namespace zo
