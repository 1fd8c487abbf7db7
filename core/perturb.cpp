#include "core/perturb.h"

#include <algorithm>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#ifdef __AVX512F__
// GCC 12 warns that the intrinsics' internal _mm512_undefined values "may be used uninitialized"
// (a known false positive for maskless AVX-512 intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace zo {
namespace {

constexpr size_t kChunk = 4096;              // elements per serial piece (16 KiB of z: stays in L1/L2)
constexpr size_t kParallelMin = size_t(1) << 16;

// Philox4x32-10 on many counters at once, one counter per 32-bit lane. 32x32->64 products come from
// vpmuludq, which multiplies the even lanes; the odd lanes are first moved down by a shuffle, and
// the halves of the products are put back in place by shuffles and blends, which leaves the shift
// port to the multiplies (on AVX-512 1.5x the rate of shifts and blends on the machines measured).
#if defined(__AVX512F__)
#define ZO_PHILOX_LANES 1
struct Lanes {  // 16 counters
  using V = __m512i;
  static constexpr int kN = 16;
  static V set1(uint32_t x) { return _mm512_set1_epi32(int(x)); }
  static V iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  static V add(V a, V b) { return _mm512_add_epi32(a, b); }
  static V load(const uint32_t* p) { return _mm512_loadu_si512(p); }
  static void store(uint32_t* p, V v) { _mm512_storeu_si512(p, v); }
  // (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ ka, lo(M1 c2), hi(M0 c0) ^ c3 ^ kb, lo(M0 c0))
  static void round(V& c0, V& c1, V& c2, V& c3, V ka, V kb) {
    const V M0 = set1(0xD2511F53u), M1 = set1(0xCD9E8D57u);
    const V pe0 = _mm512_mul_epu32(c0, M0), po0 = _mm512_mul_epu32(_mm512_shuffle_epi32(c0, _MM_PERM_DDBB), M0);
    const V pe1 = _mm512_mul_epu32(c2, M1), po1 = _mm512_mul_epu32(_mm512_shuffle_epi32(c2, _MM_PERM_DDBB), M1);
    const V hi0 = _mm512_mask_shuffle_epi32(po0, 0x5555, pe0, _MM_PERM_DDBB);  // high halves
    const V lo0 = _mm512_mask_shuffle_epi32(pe0, 0xAAAA, po0, _MM_PERM_CCAA);  // low halves
    const V hi1 = _mm512_mask_shuffle_epi32(po1, 0x5555, pe1, _MM_PERM_DDBB);
    const V lo1 = _mm512_mask_shuffle_epi32(pe1, 0xAAAA, po1, _MM_PERM_CCAA);
    c0 = _mm512_ternarylogic_epi32(hi1, c1, ka, 0x96);  // three-way xor
    c2 = _mm512_ternarylogic_epi32(hi0, c3, kb, 0x96);
    c1 = lo1;
    c3 = lo0;
  }
};
#elif defined(__AVX2__)
#define ZO_PHILOX_LANES 1
struct Lanes {  // 8 counters
  using V = __m256i;
  static constexpr int kN = 8;
  static V set1(uint32_t x) { return _mm256_set1_epi32(int(x)); }
  static V iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static V add(V a, V b) { return _mm256_add_epi32(a, b); }
  static V load(const uint32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const V*>(p)); }
  static void store(uint32_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<V*>(p), v); }
  static void round(V& c0, V& c1, V& c2, V& c3, V ka, V kb) {
    constexpr int kOdd = _MM_SHUFFLE(3, 3, 1, 1), kEven = _MM_SHUFFLE(2, 2, 0, 0);
    const V M0 = set1(0xD2511F53u), M1 = set1(0xCD9E8D57u);
    const V pe0 = _mm256_mul_epu32(c0, M0), po0 = _mm256_mul_epu32(_mm256_shuffle_epi32(c0, kOdd), M0);
    const V pe1 = _mm256_mul_epu32(c2, M1), po1 = _mm256_mul_epu32(_mm256_shuffle_epi32(c2, kOdd), M1);
    const V hi0 = _mm256_blend_epi32(_mm256_shuffle_epi32(pe0, kOdd), po0, 0xAA);
    const V lo0 = _mm256_blend_epi32(pe0, _mm256_shuffle_epi32(po0, kEven), 0xAA);
    const V hi1 = _mm256_blend_epi32(_mm256_shuffle_epi32(pe1, kOdd), po1, 0xAA);
    const V lo1 = _mm256_blend_epi32(pe1, _mm256_shuffle_epi32(po1, kEven), 0xAA);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), ka);
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), kb);
    c1 = lo1;
    c3 = lo0;
  }
};
#endif

