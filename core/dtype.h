// Storage dtypes and the scalar conversions between them. Computation is always f32; f16 and bf16
// are storage formats only (bf16 master weights halve memory; f16/bf16 come from checkpoints).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/fp_codes.h"

namespace zo {

enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType t);
const char* dtype_name(DType t);            // "F32", "BF16", ... as safetensors spells them
bool dtype_from_name(std::string_view s, DType* out);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// f32_to_bf16 and f32_to_f16: core/fp_codes.h.
float f16_to_f32(uint16_t h);

// Convert n elements of src (dtype t) to f32. Throws for non-float dtypes.
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace zo
