#include "core/cuda/check.h"
#include "core/cuda/wire.h"

namespace zo::cuda {
namespace {
template <WireDType T>
__global__ void decode_kernel(float* __restrict__ dst, const void* __restrict__ src, size_t n,
                              const float* __restrict__ scales) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = wire_value(T, src, i, T == WireDType::FP8 ? scales[i / kWireGroup] : 1.0f);
}
template <WireDType T>
__global__ void round_kernel(float* __restrict__ dst, const float* __restrict__ src, size_t n, int* overflow) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = src[i];
    if (T == WireDType::BF16) {
      dst[i] = wire_bf16_value(f32_to_bf16(x));
    } else {
      const uint16_t h = f32_to_f16(x);
      if ((h & 0x7c00u) == 0x7c00u && isfinite(x)) atomicOr(overflow, 1);
      dst[i] = wire_f16_value(h);
    }
  }
}

// fp8: one thread block per group of kWireGroup elements, scaled by wire_fp8_scale of the group's
// amax over the non-NaN values: max is exact and order-free, and fmaxf drops a NaN operand as the
// host's max does, so the reduction order changes no bit.
__global__ void round_fp8_kernel(float* __restrict__ dst, const float* __restrict__ src, size_t n) {
  __shared__ float part[256];
  const size_t g0 = size_t(blockIdx.x) * kWireGroup, len = n - g0 < kWireGroup ? n - g0 : kWireGroup;
  float a = 0.0f;
  for (size_t i = threadIdx.x; i < len; i += blockDim.x) a = fmaxf(fabsf(src[g0 + i]), a);
  part[threadIdx.x] = a;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) part[threadIdx.x] = fmaxf(part[threadIdx.x], part[threadIdx.x + s]);
    __syncthreads();
  }
  const float scale = wire_fp8_scale(part[0]);
  for (size_t i = threadIdx.x; i < len; i += blockDim.x)
    dst[g0 + i] = wire_fp8_scaled(wire_fp8_code(src[g0 + i], scale), scale);
}
}  // namespace

void wire_round(float* dst, const float* src, size_t n, WireDType t, int* overflow, void* stream) {
  if (n == 0) return;
  const unsigned blocks = unsigned(std::min<size_t>((n + 255) / 256, 65535u * 8));
  auto s = static_cast<cudaStream_t>(stream);
  switch (t) {
    case WireDType::F32: ZO_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, s)); return;
    case WireDType::BF16: round_kernel<WireDType::BF16><<<blocks, 256, 0, s>>>(dst, src, n, overflow); break;
    case WireDType::F16:
      ZO_CHECK(overflow, "wire_round: f16 needs an overflow flag");
      round_kernel<WireDType::F16><<<blocks, 256, 0, s>>>(dst, src, n, overflow);
      break;
    case WireDType::FP8: round_fp8_kernel<<<unsigned(wire_groups(n)), 256, 0, s>>>(dst, src, n); break;
  }
  ZO_CUDA_CHECK(cudaGetLastError());
}

void wire_decode(float* dst, const void* src, size_t n, const float* scales, WireDType t, void* stream) {
  if (n == 0) return;
  const unsigned blocks = unsigned(std::min<size_t>((n + 255) / 256, 65535u * 8));
  auto s = static_cast<cudaStream_t>(stream);
  switch (t) {
    case WireDType::F32: ZO_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, s)); return;
    case WireDType::BF16: decode_kernel<WireDType::BF16><<<blocks, 256, 0, s>>>(dst, src, n, scales); break;
    case WireDType::F16: decode_kernel<WireDType::F16><<<blocks, 256, 0, s>>>(dst, src, n, scales); break;
    case WireDType::FP8: decode_kernel<WireDType::FP8><<<blocks, 256, 0, s>>>(dst, src, n, scales); break;
  }
  ZO_CUDA_CHECK(cudaGetLastError());
}
}  // namespace zo::cuda
