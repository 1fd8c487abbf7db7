// Dequantization of ggml block formats to f32, bit-exact with `gguf.quants.dequantize` (Python).
// Exactness does not depend on FMA contraction: in every format the scale is an f16 (11-bit
// significand) times small integers (at most 23 bits in all), so every product is exact in f32
// and the only rounding is the final add of the min/offset, fused or not.
// Block layouts (bytes) follow ggml-common.h; "d" and "m" are f16. Sources may be unaligned: all
// loads go through memcpy.
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "models/gguf.h"

namespace zo {

namespace {

constexpr int QK = 32;    // block size of the legacy formats
constexpr int QK_K = 256; // super-block size of the k-quants

inline float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Q4_0 (18 bytes): d, qs[16]; low nibbles are values 0..15, high nibbles 16..31; x = d * (q - 8).
void q4_0(const uint8_t* b, float* y) {
  float d = half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < QK / 2; j++) {
    y[j] = d * float(int(qs[j] & 0xF) - 8);
    y[j + QK / 2] = d * float(int(qs[j] >> 4) - 8);
  }
}

// Q4_1 (20 bytes): d, m, qs[16]; x = d * q + m.
void q4_1(const uint8_t* b, float* y) {
  float d = half(b), m = half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < QK / 2; j++) {
    y[j] = d * float(qs[j] & 0xF) + m;
    y[j + QK / 2] = d * float(qs[j] >> 4) + m;
  }
}

