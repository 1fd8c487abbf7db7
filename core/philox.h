// Perturbation directions as a pure function: z = Z(seed, tensor, element).
//
// Nothing random is ever stored. Any machine (CPU, GPU, a peer) re-makes a direction from its seed
// with these functions, which use only integer operations and IEEE-754 float +, -, *, /, sqrt and
// fma in a fixed order, so they give the same bits everywhere as long as the compiler does not
// contract or reassociate: the translation units that call them are built with -ffp-contract=off
// (nvcc: --fmad=false). No libm call is involved (libm's logf/cosf differ between platforms).
//
// The mapping (docs/ARCHITECTURE.md, "Perturbations", gives the same in words):
//   tensor id   tid = FNV-1a 64 of the parameter's Hugging Face name (UTF-8 bytes)
//   element i   counter block j = i / 4, lane i % 4
//   Philox4x32-10 (Salmon et al., SC'11; Random123 and cuRAND use the same function) with
//               key = (lo32(seed), hi32(seed)), counter = (lo32(j), hi32(j), lo32(tid), hi32(tid))
//               -> four 32-bit words w0..w3
//   Gaussian    (w0, w1) make lanes 0, 1 and (w2, w3) lanes 2, 3 by Box-Muller:
//               u1 = ((wa >> 8) + 1) * 2^-24 in (0, 1],  u2 = (wb >> 8) * 2^-24 in [0, 1)
//               r = sqrt(-2 ln u1);  lane even = r cos(2 pi u2),  lane odd = r sin(2 pi u2)
//   Rademacher  lane k = +1 if the top bit of wk is 0, else -1
#pragma once
#include <cstdint>
#include <cstring>

#include "core/hd.h"

namespace zo::rng {

ZO_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The seed of direction d of step t of a run (the step log stores it as well; replay never derives).
ZO_HD uint64_t direction_seed(uint64_t run_seed, uint64_t step, uint32_t d) {
  return splitmix64(splitmix64(splitmix64(run_seed) ^ step) + d);
}

inline uint64_t fnv1a64(const char* s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ uint8_t(s[i])) * 0x100000001b3ull;
  return h;
}

// Philox4x32 with 10 rounds: c (the counter) is replaced by the output.
ZO_HD void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint64_t p0 = uint64_t(0xD2511F53u) * c[0];
    uint64_t p1 = uint64_t(0xCD9E8D57u) * c[2];
    uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
  }
}

ZO_HD float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
ZO_HD uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
// Correctly rounded fma and sqrt on both sides (IEEE-754 defines both exactly).
ZO_HD float fma_f(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}
ZO_HD float sqrt_f(float x) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(x);
#else
  return __builtin_sqrtf(x);
#endif
}

// ln(u) for u in (0, 1], u a normal float. u = m * 2^e with m in [sqrt(1/2), sqrt(2)); then
// ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716, as an odd series to s^11 (truncation
// below 2e-9 relative). Within about 2 ulp of the true value.
// m and e by integer arithmetic on u's bits: subtracting the bits of 0x1.6a09e8p-1 (the float just
// above sqrt(1/2)) leaves e in the high bits (arithmetic shift) and m's mantissa in the low ones,
// so that m is halved exactly when u's mantissa is above that of sqrt(2)'s float.
ZO_HD float log_unit(float u) {
  const int32_t ix = int32_t(float_to_bits(u) - 0x3f3504f4u);
  const int e = ix >> 23;
  const float m = bits_to_float((uint32_t(ix) & 0x7fffffu) + 0x3f3504f4u);  // [sqrt(1/2), sqrt(2))
  float f = m - 1.0f;  // exact (Sterbenz)
  float s = f / (2.0f + f);
  float s2 = s * s;
  float p = fma_f(s2, 1.0f / 11.0f, 1.0f / 9.0f);
  p = fma_f(s2, p, 1.0f / 7.0f);
  p = fma_f(s2, p, 1.0f / 5.0f);
  p = fma_f(s2, p, 1.0f / 3.0f);
  float logm = fma_f(2.0f * s * s2, p, 2.0f * s);
  float fe = float(e);
  return fma_f(fe, 0.693145751953125f, fma_f(fe, 1.428606820309417e-06f, logm));  // ln2 = hi + lo
}

