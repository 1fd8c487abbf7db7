// First CUDA kernel: bf16 -> f32 widening of a weight block (what a device-side working copy needs
// before a GEMM). The CUDA backend proper arrives with its own issue; this proves the toolchain.
#include <cstdint>

#include "core/cuda/convert.h"

namespace zo::cuda {

// out[i] = float(in[i]); bf16 is the top half of an IEEE float32, so widening is a shift.
__global__ void bf16_to_f32_kernel(float* __restrict__ out, const uint16_t* __restrict__ in, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __uint_as_float(uint32_t(in[i]) << 16);
}

int launch_bf16_to_f32(float* out, const uint16_t* in, size_t n, void* stream) {
  if (n == 0) return 0;
  unsigned blocks = unsigned((n + 255) / 256);
  bf16_to_f32_kernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(out, in, n);
  return int(cudaGetLastError());
}

}  // namespace zo::cuda