#ifdef ZO_PHILOX_LANES
using LV = Lanes::V;
// Counters j .. j + kN - 1: their low words (lo) and high words (hi).
struct CounterWords {
  LV lo, hi;
};
__attribute__((noinline)) CounterWords counters_wrapping(uint64_t j) {  // the low word wraps inside
  alignas(64) uint32_t lo[Lanes::kN], hi[Lanes::kN];
  for (int i = 0; i < Lanes::kN; i++) lo[i] = uint32_t(j + uint64_t(i)), hi[i] = uint32_t((j + uint64_t(i)) >> 32);
  return {Lanes::load(lo), Lanes::load(hi)};
}
inline CounterWords counters(uint64_t j) {
  if (__builtin_expect(uint32_t(j) > 0xFFFFFFFFu - uint32_t(Lanes::kN - 1), 0)) return counters_wrapping(j);
  return {Lanes::add(Lanes::set1(uint32_t(j)), Lanes::iota()), Lanes::set1(uint32_t(j >> 32))};
}
#endif

// Philox4x32-10 words of counter blocks j0 .. j0 + m - 1 of tensor (t0, t1) under key (k0, k1):
// rng::philox4x32_10 over many counters at once (tests/test_perturb.cpp checks it against Random123).
//
// pf, when given: memory the caller touches next, 16 bytes per counter block (the f32 weights these
// values will update). Its cache lines are prefetched as the rounds run, so that the caller's pass
// over them finds them in cache: the memory traffic overlaps the arithmetic instead of following it.
void philox_words(uint32_t* w0, uint32_t* w1, uint32_t* w2, uint32_t* w3, uint64_t j0, size_t m, uint32_t k0,
                  uint32_t k1, uint32_t t0, uint32_t t1, const char* pf = nullptr) {
  size_t k = 0;
#ifdef ZO_PHILOX_LANES
  // Two vectors of counters per step: two independent chains of rounds keep both vector ports busy.
  constexpr size_t N = Lanes::kN;
  LV ka[10], kb[10];
  for (uint32_t r = 0, a = k0, b = k1; r < 10; r++, a += 0x9E3779B9u, b += 0xBB67AE85u)
    ka[r] = Lanes::set1(a), kb[r] = Lanes::set1(b);
  const LV c2_0 = Lanes::set1(t0), c3_0 = Lanes::set1(t1);
  auto store = [&](size_t at, LV a0, LV a1, LV a2, LV a3) {
    Lanes::store(w0 + at, a0), Lanes::store(w1 + at, a1), Lanes::store(w2 + at, a2), Lanes::store(w3 + at, a3);
  };
  for (; k + 2 * N <= m; k += 2 * N) {
    if (pf)  // 2N counter blocks: 32 N bytes of the caller's stream
      for (size_t b = 0; b < 32 * N; b += 64) _mm_prefetch(pf + 16 * k + b, _MM_HINT_T0);
    CounterWords x = counters(j0 + k), y = counters(j0 + k + N);
    LV a0 = x.lo, a1 = x.hi, a2 = c2_0, a3 = c3_0, b0 = y.lo, b1 = y.hi, b2 = c2_0, b3 = c3_0;
    for (int r = 0; r < 10; r++) {
      Lanes::round(a0, a1, a2, a3, ka[r], kb[r]);
      Lanes::round(b0, b1, b2, b3, ka[r], kb[r]);
    }
    store(k, a0, a1, a2, a3);
    store(k + N, b0, b1, b2, b3);
  }
  for (; k + N <= m; k += N) {
    CounterWords x = counters(j0 + k);
    LV a0 = x.lo, a1 = x.hi, a2 = c2_0, a3 = c3_0;
    for (int r = 0; r < 10; r++) Lanes::round(a0, a1, a2, a3, ka[r], kb[r]);
    store(k, a0, a1, a2, a3);
  }
#endif
  for (; k < m; k++) {
    uint32_t c[4] = {uint32_t(j0 + k), uint32_t((j0 + k) >> 32), t0, t1};
    rng::philox4x32_10(c, k0, k1);
    w0[k] = c[0], w1[k] = c[1], w2[k] = c[2], w3[k] = c[3];
  }
}

