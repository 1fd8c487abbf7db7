// Host-callable launchers for core CUDA kernels. No CUDA types in this header (streams are void*).
#pragma once
#include <cstddef>
#include <cstdint>

namespace zo::cuda {
// Widen n bf16 values to f32 on the device; returns the cudaError_t of the launch (0 = success).
int launch_bf16_to_f32(float* out, const uint16_t* in, size_t n, void* stream);
}  // namespace zo::cuda
