#include "core/perturb.h"

#include <algorithm>
#include <cstring>
#ifdef __AVX512F__
#include <immintrin.h>
// GCC 12 warns that the intrinsics' internal _mm512_undefined values "may be used uninitialized"
// (a known false positive for maskless AVX-512 intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace zo {
namespace {

constexpr size_t kChunk = 4096;              // elements per serial piece (16 KiB of z: stays in L1/L2)
constexpr size_t kParallelMin = size_t(1) << 16;

#ifdef __AVX512F__
// Counters j .. j + 15: their low words (lo) and high words (hi).
struct Counters16 {
  __m512i lo, hi;
};
__attribute__((noinline)) Counters16 counters16_wrapping(uint64_t j) {  // the low word wraps inside
  alignas(64) uint32_t lo[16], hi[16];
  for (int i = 0; i < 16; i++) lo[i] = uint32_t(j + uint64_t(i)), hi[i] = uint32_t((j + uint64_t(i)) >> 32);
  return {_mm512_load_si512(lo), _mm512_load_si512(hi)};
}
inline Counters16 counters16(uint64_t j) {
  if (__builtin_expect(uint32_t(j) > 0xFFFFFFFFu - 15u, 0)) return counters16_wrapping(j);
  return {_mm512_add_epi32(_mm512_set1_epi32(int(uint32_t(j))),
                           _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)),
          _mm512_set1_epi32(int(uint32_t(j >> 32)))};
}

// One Philox round on 16 counters: (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ ka, lo(M1 c2), hi(M0 c0) ^ c3 ^ kb,
// lo(M0 c0)). vpmuludq forms the 32x32->64 products of the even lanes; the odd lanes are first
// moved down by a shuffle, and the halves are put back in place by masked shuffles, so the shift
// port is left to the multiplies (1.5x the rate of shifts and blends on the machines measured).
inline void philox_round16(__m512i& c0, __m512i& c1, __m512i& c2, __m512i& c3, __m512i ka, __m512i kb) {
  const __m512i M0 = _mm512_set1_epi32(int(0xD2511F53u)), M1 = _mm512_set1_epi32(int(0xCD9E8D57u));
  const __m512i pe0 = _mm512_mul_epu32(c0, M0), po0 = _mm512_mul_epu32(_mm512_shuffle_epi32(c0, _MM_PERM_DDBB), M0);
  const __m512i pe1 = _mm512_mul_epu32(c2, M1), po1 = _mm512_mul_epu32(_mm512_shuffle_epi32(c2, _MM_PERM_DDBB), M1);
  const __m512i hi0 = _mm512_mask_shuffle_epi32(po0, 0x5555, pe0, _MM_PERM_DDBB);  // high halves
  const __m512i lo0 = _mm512_mask_shuffle_epi32(pe0, 0xAAAA, po0, _MM_PERM_CCAA);  // low halves
  const __m512i hi1 = _mm512_mask_shuffle_epi32(po1, 0x5555, pe1, _MM_PERM_DDBB);
  const __m512i lo1 = _mm512_mask_shuffle_epi32(pe1, 0xAAAA, po1, _MM_PERM_CCAA);
  c0 = _mm512_ternarylogic_epi32(hi1, c1, ka, 0x96);  // three-way xor
  c2 = _mm512_ternarylogic_epi32(hi0, c3, kb, 0x96);
  c1 = lo1;
  c3 = lo0;
}
#endif

