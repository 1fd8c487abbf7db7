#include "core/wire.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define ZO_WIRE_AVX512 1
#elif defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define ZO_WIRE_AVX2 1
#endif

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

// The vector paths below give the scalar conversions' bits (tests/test_wire.cpp checks them on every
// exponent, sign and rounding boundary, and against torch's casts). fp8: the normal range rounds with
// integer arithmetic on the f32 bits, a + 0x7ffff + lsb carries exactly when the 20 dropped bits are
// above half or at half with an odd kept bit; the subnormal range is |x| * 512 rounded to the nearest
// even integer (exact); saturation and NaN are lane selects. f16: the F16C instruction rounds to
// nearest even as f32_to_f16 does; only NaN lanes differ (it keeps the payload), and are replaced.
namespace {

// GCC 12 warns that the AVX-512 intrinsics' internal _mm512_undefined values "may be used
// uninitialized" (a known false positive); silenced for the vector code only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#if ZO_WIRE_AVX512
inline __m128i fp8_codes16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1));
  __m512i code = _mm512_sub_epi32(
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(0x7ffff)), lsb), 20),
      _mm512_set1_epi32(960));
  const __m512 ax = _mm512_castsi512_ps(a);
  const __m512i sub = _mm512_cvt_roundps_epi32(_mm512_mul_ps(ax, _mm512_set1_ps(512.0f)),
                                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  code = _mm512_mask_blend_epi32(_mm512_cmplt_epu32_mask(a, _mm512_set1_epi32(0x3c800000)), code, sub);
  code = _mm512_mask_blend_epi32(_mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x43e80000)), code,
                                 _mm512_set1_epi32(0x7e));
  code = _mm512_mask_blend_epi32(_mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000)), code,
                                 _mm512_set1_epi32(0x7f));
  return _mm512_cvtepi32_epi8(_mm512_or_si512(code, sign));
}
#elif ZO_WIRE_AVX2
inline __m128i fp8_codes8(__m256 x) {  // 8 codes in the low 8 bytes
  const __m256i u = _mm256_castps_si256(x);
  const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
  __m256i code = _mm256_sub_epi32(
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(0x7ffff)), lsb), 20),
      _mm256_set1_epi32(960));
  const __m256 m = _mm256_round_ps(_mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(512.0f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // a is non-negative as a signed integer, so signed comparisons order it correctly.
  code = _mm256_blendv_epi8(code, _mm256_cvttps_epi32(m), _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3c800000), a));
  code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7e), _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x43e7ffff)));
  code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7f), _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000)));
  code = _mm256_or_si256(code, sign);
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
  return _mm_packus_epi16(w, w);
}
#endif

// max |src[i]| over the non-NaN values (0 when there are none). max(x, acc) returns acc when x is
// NaN, and max is exact and order-free on the rest, so the vector lanes give the serial loop's value.
float abs_max(const float* src, size_t n) {
  size_t i = 0;
  float amax = 0.0f;
#if ZO_WIRE_AVX512
  __m512 acc = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) acc = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(src + i)), acc);
  amax = _mm512_reduce_max_ps(acc);
#elif ZO_WIRE_AVX2
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(src + i), abs_mask), acc);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float v : lanes) amax = std::max(amax, v);
#endif
  for (; i < n; i++) amax = std::max(amax, std::fabs(src[i]));  // NaN ignored
  return amax;
}

}  // namespace

void wire_fp8_codes(const float* src, size_t n, float scale, uint8_t* dst) {
  size_t i = 0;
#if ZO_WIRE_AVX512
  const __m512 s = _mm512_set1_ps(scale);
  for (; i + 16 <= n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), fp8_codes16(_mm512_div_ps(_mm512_loadu_ps(src + i), s)));
#elif ZO_WIRE_AVX2
  const __m256 s = _mm256_set1_ps(scale);
  for (; i + 8 <= n; i += 8)
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + i), fp8_codes8(_mm256_div_ps(_mm256_loadu_ps(src + i), s)));
#endif
  for (; i < n; i++) dst[i] = wire_fp8_code(src[i], scale);  // (x86's division keeps a NaN's sign, as here)
}

