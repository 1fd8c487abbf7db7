// Perturbation directions: Philox against Random123 and its published known-answer vector, the
// float32 Box-Muller mapping against tools/zo_philox.py (an independent float64 implementation of
// the written mapping), range consistency, and the update kernels against float64 math.
#include <Random123/philox.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/perturb.h"

using namespace zo;

TEST(Philox, KnownAnswerAndRandom123) {
  uint32_t c[4] = {0, 0, 0, 0};
  rng::philox4x32_10(c, 0, 0);
  // Salmon et al. (SC'11) known-answer vector for philox4x32-10, zero counter and key.
  EXPECT_EQ(c[0], 0x6627e8d5u);
  EXPECT_EQ(c[1], 0xe169c58du);
  EXPECT_EQ(c[2], 0xbc57ac4cu);
  EXPECT_EQ(c[3], 0x9b00dbd8u);
  std::mt19937_64 g(7);
  r123::Philox4x32_R<10> ref;
  for (int t = 0; t < 2000; t++) {
    uint64_t a = g(), b = g(), k = g();
    r123::Philox4x32_R<10>::ctr_type rc = {{uint32_t(a), uint32_t(a >> 32), uint32_t(b), uint32_t(b >> 32)}};
    r123::Philox4x32_R<10>::key_type rk = {{uint32_t(k), uint32_t(k >> 32)}};
    auto want = ref(rc, rk);
    uint32_t got[4] = {rc.v[0], rc.v[1], rc.v[2], rc.v[3]};
    rng::philox4x32_10(got, uint32_t(k), uint32_t(k >> 32));
    for (int i = 0; i < 4; i++) ASSERT_EQ(got[i], want.v[i]) << "trial " << t;
  }
}

TEST(Philox, TensorIdIsFnv1a64OfTheName) {
  EXPECT_EQ(rng::fnv1a64("", 0), 0xcbf29ce484222325ull);   // FNV-1a 64 offset basis
  EXPECT_EQ(rng::fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);  // published FNV-1a 64 test vector
  std::string n = "model.embed_tokens.weight";
  EXPECT_EQ(rng::fnv1a64(n.data(), n.size()), 0xa88fd795d5c6d156ull);
}

struct Golden {
  uint64_t seed, tid, index;
  double z, rademacher;
};
// From `python3 tools/zo_philox.py --golden` (float64, libm log/cos/sin).
const Golden kGolden[] = {
    {0x0000000000000000ull, 0xa88fd795d5c6d156ull, 0ull, -0.44864812976002522, -1},
    {0x0000000000000000ull, 0xa88fd795d5c6d156ull, 1ull, 1.0698457562787751, 1},
    {0x0000000000000000ull, 0xa88fd795d5c6d156ull, 2ull, 1.079177491253331, 1},
    {0x0000000000000000ull, 0xa88fd795d5c6d156ull, 3ull, -1.0970733156007657, -1},
    {0x0000000000000000ull, 0xa88fd795d5c6d156ull, 4ull, -0.10706744330901274, -1},
    {0x0000000000000000ull, 0xa88fd795d5c6d156ull, 5ull, 0.56329497830097008, 1},
    {0x0000000000000000ull, 0xa88fd795d5c6d156ull, 6ull, -0.22063486153576073, 1},
    {0x0000000000000000ull, 0xa88fd795d5c6d156ull, 7ull, 1.1867145185277066, 1},
    {0x000000000000002aull, 0x3a296639dc11febbull, 0ull, -0.20966038510180238, 1},
    {0x000000000000002aull, 0x3a296639dc11febbull, 1ull, 1.8156285930528666, 1},
    {0x000000000000002aull, 0x3a296639dc11febbull, 2ull, -0.56666599542399521, -1},
    {0x000000000000002aull, 0x3a296639dc11febbull, 3ull, 0.81154761428421418, 1},
    {0x000000000000002aull, 0x3a296639dc11febbull, 1000001ull, -1.1282192084054525, -1},
    {0x000000000000002aull, 0x3a296639dc11febbull, 1000002ull, 0.72734421225364987, -1},
    {0x000000000000002aull, 0x3a296639dc11febbull, 123456789ull, -0.78628955359640418, -1},
    {0xffffffffffffffffull, 0xab67eb515e1b6f0dull, 0ull, 0.68011710776944179, -1},
    {0xffffffffffffffffull, 0xab67eb515e1b6f0dull, 5ull, -0.19664488168367342, -1},
    {0xffffffffffffffffull, 0xab67eb515e1b6f0dull, 8589934599ull, 1.8075362479473753, 1},
};

