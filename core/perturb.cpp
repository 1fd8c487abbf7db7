#include "core/perturb.h"

#include <algorithm>
#include <cstring>

namespace zo {
namespace {

constexpr size_t kChunk = 4096;              // elements per serial piece (16 KiB of z: stays in L1/L2)
constexpr size_t kParallelMin = size_t(1) << 16;

// Counter blocks j0 .. j0 + nb - 1 into z[0, 4 nb). Philox words first, then the mapping, in two
// simple loops the compiler vectorizes (16 counter blocks per AVX-512 step).
template <Dist D>
void z_blocks(float* z, uint64_t seed, uint64_t tid, uint64_t j0, size_t nb) {
  constexpr size_t kB = 256;
  alignas(64) uint32_t w0[kB], w1[kB], w2[kB], w3[kB];
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32), t0 = uint32_t(tid), t1 = uint32_t(tid >> 32);
  for (size_t base = 0; base < nb; base += kB) {
    const size_t m = std::min(kB, nb - base);
    // rng::philox4x32_10 with the counter in scalars (an array would defeat the vectorizer);
    // tests/test_perturb.cpp checks this path against Random123.
    for (size_t k = 0; k < m; k++) {
      uint64_t j = j0 + base + k;
      uint32_t c0 = uint32_t(j), c1 = uint32_t(j >> 32), c2 = t0, c3 = t1, a = k0, b = k1;
#pragma GCC unroll 10
      for (int r = 0; r < 10; r++) {
        uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
        uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ a, n2 = uint32_t(p0 >> 32) ^ c3 ^ b;
        c1 = uint32_t(p1);
        c3 = uint32_t(p0);
        c0 = n0;
        c2 = n2;
        a += 0x9E3779B9u;
        b += 0xBB67AE85u;
      }
      w0[k] = c0, w1[k] = c1, w2[k] = c2, w3[k] = c3;
    }
    float* out = z + 4 * base;
    if constexpr (D == Dist::Rademacher) {
      for (size_t k = 0; k < m; k++) {
        out[4 * k] = (w0[k] >> 31) ? -1.0f : 1.0f;
        out[4 * k + 1] = (w1[k] >> 31) ? -1.0f : 1.0f;
        out[4 * k + 2] = (w2[k] >> 31) ? -1.0f : 1.0f;
        out[4 * k + 3] = (w3[k] >> 31) ? -1.0f : 1.0f;
      }
    } else {
      for (size_t k = 0; k < m; k++) {
        rng::box_muller(w0[k], w1[k], &out[4 * k], &out[4 * k + 1]);
        rng::box_muller(w2[k], w3[k], &out[4 * k + 2], &out[4 * k + 3]);
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