void wire_bf16_codes(const float* src, size_t n, uint16_t* dst) {
  size_t i = 0;
#if ZO_WIRE_AVX512
  // Non-temporal stores from the first 64-byte boundary of dst on: the codes are written once and
  // read next by the device's DMA, so the cache-line fetch an ordinary store makes first (a third
  // more memory traffic for the updater) is waste.
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 63) != 0; i++) dst[i] = f32_to_bf16(src[i]);
  auto codes16 = [](const float* p) {  // f32_to_bf16 on 16 lanes
    const __m512i u = _mm512_loadu_si512(p);
    const __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
    const __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q));
  };
  if (i + 32 <= n) {
    for (; i + 32 <= n; i += 32)
      _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i),
                          _mm512_inserti64x4(_mm512_castsi256_si512(codes16(src + i)), codes16(src + i + 16), 1));
    _mm_sfence();  // the streamed stores are ordered before whatever the caller publishes next
  }
#endif
  for (; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

bool wire_f16_codes(const float* src, size_t n, uint16_t* dst) {
  size_t i = 0;
  bool ok = true;
#if ZO_WIRE_AVX512
  __mmask16 overflow = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(src + i);
    __m512i h = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m512i u = _mm512_castps_si512(x);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    h = _mm512_mask_blend_epi32(
        nan, h, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000)),
                                _mm512_set1_epi32(0x7e00)));
    const __mmask16 finite = _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(3.4028234663852886e38f), _CMP_LE_OQ);
    overflow |= _mm512_mask_cmpeq_epi32_mask(finite, _mm512_and_si512(h, _mm512_set1_epi32(0x7c00)),
                                             _mm512_set1_epi32(0x7c00));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(h));
  }
  ok = overflow == 0;
#elif ZO_WIRE_AVX2
  __m256i overflow = _mm256_setzero_si256();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(src + i);
    __m256i h = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i u = _mm256_castps_si256(x);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    h = _mm256_blendv_epi8(h, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x8000)),
                                             _mm256_set1_epi32(0x7e00)),
                           nan);
    const __m256i finite = _mm256_castps_si256(
        _mm256_cmp_ps(_mm256_and_ps(x, abs_mask), _mm256_set1_ps(3.4028234663852886e38f), _CMP_LE_OQ));
    overflow = _mm256_or_si256(
        overflow, _mm256_and_si256(finite, _mm256_cmpeq_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7c00)),
                                                              _mm256_set1_epi32(0x7c00))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
  }
  ok = _mm256_testz_si256(overflow, overflow) != 0;
#endif
  for (; i < n; i++) {
    dst[i] = f32_to_f16(src[i]);
    ok = ok && ((dst[i] & 0x7c00u) != 0x7c00u || !std::isfinite(src[i]));
  }
  return ok;
}

#pragma GCC diagnostic pop

bool wire_encode(WireDType t, const float* src, size_t n, void* dst, float* scales) {
  bool ok = true;
  switch (t) {
    case WireDType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      break;
    case WireDType::BF16: {
      wire_bf16_codes(src, n, static_cast<uint16_t*>(dst));
      break;
    }
    case WireDType::F16: {
      ok = wire_f16_codes(src, n, static_cast<uint16_t*>(dst));
      break;
    }
    case WireDType::FP8: {
      auto* d = static_cast<uint8_t*>(dst);
      for (size_t g0 = 0; g0 < n; g0 += kWireGroup) {
        const size_t len = std::min(kWireGroup, n - g0);
        const float amax = abs_max(src + g0, len);
        const float s = wire_fp8_scale(amax);
        scales[g0 / kWireGroup] = s;
        wire_fp8_codes(src + g0, len, s, d + g0);
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
// Groups are handed out one at a time (dynamic): a group is tens of microseconds of work, and a
// static split leaves the whole team waiting for its slowest thread (on the H100 host, 16 threads
// kept 11 busy on average under a static split).
template <typename F>
bool for_groups(size_t n, F&& body) {
  const long groups = long(wire_groups(n));
  bool ok = true;
#pragma omp parallel for schedule(dynamic, 1) reduction(&& : ok) if (groups > 1)
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