TEST(Perturb, MatchesTheIndependentPythonMapping) {
  for (auto& g : kGolden) {
    float z, r;
    fill_z(&z, g.seed, g.tid, g.index, 1, Dist::Gaussian);
    fill_z(&r, g.seed, g.tid, g.index, 1, Dist::Rademacher);
    EXPECT_NEAR(z, g.z, 4e-7 * std::max(1.0, std::fabs(g.z))) << "index " << g.index;
    EXPECT_EQ(r, float(g.rademacher));
  }
}

// The float32 mapping against float64 Box-Muller from the same Philox words, over many elements.
TEST(Perturb, Float32BoxMullerWithinAFewUlpOfFloat64) {
  const size_t n = 1 << 18;
  std::vector<float> z(n);
  fill_z(z.data(), 99, 0x1234, 0, n, Dist::Gaussian);
  double worst = 0, sum = 0, sum2 = 0;
  for (size_t j = 0; j < n / 4; j++) {
    uint32_t c[4] = {uint32_t(j), 0, 0x1234, 0};
    rng::philox4x32_10(c, 99, 0);
    for (int lane = 0; lane < 4; lane++) {
      uint32_t wa = c[lane < 2 ? 0 : 2], wb = c[lane < 2 ? 1 : 3];
      double u1 = double((wa >> 8) + 1) * std::ldexp(1.0, -24), u2 = double(wb >> 8) * std::ldexp(1.0, -24);
      double r = std::sqrt(-2 * std::log(u1)), a = 2 * M_PI * u2;
      double want = lane % 2 == 0 ? r * std::cos(a) : r * std::sin(a);
      double got = z[4 * j + size_t(lane)];
      worst = std::max(worst, std::fabs(got - want) / std::max(1.0, std::fabs(want)));
      sum += got;
      sum2 += got * got;
    }
  }
  EXPECT_LT(worst, 5e-7);
  EXPECT_NEAR(sum / n, 0.0, 5.0 / std::sqrt(double(n)));
  EXPECT_NEAR(sum2 / n, 1.0, 5.0 * std::sqrt(2.0 / double(n)));
}

// The float32 mapping's definition, step by step in float arithmetic (docs/ARCHITECTURE.md,
// "Perturbations"): u1 = ((wa >> 8) + 1) 2^-24 = m 2^e with m in [1, 2) halved when above sqrt(2)'s
// float; 4 u2 = floor + fraction, the fraction less 1 above one half. core/philox.h computes the
// same with integer arithmetic on the bits (faster: fewer vector operations); every input is
// checked, 2^24 for each half (r depends on wa only, the sine and cosine on wb only).
namespace spec {
float log_unit(float u) {
  uint32_t b = rng::float_to_bits(u);
  int e = int((b >> 23) & 0xffu) - 127;
  float m = rng::bits_to_float((b & 0x7fffffu) | 0x3f800000u);
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e += big ? 1 : 0;
  const float f = m - 1.0f, s = f / (2.0f + f), s2 = s * s;
  float p = std::fma(s2, 1.0f / 11.0f, 1.0f / 9.0f);
  p = std::fma(s2, p, 1.0f / 7.0f);
  p = std::fma(s2, p, 1.0f / 5.0f);
  p = std::fma(s2, p, 1.0f / 3.0f);
  const float logm = std::fma(2.0f * s * s2, p, 2.0f * s), fe = float(e);
  return std::fma(fe, 0.693145751953125f, std::fma(fe, 1.428606820309417e-06f, logm));
}
void sincos_2pi(float u, float* s_out, float* c_out) {
  const float t = u * 4.0f, qf = std::floor(t);
  float r = t - qf;
  int q = int(qf);
  if (r > 0.5f) r -= 1.0f, q += 1;
  const float r2 = r * r;
  float sp = std::fma(r2, -3.598843235212084e-06f, 1.6044118478735975e-04f);
  for (float a : {-4.681754135318687e-03f, 7.969262624616703e-02f, -6.459640975062462e-01f, 1.5707963267948966f})
    sp = std::fma(r2, sp, a);
  float cp = std::fma(r2, 4.710874778818169e-07f, -2.5202042373060596e-05f);
  for (float b : {9.192602748394263e-04f, -2.0863480763352957e-02f, 2.53669507901048e-01f, -1.2337005501361697f, 1.0f})
    cp = std::fma(r2, cp, b);
  const float sn = r * sp, cs = cp;
  const float s_abs = (q & 1) ? cs : sn, c_abs = (q & 1) ? sn : cs;
  *s_out = (q & 2) ? -s_abs : s_abs;
  *c_out = ((q + 1) & 2) ? -c_abs : c_abs;
}
}  // namespace spec