// Counter blocks j0 .. j0 + nb - 1 into z[0, 4 nb). Philox words first, then the mapping, in two
// simple loops the compiler vectorizes (16 counter blocks per AVX-512 step).
template <Dist D>
void z_blocks(float* z, uint64_t seed, uint64_t tid, uint64_t j0, size_t nb, const char* pf) {
  constexpr size_t kB = 256;
  alignas(64) uint32_t w0[kB], w1[kB], w2[kB], w3[kB];
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32), t0 = uint32_t(tid), t1 = uint32_t(tid >> 32);
  for (size_t base = 0; base < nb; base += kB) {
    const size_t m = std::min(kB, nb - base);
    philox_words(w0, w1, w2, w3, j0 + base, m, k0, k1, t0, t1, pf ? pf + 16 * base : nullptr);
    float* out = z + 4 * base;
    if constexpr (D == Dist::Rademacher) {
      for (size_t k = 0; k < m; k++) {
        out[4 * k] = (w0[k] >> 31) ? -1.0f : 1.0f;
        out[4 * k + 1] = (w1[k] >> 31) ? -1.0f : 1.0f;
        out[4 * k + 2] = (w2[k] >> 31) ? -1.0f : 1.0f;
        out[4 * k + 3] = (w3[k] >> 31) ? -1.0f : 1.0f;
      }
    } else {
      // Lane-separated outputs first (contiguous, vectorizes), then one interleaving pass.
      alignas(64) float z0[kB], z1[kB], z2[kB], z3[kB];
      for (size_t k = 0; k < m; k++) {
        float a0, a1, a2, a3;
        rng::box_muller(w0[k], w1[k], &a0, &a1);
        rng::box_muller(w2[k], w3[k], &a2, &a3);
        z0[k] = a0, z1[k] = a1, z2[k] = a2, z3[k] = a3;
      }
      for (size_t k = 0; k < m; k++) {
        out[4 * k] = z0[k];
        out[4 * k + 1] = z1[k];
        out[4 * k + 2] = z2[k];
        out[4 * k + 3] = z3[k];
      }
    }
  }
}

const char* pf_at(const float* pf, size_t i) {
  return pf ? reinterpret_cast<const char*>(pf + i) : nullptr;
}

// Serial fill of z[0, n) for elements begin .. begin + n - 1.
// pf: the n floats the caller updates next, prefetched while z is made (see philox_words).
void fill_serial(float* z, uint64_t seed, uint64_t tid, size_t begin, size_t n, Dist dist,
                 const float* pf = nullptr) {
  size_t i = 0;
  float tmp[4];
  if (begin % 4 != 0) {  // a partial first counter block
    rng::z_block(tmp, seed, tid, begin / 4, dist);
    for (size_t lane = begin % 4; lane < 4 && i < n; lane++) z[i++] = tmp[lane];
  }
  size_t nb = (n - i) / 4;
  if (dist == Dist::Gaussian)
    z_blocks<Dist::Gaussian>(z + i, seed, tid, (begin + i) / 4, nb, pf_at(pf, i));
  else
    z_blocks<Dist::Rademacher>(z + i, seed, tid, (begin + i) / 4, nb, pf_at(pf, i));
  i += 4 * nb;
  if (i < n) {  // a partial last one
    rng::z_block(tmp, seed, tid, (begin + i) / 4, dist);
    for (size_t lane = 0; i < n; lane++) z[i++] = tmp[lane];
  }
}

