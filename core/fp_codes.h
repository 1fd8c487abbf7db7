// f32 -> narrower float codes, rounding to nearest even, shared by the host and the device (ZO_HD):
// checkpoint conversion (core/dtype.h), the wire encoders (core/wire.h) and the device's rounding of
// two-way blocks (core/cuda/wire.h) use these same functions, so a code has the same bits wherever
// it is made. Integer arithmetic on the f32 bits, plus one exact float multiply for fp8's subnormals.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/hd.h"

namespace zo {

// As torch casts float32 -> bfloat16. NaN stays NaN (quiet).
ZO_HD uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// IEEE binary16; beyond 65504 after rounding: infinity (the wire's f16 encoder reports it).
ZO_HD uint16_t f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000;
  const int32_t exp = int32_t((u >> 23) & 0xff) - 127 + 15;
  uint32_t man = u & 0x7fffff;
  if (((u >> 23) & 0xff) == 0xff) return uint16_t(sign | 0x7c00 | (man ? 0x200 : 0));
  if (exp >= 31) return uint16_t(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10) return uint16_t(sign);
    man |= 0x800000;
    const uint32_t shift = uint32_t(14 - exp);
    uint32_t half = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | uint32_t(exp) << 10 | man >> 13;
  const uint32_t rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return uint16_t(half);
}

// OCP FP8 E4M3 ("e4m3fn"), saturating at +-448 as torch's cast does; NaN stays NaN.
ZO_HD uint8_t f32_to_fp8_e4m3(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint8_t sign = uint8_t((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint8_t(sign | 0x7f);   // NaN
  if (a >= 0x43e80000u) return uint8_t(sign | 0x7e);  // |f| >= 464 (midpoint to 480): 448
  if (a < 0x3c800000u) {                              // |f| < 2^-6: subnormal range, step 2^-9
    // m = |f| * 2^9 rounded to nearest even, exact: |f| * 512 is exact in f32 and rint rounds to even.
    float af;
    memcpy(&af, &a, 4);
#ifdef __CUDA_ARCH__
    const float m = rintf(af * 512.0f);
#else
    const float m = std::nearbyint(af * 512.0f);
#endif
    return uint8_t(sign | uint8_t(m));  // m == 8 is the smallest normal's code
  }
  // Normal: keep 3 mantissa bits, round the 20 dropped ones to nearest even.
  const uint32_t exp = (a >> 23) - 120, man = a & 0x7fffffu;
  uint32_t code = (exp << 3) | (man >> 20);
  const uint32_t rem = man & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (code & 1u))) code++;  // a carry moves into the exponent
  return uint8_t(sign | code);
}

}  // namespace zo