TEST(Perturb, BoxMullerMatchesItsFloatDefinitionOnEveryInput) {
  size_t bad_ln = 0, bad_sc = 0;
  for (uint32_t k = 0; k < (1u << 24); k++) {
    const float u1 = float(k + 1) * 5.9604644775390625e-08f, u2 = float(k) * 5.9604644775390625e-08f;
    const float ln = rng::log_unit(u1), want_ln = spec::log_unit(u1);
    if (rng::float_to_bits(ln) != rng::float_to_bits(want_ln) && bad_ln++ < 5)
      ADD_FAILURE() << "ln(" << u1 << ") = " << ln << " against " << want_ln;
    float s, c, want_s, want_c;
    rng::sincos_2pi(k, &s, &c);
    spec::sincos_2pi(u2, &want_s, &want_c);
    if ((rng::float_to_bits(s) != rng::float_to_bits(want_s) || rng::float_to_bits(c) != rng::float_to_bits(want_c)) &&
        bad_sc++ < 5)
      ADD_FAILURE() << "sincos(2 pi " << u2 << ") = " << s << ", " << c << " against " << want_s << ", " << want_c;
  }
  EXPECT_EQ(bad_ln, 0u);
  EXPECT_EQ(bad_sc, 0u);
  std::mt19937 gen(5);  // and box_muller composes them as defined
  for (int i = 0; i < 100000; i++) {
    const uint32_t wa = uint32_t(gen()), wb = uint32_t(gen());
    float z0, z1, s, c;
    rng::box_muller(wa, wb, &z0, &z1);
    const float r = std::sqrt(-2.0f * spec::log_unit(float((wa >> 8) + 1) * 5.9604644775390625e-08f));
    spec::sincos_2pi(float(wb >> 8) * 5.9604644775390625e-08f, &s, &c);
    ASSERT_EQ(rng::float_to_bits(z0), rng::float_to_bits(r * c)) << wa << " " << wb;
    ASSERT_EQ(rng::float_to_bits(z1), rng::float_to_bits(r * s)) << wa << " " << wb;
  }
  // The bulk fill's vector loop (compiled separately from the scalar code above) gives the same bits.
  const size_t n = size_t(1) << 22;
  std::vector<float> bulk(n);
  fill_z(bulk.data(), 0xfeed, 0xbeef, 0, n, Dist::Gaussian);
  for (size_t j = 0; j < n / 4; j++) {
    float one[4];
    rng::z_block(one, 0xfeed, 0xbeef, j, Dist::Gaussian);
    ASSERT_EQ(std::memcmp(one, &bulk[4 * j], sizeof one), 0) << "counter block " << j;
  }
}

