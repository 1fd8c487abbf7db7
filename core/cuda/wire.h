// The device side of core/wire.h: a streamed block's wire bytes decoded into f32, and f32 weights
// rounded as a trip over the wire would round them, with the same ZO_HD functions as the CPU
// reference (wire_encode, wire_decode), so both give the same bits.
#pragma once
#include <cstddef>

#include "core/wire.h"

namespace zo::cuda {
// dst[i] = wire_value(t, src, i, scales[i / kWireGroup]) for i < n; src, scales (fp8 only) and dst
// are device pointers; stream is a cudaStream_t passed as void*.
void wire_decode(float* dst, const void* src, size_t n, const float* scales, WireDType t, void* stream);

// dst = wire_decode(wire_encode(src)) for one tensor's n elements (fp8 groups from its first
// element): what the forward of a block sees when it travels in the wire dtype, for a block that
// came up as f32 (a two-way block). dst and src may not overlap. overflow (device memory; f16
// only, may be null otherwise) is set to 1 where a finite value became infinite, the case in which
// the host's encoder reports failure.
void wire_round(float* dst, const float* src, size_t n, WireDType t, int* overflow, void* stream);
}  // namespace zo::cuda
