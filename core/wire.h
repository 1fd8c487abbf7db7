// Wire dtypes: how a streamed block's f32 master weights travel to the device (offload/). The
// masters stay f32 on the host; what crosses the link is an encoding of them, decoded to f32 on
// the device before the working copies are formed. Updates are applied to the f32 masters, so the
// rounding of one upload never accumulates into the next.
//
//   f32    4 bytes, exact
//   bf16   2 bytes, round to nearest even (as torch's float32 -> bfloat16 cast)
//   f16    2 bytes, round to nearest even; |w| beyond 65504 is an error (use bf16)
//   fp8    1 byte, OCP FP8 E4M3 ("e4m3fn": bias 7, no infinities, S.1111.111 is NaN, max 448),
//          one f32 scale per group of kWireGroup consecutive elements of a tensor:
//          scale = amax / 448 (1 when that is not a positive finite float: an all-zero group, an
//          infinity in it, or an amax below 448 x 2^-150, which the division rounds to 0),
//          code = e4m3(w / scale) rounded to nearest even, saturated at +-448 (as torch's cast);
//          decoded w~ = e4m3_value(code) * scale. A NaN stays a NaN of its sign: its code is
//          S.1111.111 and it decodes to the quiet NaN of that sign without the multiply, whose NaN
//          result has the operand's bits on x86 and a canonical NaN on NVIDIA GPUs.
//
// The decoders are ZO_HD: the CUDA kernel (core/cuda/wire.cu) and the CPU reference are the same
// code, so a decoded block has the same bits on both.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/fp_codes.h"
#include "core/perturb.h"
#include "core/philox.h"  // ZO_HD

namespace zo {

enum class WireDType : uint8_t { F32 = 0, BF16 = 1, F16 = 2, FP8 = 3 };

// Elements per fp8 scale (64 KiB of f32 masters): fine enough to follow a tensor's range, coarse
// enough that the scales cost 1/16384 of the traffic.
constexpr size_t kWireGroup = 16384;

size_t wire_size(WireDType t);                     // bytes per element
const char* wire_name(WireDType t);                // "f32", "bf16", "f16", "fp8"
WireDType parse_wire_dtype(const std::string& s);  // throws with the accepted names
inline size_t wire_groups(size_t n) { return (n + kWireGroup - 1) / kWireGroup; }
inline bool wire_scaled(WireDType t) { return t == WireDType::FP8; }

ZO_HD float wire_bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

ZO_HD float wire_bf16_value(uint16_t h) { return wire_bits_to_f32(uint32_t(h) << 16); }

ZO_HD float wire_f16_value(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in f32
    float v = float(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return wire_bits_to_f32(sign | 0x7f800000u | (man << 13));
  return wire_bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

ZO_HD float wire_fp8_value(uint8_t b) {
  const uint32_t sign = uint32_t(b & 0x80u) << 24, exp = (b >> 3) & 0xfu, man = b & 0x7u;
  if (exp == 15 && man == 7) return wire_bits_to_f32(0x7fc00000u | sign);  // NaN
  if (exp == 0) {  // zero or subnormal: man * 2^-9
    float v = float(man) * 0.001953125f;
    return sign ? -v : v;
  }
  return wire_bits_to_f32(sign | ((exp + 120u) << 23) | (man << 20));
}

// The fp8 scale of a group whose largest magnitude (NaN ignored) is amax.
ZO_HD float wire_fp8_scale(float amax) {
  const float s = amax / 448.0f;
  return (s > 0.0f && s <= 3.4028234663852886e38f) ? s : 1.0f;
}
// An element's fp8 code under its group's scale, and its decoded value (NaN handled by its bits).
ZO_HD uint8_t wire_fp8_code(float w, float scale) {
  uint32_t u;
  memcpy(&u, &w, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint8_t(((u >> 24) & 0x80u) | 0x7fu);
  return f32_to_fp8_e4m3(w / scale);
}
ZO_HD float wire_fp8_scaled(uint8_t code, float scale) {
  return (code & 0x7fu) == 0x7fu ? wire_fp8_value(code) : wire_fp8_value(code) * scale;
}

// One element of an encoded range, decoded (scale: its group's scale; 1 for unscaled dtypes).
ZO_HD float wire_value(WireDType t, const void* src, size_t i, float scale) {
  switch (t) {
    case WireDType::F32: return static_cast<const float*>(src)[i];
    case WireDType::BF16: return wire_bf16_value(static_cast<const uint16_t*>(src)[i]);
    case WireDType::F16: return wire_f16_value(static_cast<const uint16_t*>(src)[i]);
    case WireDType::FP8: return wire_fp8_scaled(static_cast<const uint8_t*>(src)[i], scale);
  }
  return 0.0f;
}

// f32_to_fp8_e4m3 (round to nearest even, saturating at +-448, NaN stays NaN): core/fp_codes.h.

// The element conversions of wire_encode over arrays, vectorized where the CPU allows (the same bits
// as the scalar functions): dst[i] = wire_fp8_code(src[i], scale); dst[i] = f32_to_f16(src[i]),
// false if a finite value overflowed to infinity; dst[i] = f32_to_bf16(src[i]), with streaming stores
// on AVX-512 (dst is left out of the cache: it is meant for the device's DMA).
void wire_fp8_codes(const float* src, size_t n, float scale, uint8_t* dst);
bool wire_f16_codes(const float* src, size_t n, uint16_t* dst);
void wire_bf16_codes(const float* src, size_t n, uint16_t* dst);

// Encodes src[0, n) into dst (n * wire_size bytes) and, for fp8, scales[0, wire_groups(n)).
// Returns false (having written everything) if a finite value did not fit the dtype (f16 only).
// Groups are independent: encoding [a, b) with a a multiple of kWireGroup gives the same bytes as
// the corresponding part of a whole-tensor encoding. Runs in the calling thread.
bool wire_encode(WireDType t, const float* src, size_t n, void* dst, float* scales);
// dst[i] = wire_value(t, src, i, scales[i / kWireGroup]) (the CPU reference of the CUDA decoder).
void wire_decode(WireDType t, const void* src, size_t n, const float* scales, float* dst);

// wire_encode over OpenMP threads, group by group (the same bytes).
bool wire_encode_parallel(WireDType t, const float* src, size_t n, void* dst, float* scales);
// The streaming engine's host step for one tensor: core/perturb.h's zo_update of w[0, n) (tensor
// tid, momentum state m or null), then its re-encoding into dst/scales, one group at a time while the
// group is in cache, groups in parallel (OpenMP). The same bits as zo_update followed by wire_encode.
bool update_and_encode(float* w, float* m, size_t n, uint64_t tid, const UpdateTerm* terms, int q, Dist dist,
                       OptKind opt, float lr, float wd, float beta, WireDType t, void* dst, float* scales);

}  // namespace zo