// A range is the same whichever piece of it is asked for (chunking, offsets, threads).
TEST(Perturb, RangesAreConsistent) {
  const size_t n = 200003;
  std::vector<float> all(n), part(n);
  fill_z(all.data(), 5, 77, 0, n, Dist::Gaussian);
  for (size_t b : {size_t(1), size_t(2), size_t(3), size_t(4097), size_t(70001)}) {
    size_t len = n - b - 5;
    fill_z(part.data(), 5, 77, b, len, Dist::Gaussian);
    for (size_t i = 0; i < len; i += 997) ASSERT_EQ(part[i], all[b + i]) << b << " " << i;
    ASSERT_EQ(part[len - 1], all[b + len - 1]);
  }
  std::vector<float> w(n, 0.5f), d(n);
  perturb_range(d.data(), w.data(), -1e-3f, 5, 77, 0, n, Dist::Gaussian);
  for (size_t i = 0; i < n; i += 331) ASSERT_EQ(d[i], 0.5f + (-1e-3f) * all[i]);
}

// Bulk fills run 16 or 32 Philox counters at a time; where the counter's low word wraps inside such a
// group (counter block j = 2^32, element 2^34), each element must still be the one-element fill's
// (the scalar path, held to the Python mapping above), for both distributions and every offset.
TEST(Perturb, BulkFillsAcrossTheCounterWordBoundary) {
  const size_t n = 1000, base = (size_t(1) << 34) - 517;
  std::vector<float> bulk(n);
  auto check = [&](size_t first, size_t len, Dist dist) {
    fill_z(bulk.data(), 0x5eed, 0xabcdef, first, len, dist);
    for (size_t i = 0; i < len; i++) {
      float one;
      fill_z(&one, 0x5eed, 0xabcdef, first + i, 1, dist);
      ASSERT_EQ(bulk[i], one) << "element " << first + i << " of a fill from " << first << ", " << len << " long";
    }
  };
  for (Dist dist : {Dist::Gaussian, Dist::Rademacher}) {
    for (size_t off : {size_t(0), size_t(1), size_t(64), size_t(130)}) check(base + off, n - off, dist);
    // Fills of 48 and 56 counter blocks starting 1 .. 60 blocks before the wrap: it then falls in the
    // two-vector loop, the one-vector loop or the scalar tail, for 16- and for 8-lane vectors.
    for (size_t blocks : {size_t(48), size_t(56)})
      for (size_t before = 1; before <= 60; before++) check(((size_t(1) << 32) - before) * 4, 4 * blocks, dist);
  }
}

// The update kernels against the formulas in float64 (f32 rounding allowed).
TEST(Perturb, UpdatesFollowTheFormulas) {
  const size_t n = 10007, begin = 13;
  std::vector<float> z1(n), z2(n);
  fill_z(z1.data(), 11, 3, begin, n, Dist::Gaussian);
  fill_z(z2.data(), 12, 3, begin, n, Dist::Gaussian);
  UpdateTerm t[2] = {{11, 0.75f}, {12, -0.25f}};
  const float lr = 0.01f, wd = 0.1f, beta = 0.9f;
  std::vector<float> w0(n), m0(n);
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  for (size_t i = 0; i < n; i++) w0[i] = nd(g), m0[i] = nd(g);
  for (OptKind k : {OptKind::SGD, OptKind::Momentum, OptKind::Sign}) {
    std::vector<float> w(w0), m(m0);
    zo_update(w.data(), m.data(), n, 3, begin, t, 2, Dist::Gaussian, k, lr, wd, beta);
    for (size_t i = 0; i < n; i++) {
      double G = 0.75 * z1[i] - 0.25 * z2[i], want;
      if (k == OptKind::SGD) want = w0[i] - lr * (G + wd * w0[i]);
      else if (k == OptKind::Momentum) {
        double mm = beta * double(m0[i]) + G;
        ASSERT_NEAR(m[i], mm, 1e-5 * (1 + std::fabs(mm)));
        want = w0[i] - lr * (mm + wd * w0[i]);
      } else
        want = w0[i] - lr * ((G > 0) - (G < 0) + wd * w0[i]);
      ASSERT_NEAR(w[i], want, 2e-6 * (1 + std::fabs(want))) << int(k) << " " << i;
    }
  }
}