// Runs body(offset, len) over [0, n) in pieces of kChunk, in parallel when n is large.
template <typename F>
void chunked(size_t n, F&& body) {
  const long nc = long((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (long c = 0; c < nc; c++) {
    size_t off = size_t(c) * kChunk;
    body(off, std::min(kChunk, n - off));
  }
}

}  // namespace

void fill_z(float* z, uint64_t seed, uint64_t tid, size_t begin, size_t n, Dist dist) {
  chunked(n, [&](size_t off, size_t len) { fill_serial(z + off, seed, tid, begin + off, len, dist); });
}

void perturb_range(float* dst, const float* w, float scale, uint64_t seed, uint64_t tid, size_t begin, size_t n,
                   Dist dist) {
  chunked(n, [&](size_t off, size_t len) {
    float z[kChunk];
    fill_serial(z, seed, tid, begin + off, len, dist);
    for (size_t i = 0; i < len; i++) dst[off + i] = w[off + i] + scale * z[i];
  });
}

namespace {

// zo_update on one piece: w and m point at the piece, begin is its first element's index.
void update_serial(float* w, float* m, size_t len, uint64_t tid, size_t begin, const UpdateTerm* terms, int q,
                   Dist dist, OptKind opt, float lr, float wd, float beta) {
  float z[kChunk], G[kChunk];
  fill_serial(z, terms[0].seed, tid, begin, len, dist, w);
  for (size_t i = 0; i < len; i++) G[i] = terms[0].coef * z[i];
  for (int d = 1; d < q; d++) {
    fill_serial(z, terms[d].seed, tid, begin, len, dist);
    const float c = terms[d].coef;
    for (size_t i = 0; i < len; i++) G[i] = G[i] + c * z[i];
  }
  switch (opt) {
    case OptKind::SGD:
      for (size_t i = 0; i < len; i++) w[i] = w[i] - lr * (G[i] + wd * w[i]);
      break;
    case OptKind::Momentum:
      for (size_t i = 0; i < len; i++) {
        m[i] = beta * m[i] + G[i];
        w[i] = w[i] - lr * (m[i] + wd * w[i]);
      }
      break;
    case OptKind::Sign:
      for (size_t i = 0; i < len; i++) {
        float s = G[i] > 0.0f ? 1.0f : (G[i] < 0.0f ? -1.0f : 0.0f);
        w[i] = w[i] - lr * (s + wd * w[i]);
      }
      break;
  }
}

}  // namespace

void zo_update(float* w, float* m, size_t n, uint64_t tid, size_t begin, const UpdateTerm* terms, int q, Dist dist,
               OptKind opt, float lr, float wd, float beta) {
  if (q <= 0) return;
  chunked(n, [&](size_t off, size_t len) {
    update_serial(w + off, m ? m + off : nullptr, len, tid, begin + off, terms, q, dist, opt, lr, wd, beta);
  });
}

void update_and_perturb(float* w, float* m, size_t n, uint64_t tid, size_t begin, const PendingUpdate& u,
                        uint64_t seed, Dist dist, float* const* dst, const float* scale, int nv) {
  chunked(n, [&](size_t off, size_t len) {
    float* wr = w + off;
    if (u.q > 0)
      update_serial(wr, m ? m + off : nullptr, len, tid, begin + off, u.terms, u.q, dist, u.opt, u.lr, u.wd, u.beta);
    if (nv <= 0) return;
    float z[kChunk];
    fill_serial(z, seed, tid, begin + off, len, dist, u.q > 0 ? nullptr : wr);  // updated: wr is in cache already
    for (int v = 0; v < nv; v++) {
      float* d = dst[v] + off;
      const float s = scale[v];
      for (size_t i = 0; i < len; i++) d[i] = wr[i] + s * z[i];
    }
  });
}

}  // namespace zo
