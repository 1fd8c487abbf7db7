// The device decoder of core/wire.h: a streamed block's wire bytes into f32, with the same ZO_HD
// functions as the CPU reference (wire_decode), so both give the same bits.
#pragma once
#include <cstddef>

#include "core/wire.h"

namespace zo::cuda {
// dst[i] = wire_value(t, src, i, scales[i / kWireGroup]) for i < n; src, scales (fp8 only) and dst
// are device pointers; stream is a cudaStream_t passed as void*.
void wire_decode(float* dst, const void* src, size_t n, const float* scales, WireDType t, void* stream);
}  // namespace zo::cuda