// Q5_0 (22 bytes): d, qh (u32: bit i is the 5th bit of value i), qs[16]; x = d * (q - 16).
void q5_0(const uint8_t* b, float* y) {
  float d = half(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < QK / 2; j++) {
    int lo = int((qs[j] & 0xF) | ((qh >> j) & 1) << 4);
    int hi = int((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
    y[j] = d * float(lo - 16);
    y[j + QK / 2] = d * float(hi - 16);
  }
}

// Q5_1 (24 bytes): d, m, qh, qs[16]; x = d * q + m.
void q5_1(const uint8_t* b, float* y) {
  float d = half(b), m = half(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < QK / 2; j++) {
    uint32_t lo = (qs[j] & 0xF) | ((qh >> j) & 1) << 4;
    uint32_t hi = (qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
    y[j] = d * float(lo) + m;
    y[j + QK / 2] = d * float(hi) + m;
  }
}

// Q8_0 (34 bytes): d, int8 qs[32]; x = q * d.
void q8_0(const uint8_t* b, float* y) {
  float d = half(b);
  for (int j = 0; j < QK; j++) y[j] = float(int8_t(b[2 + j])) * d;
}

// Q2_K (84 bytes): scales[16] (low nibble scale, high nibble min), qs[64] (2 bits), d, dmin.
// Value e (0..255): 2-bit field (e/32)%4 of qs[(e/128)*32 + e%32]; group of 16 = e/16.
void q2_k(const uint8_t* b, float* y) {
  const uint8_t* sc = b;
  const uint8_t* qs = b + 16;
  float d = half(b + 80), dmin = half(b + 82);
  for (int e = 0; e < QK_K; e++) {
    int g = e / 16;
    int q = (qs[(e / 128) * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
    float dl = d * float(sc[g] & 0xF), ml = dmin * float(sc[g] >> 4);
    y[e] = dl * float(q) - ml;
  }
}

// Q3_K (110 bytes): hmask[32], qs[64] (low 2 bits), scales[12] (16 x 6-bit, biased by 32), d.
// A cleared hmask bit subtracts 4 from the value.
void q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* qs = b + 32;
  const uint8_t* s = b + 96;
  float d = half(b + 108);
  float dl[16];
  for (int i = 0; i < 16; i++) {
    int lo = (i < 8 ? s[i] : s[i - 8] >> 4) & 0xF;
    int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    dl[i] = d * float(int8_t(uint8_t(lo | hi << 4)) - 32);
  }
  for (int e = 0; e < QK_K; e++) {
    int l = e % 32, k = e / 32;
    int ql = (qs[(k / 4) * 32 + l] >> (2 * (k % 4))) & 3;
    int qh = ((hm[l] >> k) & 1) ^ 1;
    y[e] = dl[e / 16] * float(ql - (qh << 2));
  }
}

// The 12-byte scale/min block shared by Q4_K and Q5_K: 8 pairs of 6-bit values.
void scale_min_k4(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K (144 bytes): d, dmin, scales[12], qs[128]. Groups of 32: group g uses nibble g%2 of
// qs[(g/2)*32 + l]; x = d*sc * q - dmin*m.
void q4_k(const uint8_t* b, float* y) {
  float d = half(b), dmin = half(b + 2);
  const uint8_t* qs = b + 16;
  for (int g = 0; g < 8; g++) {
    int sc, m;
    scale_min_k4(b + 4, g, &sc, &m);
    float dl = d * float(sc), ml = dmin * float(m);
    for (int l = 0; l < 32; l++) {
      int q = (qs[(g / 2) * 32 + l] >> (4 * (g % 2))) & 0xF;
      y[g * 32 + l] = dl * float(q) - ml;
    }
  }
}

// Q5_K (176 bytes): d, dmin, scales[12], qh[32] (bit g of qh[l] is the 5th bit), qs[128].
void q5_k(const uint8_t* b, float* y) {
  float d = half(b), dmin = half(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int g = 0; g < 8; g++) {
    int sc, m;
    scale_min_k4(b + 4, g, &sc, &m);
    float dl = d * float(sc), ml = dmin * float(m);
    for (int l = 0; l < 32; l++) {
      int q = ((qs[(g / 2) * 32 + l] >> (4 * (g % 2))) & 0xF) | ((qh[l] >> g) & 1) << 4;
      y[g * 32 + l] = dl * float(q) - ml;
    }
  }
}

// Q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], d; x = d*sc*(q-32).
// Value e = a*128 + r (a = half, r < 128): low nibble (r/64) of ql[a*64 + r%64], 2-bit field
// (r/32) of qh[a*32 + r%32].
void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  float d = half(b + 208);
  for (int e = 0; e < QK_K; e++) {
    int a = e / 128, r = e % 128;
    int lo = (ql[a * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
    int hi = (qh[a * 32 + r % 32] >> (2 * (r / 32))) & 3;
    y[e] = (d * float(sc[e / 16])) * float((lo | hi << 4) - 32);
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return q4_0;
    case GgmlType::Q4_1: return q4_1;
    case GgmlType::Q5_0: return q5_0;
    case GgmlType::Q5_1: return q5_1;
    case GgmlType::Q8_0: return q8_0;
    case GgmlType::Q2_K: return q2_k;
    case GgmlType::Q3_K: return q3_k;
    case GgmlType::Q4_K: return q4_k;
    case GgmlType::Q5_K: return q5_k;
    case GgmlType::Q6_K: return q6_k;
    default: return nullptr;
  }
}

// Below this many values the OpenMP fork costs more than the work.
constexpr int64_t kParallelMin = 1 << 15;

}  // namespace

const char* ggml_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::Q4_0: return "Q4_0";
    case GgmlType::Q4_1: return "Q4_1";
    case GgmlType::Q5_0: return "Q5_0";
    case GgmlType::Q5_1: return "Q5_1";
    case GgmlType::Q8_0: return "Q8_0";
    case GgmlType::Q8_1: return "Q8_1";
    case GgmlType::Q2_K: return "Q2_K";
    case GgmlType::Q3_K: return "Q3_K";
    case GgmlType::Q4_K: return "Q4_K";
    case GgmlType::Q5_K: return "Q5_K";
    case GgmlType::Q6_K: return "Q6_K";
    case GgmlType::Q8_K: return "Q8_K";
    case GgmlType::BF16: return "BF16";
  }
  return "?";
}

int64_t ggml_block_size(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: return 1;
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::Q8_0: case GgmlType::Q8_1: return QK;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K:
    case GgmlType::Q6_K: case GgmlType::Q8_K: return QK_K;
  }
  return 0;
}

size_t ggml_type_size(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 4;
    case GgmlType::F16: return 2;
    case GgmlType::BF16: return 2;
    case GgmlType::Q4_0: return 18;
    case GgmlType::Q4_1: return 20;
    case GgmlType::Q5_0: return 22;
    case GgmlType::Q5_1: return 24;
    case GgmlType::Q8_0: return 34;
    case GgmlType::Q8_1: return 36;  // ggml's block_q8_1: half2 (d, s) + 32 int8
    case GgmlType::Q2_K: return 84;
    case GgmlType::Q3_K: return 110;
    case GgmlType::Q4_K: return 144;
    case GgmlType::Q5_K: return 176;
    case GgmlType::Q6_K: return 210;
    case GgmlType::Q8_K: return 292;  // f32 d + 256 int8 + 16 int16 sums
  }
  return 0;
}

bool ggml_can_dequantize(GgmlType t) {
  return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16 || block_fn(t) != nullptr;
}

void gguf_dequantize(GgmlType t, const void* src, float* dst, int64_t n) {
  if (!ggml_can_dequantize(t)) fail("gguf_dequantize: cannot dequantize type {} ({})", ggml_type_name(t), uint32_t(t));
  int64_t bs = ggml_block_size(t);
  if (n < 0 || n % bs != 0) fail("gguf_dequantize: {} values is not a multiple of the {} block size {}", n, ggml_type_name(t), bs);
  const uint8_t* s = static_cast<const uint8_t*>(src);
  if (t == GgmlType::F32) {
    std::memcpy(dst, s, size_t(n) * 4);
    return;
  }
  if (t == GgmlType::F16 || t == GgmlType::BF16) {
    bool bf = t == GgmlType::BF16;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; i++) {
      uint16_t h;
      std::memcpy(&h, s + 2 * i, 2);
      dst[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
    }
    return;
  }
  BlockFn fn = block_fn(t);
  int64_t nb = n / bs;
  size_t ts = ggml_type_size(t);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < nb; i++) fn(s + size_t(i) * ts, dst + i * bs);
}

}  // namespace zo