// sin and cos of 2 pi u for u = k 2^-24, k < 2^24. 4u = q + r with |r| <= 1/2 exactly: q and r
// come from k's bits (q = k >> 22, r = the low 22 bits times 2^-22, less 1 above one half);
// sin/cos(pi/2 r) by Taylor series in r to r^11 / r^12 (truncation below 1e-10), then the quadrant q.
ZO_HD void sincos_2pi(uint32_t k, float* s_out, float* c_out) {
  const uint32_t low = k & 0x3fffffu;
  const bool up = low > 0x200000u;
  const uint32_t q = (k >> 22) + (up ? 1u : 0u);
  const float r = float(int32_t(low) - (up ? 0x400000 : 0)) * 2.384185791015625e-07f;  // 2^-22, exact
  float r2 = r * r;
  // sin(pi/2 r) = r (a1 + a3 r^2 + ... + a11 r^10),  cos(pi/2 r) = 1 + b2 r^2 + ... + b12 r^12
  float sp = fma_f(r2, -3.598843235212084e-06f, 1.6044118478735975e-04f);
  sp = fma_f(r2, sp, -4.681754135318687e-03f);
  sp = fma_f(r2, sp, 7.969262624616703e-02f);
  sp = fma_f(r2, sp, -6.459640975062462e-01f);
  sp = fma_f(r2, sp, 1.5707963267948966f);
  float sn = r * sp;
  float cp = fma_f(r2, 4.710874778818169e-07f, -2.5202042373060596e-05f);
  cp = fma_f(r2, cp, 9.192602748394263e-04f);
  cp = fma_f(r2, cp, -2.0863480763352957e-02f);
  cp = fma_f(r2, cp, 2.53669507901048e-01f);
  cp = fma_f(r2, cp, -1.2337005501361697f);
  float cs = fma_f(r2, cp, 1.0f);
  // Quadrant q: (sin, cos)(pi/2 q + a) from (sin a, cos a): swap on odd q, then sign bits from bit 1
  // of q and of q + 1 (no branches, so loops vectorize).
  const bool swap = (q & 1) != 0;
  const float s_abs = swap ? cs : sn, c_abs = swap ? sn : cs;
  *s_out = bits_to_float(float_to_bits(s_abs) ^ ((q << 30) & 0x80000000u));
  *c_out = bits_to_float(float_to_bits(c_abs) ^ (((q + 1) << 30) & 0x80000000u));
}

// Two standard normals from two Philox words (Box-Muller).
ZO_HD void box_muller(uint32_t wa, uint32_t wb, float* z0, float* z1) {
  // Converted as signed ints (exact below 2^24): x86 without AVX-512 has no vector unsigned
  // conversion. (The CPU build also needs -fno-trapping-math there: see core/CMakeLists.txt.)
  float u1 = float(int32_t((wa >> 8) + 1u)) * 5.9604644775390625e-08f;  // 2^-24, exact
  float r = sqrt_f(-2.0f * log_unit(u1));
  float sn, cs;
  sincos_2pi(wb >> 8, &sn, &cs);
  *z0 = r * cs;
  *z1 = r * sn;
}

enum class Dist : uint8_t { Gaussian = 0, Rademacher = 1 };

// The four values of counter block j (elements 4j .. 4j+3) of tensor tid under seed.
ZO_HD void z_block(float out[4], uint64_t seed, uint64_t tid, uint64_t j, Dist dist) {
  uint32_t c[4] = {uint32_t(j), uint32_t(j >> 32), uint32_t(tid), uint32_t(tid >> 32)};
  philox4x32_10(c, uint32_t(seed), uint32_t(seed >> 32));
  if (dist == Dist::Rademacher) {
    for (int k = 0; k < 4; k++) out[k] = (c[k] >> 31) ? -1.0f : 1.0f;
    return;
  }
  box_muller(c[0], c[1], &out[0], &out[1]);
  box_muller(c[2], c[3], &out[2], &out[3]);
}

}  // namespace zo::rng
