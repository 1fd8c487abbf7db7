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
}  // namespace

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