// The fused pass (pending update, then the working copies) against the float64 formulas, and bit
// for bit against the separate kernels it replaces, at offsets that split counter blocks and pieces.
TEST(Perturb, UpdateAndPerturbIsTheUpdateThenTheCopies) {
  const size_t n = 70001;
  UpdateTerm t[2] = {{11, 0.75f}, {12, -0.25f}};
  const float lr = 0.01f, wd = 0.1f, beta = 0.9f, eps = 1e-3f;
  std::vector<float> w0(n), m0(n);
  std::mt19937 g(2);
  std::normal_distribution<float> nd;
  for (size_t i = 0; i < n; i++) w0[i] = nd(g), m0[i] = nd(g);
  const float scale[2] = {eps, -eps};
  for (Dist dist : {Dist::Gaussian, Dist::Rademacher})
    for (OptKind k : {OptKind::SGD, OptKind::Momentum, OptKind::Sign})
      for (int q : {0, 1, 2})
        for (int nv : {0, 1, 2})
          for (size_t begin : {size_t(0), size_t(3), size_t(4097)}) {
            const size_t len = n - begin;
            std::vector<float> w(w0), m(m0), a(n, -7.0f), b(n, -7.0f);
            float* dst[2] = {a.data(), b.data()};
            PendingUpdate u{t, q, k, lr, wd, beta};
            update_and_perturb(w.data() + begin, m.data() + begin, len, 3, begin, u, 99, dist, dst, scale, nv);
            // The separate kernels.
            std::vector<float> w2(w0), m2(m0), a2(n, -7.0f), b2(n, -7.0f);
            zo_update(w2.data() + begin, m2.data() + begin, len, 3, begin, t, q, dist, k, lr, wd, beta);
            if (nv > 0) perturb_range(a2.data(), w2.data() + begin, eps, 99, 3, begin, len, dist);
            if (nv > 1) perturb_range(b2.data(), w2.data() + begin, -eps, 99, 3, begin, len, dist);
            ASSERT_EQ(std::memcmp(w.data(), w2.data(), n * 4), 0) << int(k) << " q " << q << " nv " << nv;
            ASSERT_EQ(std::memcmp(m.data(), m2.data(), n * 4), 0);
            ASSERT_EQ(std::memcmp(a.data(), a2.data(), n * 4), 0) << int(k) << " q " << q << " nv " << nv;
            ASSERT_EQ(std::memcmp(b.data(), b2.data(), n * 4), 0);
            // float64: the updated weight and the copies from the pre-update weight and both z.
            std::vector<float> z1(len), z2(len), zp(len);
            fill_z(z1.data(), 11, 3, begin, len, dist);
            fill_z(z2.data(), 12, 3, begin, len, dist);
            fill_z(zp.data(), 99, 3, begin, len, dist);
            for (size_t i = 0; i < len; i += 7) {
              const double w_old = w0[begin + i];
              double G = q == 0 ? 0 : 0.75 * z1[i] + (q == 2 ? -0.25 * z2[i] : 0.0), want = w_old;
              if (q > 0) {
                if (k == OptKind::SGD) want = w_old - lr * (G + wd * w_old);
                else if (k == OptKind::Momentum) want = w_old - lr * (beta * double(m0[begin + i]) + G + wd * w_old);
                else want = w_old - lr * ((G > 0) - (G < 0) + wd * w_old);
              }
              ASSERT_NEAR(w[begin + i], want, 2e-6 * (1 + std::fabs(want)));
              if (nv > 0) {
                ASSERT_NEAR(a[i], want + eps * double(zp[i]), 4e-6 * (1 + std::fabs(want)));
              }
              if (nv > 1) {
                ASSERT_NEAR(b[i], want - eps * double(zp[i]), 4e-6 * (1 + std::fabs(want)));
              }
              if (nv < 2) {
                ASSERT_EQ(b[i], -7.0f);
              }
            }
          }
}