// Philox4x32-10 words of counter blocks j0 .. j0 + m - 1 of tensor (t0, t1) under key (k0, k1):
// rng::philox4x32_10 over many counters at once (tests/test_perturb.cpp checks it against Random123).
void philox_words(uint32_t* w0, uint32_t* w1, uint32_t* w2, uint32_t* w3, uint64_t j0, size_t m, uint32_t k0,
                  uint32_t k1, uint32_t t0, uint32_t t1) {
  size_t k = 0;
#ifdef __AVX512F__
  // 2 x 16 counters per step: two independent chains of rounds keep both vector ports busy.
  __m512i ka[10], kb[10];
  for (uint32_t r = 0, a = k0, b = k1; r < 10; r++, a += 0x9E3779B9u, b += 0xBB67AE85u)
    ka[r] = _mm512_set1_epi32(int(a)), kb[r] = _mm512_set1_epi32(int(b));
  const __m512i c2_0 = _mm512_set1_epi32(int(t0)), c3_0 = _mm512_set1_epi32(int(t1));
  for (; k + 32 <= m; k += 32) {
    Counters16 x = counters16(j0 + k), y = counters16(j0 + k + 16);
    __m512i a0 = x.lo, a1 = x.hi, a2 = c2_0, a3 = c3_0, b0 = y.lo, b1 = y.hi, b2 = c2_0, b3 = c3_0;
    for (int r = 0; r < 10; r++) {
      philox_round16(a0, a1, a2, a3, ka[r], kb[r]);
      philox_round16(b0, b1, b2, b3, ka[r], kb[r]);
    }
    _mm512_storeu_si512(w0 + k, a0), _mm512_storeu_si512(w1 + k, a1);
    _mm512_storeu_si512(w2 + k, a2), _mm512_storeu_si512(w3 + k, a3);
    _mm512_storeu_si512(w0 + k + 16, b0), _mm512_storeu_si512(w1 + k + 16, b1);
    _mm512_storeu_si512(w2 + k + 16, b2), _mm512_storeu_si512(w3 + k + 16, b3);
  }
  for (; k + 16 <= m; k += 16) {
    Counters16 x = counters16(j0 + k);
    __m512i a0 = x.lo, a1 = x.hi, a2 = c2_0, a3 = c3_0;
    for (int r = 0; r < 10; r++) philox_round16(a0, a1, a2, a3, ka[r], kb[r]);
    _mm512_storeu_si512(w0 + k, a0), _mm512_storeu_si512(w1 + k, a1);
    _mm512_storeu_si512(w2 + k, a2), _mm512_storeu_si512(w3 + k, a3);
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
void z_blocks(float* z, uint64_t seed, uint64_t tid, uint64_t j0, size_t nb) {
  constexpr size_t kB = 256;
  alignas(64) uint32_t w0[kB], w1[kB], w2[kB], w3[kB];
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32), t0 = uint32_t(tid), t1 = uint32_t(tid >> 32);
  for (size_t base = 0; base < nb; base += kB) {
    const size_t m = std::min(kB, nb - base);
    philox_words(w0, w1, w2, w3, j0 + base, m, k0, k1, t0, t1);
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

// Serial fill of z[0, n) for elements begin .. begin + n - 1.
void fill_serial(float* z, uint64_t seed, uint64_t tid, size_t begin, size_t n, Dist dist) {
  size_t i = 0;
  float tmp[4];
  if (begin % 4 != 0) {  // a partial first counter block
    rng::z_block(tmp, seed, tid, begin / 4, dist);
    for (size_t lane = begin % 4; lane < 4 && i < n; lane++) z[i++] = tmp[lane];
  }
  size_t nb = (n - i) / 4;
  if (dist == Dist::Gaussian)
    z_blocks<Dist::Gaussian>(z + i, seed, tid, (begin + i) / 4, nb);
  else
    z_blocks<Dist::Rademacher>(z + i, seed, tid, (begin + i) / 4, nb);
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

void add_scaled(float* dst, const float* w, const float* z, float scale, size_t n) {
  chunked(n, [&](size_t off, size_t len) {
    for (size_t i = off; i < off + len; i++) dst[i] = w[i] + scale * z[i];
  });
}

void perturb_range(float* dst, const float* w, float scale, uint64_t seed, uint64_t tid, size_t begin, size_t n,
                   Dist dist) {
  chunked(n, [&](size_t off, size_t len) {
    float z[kChunk];
    fill_serial(z, seed, tid, begin + off, len, dist);
    for (size_t i = 0; i < len; i++) dst[off + i] = w[off + i] + scale * z[i];
  });
}

void zo_update(float* w, float* m, size_t n, uint64_t tid, size_t begin, const UpdateTerm* terms, int q, Dist dist,
               OptKind opt, float lr, float wd, float beta) {
  if (q <= 0) return;
  chunked(n, [&](size_t off, size_t len) {
    float z[kChunk], G[kChunk];
    fill_serial(z, terms[0].seed, tid, begin + off, len, dist);
    for (size_t i = 0; i < len; i++) G[i] = terms[0].coef * z[i];
    for (int d = 1; d < q; d++) {
      fill_serial(z, terms[d].seed, tid, begin + off, len, dist);
      const float c = terms[d].coef;
      for (size_t i = 0; i < len; i++) G[i] = G[i] + c * z[i];
    }
    float* wr = w + off;
    switch (opt) {
      case OptKind::SGD:
        for (size_t i = 0; i < len; i++) wr[i] = wr[i] - lr * (G[i] + wd * wr[i]);
        break;
      case OptKind::Momentum: {
        float* mr = m + off;
        for (size_t i = 0; i < len; i++) {
          mr[i] = beta * mr[i] + G[i];
          wr[i] = wr[i] - lr * (mr[i] + wd * wr[i]);
        }
        break;
      }
      case OptKind::Sign:
        for (size_t i = 0; i < len; i++) {
          float s = G[i] > 0.0f ? 1.0f : (G[i] < 0.0f ? -1.0f : 0.0f);
          wr[i] = wr[i] - lr * (s + wd * wr[i]);
        }
        break;
    }
  });
}

}  // namespace zo
