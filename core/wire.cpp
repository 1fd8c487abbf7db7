#include "core/wire.h"

#include <cmath>
#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace zo {

size_t wire_size(WireDType t) {
  switch (t) {
    case WireDType::F32: return 4;
    case WireDType::BF16:
    case WireDType::F16: return 2;
    case WireDType::FP8: return 1;
  }
  return 4;
}

const char* wire_name(WireDType t) {
  switch (t) {
    case WireDType::F32: return "f32";
    case WireDType::BF16: return "bf16";
    case WireDType::F16: return "f16";
    case WireDType::FP8: return "fp8";
  }
  return "?";
}

WireDType parse_wire_dtype(const std::string& s) {
  if (s == "f32") return WireDType::F32;
  if (s == "bf16") return WireDType::BF16;
  if (s == "f16" || s == "fp16") return WireDType::F16;
  if (s == "fp8" || s == "fp8-e4m3" || s == "e4m3") return WireDType::FP8;
  fail("--wire-dtype '{}': expected f32, bf16, f16 or fp8 (E4M3 with a scale per {} elements)", s, kWireGroup);
}

uint8_t f32_to_fp8_e4m3(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint8_t sign = uint8_t((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint8_t(sign | 0x7f);           // NaN
  if (a >= 0x43e80000u) return uint8_t(sign | 0x7e);          // |f| >= 464 (midpoint to 480): 448
  if (a < 0x3c800000u) {                                      // |f| < 2^-6: subnormal range, step 2^-9
    // m = |f| * 2^9 rounded to nearest even, exact: |f| * 512 is exact in f32 and rint rounds to even.
    float m = std::nearbyint(wire_bits_to_f32(a) * 512.0f);
    return uint8_t(sign | uint8_t(m));                        // m == 8 is the smallest normal's code
  }
  // Normal: keep 3 mantissa bits, round the 20 dropped ones to nearest even.
  uint32_t exp = (a >> 23) - 120, man = a & 0x7fffffu;
  uint32_t code = (exp << 3) | (man >> 20);
  const uint32_t rem = man & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (code & 1u))) code++;  // a carry moves into the exponent
  return uint8_t(sign | code);
}

bool wire_encode(WireDType t, const float* src, size_t n, void* dst, float* scales) {
  bool ok = true;
  switch (t) {
    case WireDType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case WireDType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; i++) d[i] = f32_to_bf16(src[i]);
      break;
    }
    case WireDType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; i++) {
        d[i] = f32_to_f16(src[i]);
        ok = ok && ((d[i] & 0x7c00u) != 0x7c00u || !std::isfinite(src[i]));
      }
      break;
    }
    case WireDType::FP8: {
      auto* d = static_cast<uint8_t*>(dst);
      for (size_t g0 = 0; g0 < n; g0 += kWireGroup) {
        const size_t len = std::min(kWireGroup, n - g0);
        float amax = 0.0f;
        for (size_t i = 0; i < len; i++) amax = std::max(amax, std::fabs(src[g0 + i]));  // NaN ignored
        const float s = (amax > 0.0f && std::isfinite(amax)) ? amax / 448.0f : 1.0f;
        scales[g0 / kWireGroup] = s;
        for (size_t i = 0; i < len; i++) d[g0 + i] = f32_to_fp8_e4m3(src[g0 + i] / s);
      }
      break;
    }
  }
  return ok;
}

void wire_decode(WireDType t, const void* src, size_t n, const float* scales, float* dst) {
  for (size_t i = 0; i < n; i++) dst[i] = wire_value(t, src, i, wire_scaled(t) ? scales[i / kWireGroup] : 1.0f);
}

namespace {
// body(g0, len, group) over the groups of [0, n), in parallel (OpenMP); true when every body did.
template <typename F>
bool for_groups(size_t n, F&& body) {
  const long groups = long(wire_groups(n));
  bool ok = true;
#pragma omp parallel for schedule(static) reduction(&& : ok) if (groups > 1)
  for (long g = 0; g < groups; g++) {
    const size_t g0 = size_t(g) * kWireGroup;
    ok = body(g0, std::min(kWireGroup, n - g0), size_t(g)) && ok;
  }
  return ok;
}
}  // namespace

bool wire_encode_parallel(WireDType t, const float* src, size_t n, void* dst, float* scales) {
  auto* d = static_cast<uint8_t*>(dst);
  return for_groups(n, [&](size_t g0, size_t len, size_t g) {
    return wire_encode(t, src + g0, len, d + g0 * wire_size(t), scales ? scales + g : nullptr);
  });
}

bool update_and_encode(float* w, float* m, size_t n, uint64_t tid, const UpdateTerm* terms, int q, Dist dist,
                       OptKind opt, float lr, float wd, float beta, WireDType t, void* dst, float* scales) {
  auto* d = static_cast<uint8_t*>(dst);
  return for_groups(n, [&](size_t g0, size_t len, size_t g) {
    // Inside this parallel region zo_update's own loop runs on the calling thread (no nesting).
    zo_update(w + g0, m ? m + g0 : nullptr, len, tid, g0, terms, q, dist, opt, lr, wd, beta);
    return wire_encode(t, w + g0, len, d + g0 * wire_size(t), scales ? scales + g : nullptr);
  });
}

}  // namespace zo
