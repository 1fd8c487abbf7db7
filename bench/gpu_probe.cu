// GPU probe for bench/gpu.sh: the links and kernels the offload engine will be sized by, measured
// on the card at hand: pinned and pageable host-to-device bandwidth, device-to-device bandwidth,
// and the rate of zo's perturbation kernel (values/s, bit-identical to the CPU's by
// tests/test_cuda_perturb.cpp). Prints one JSON object.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/perturb.h"

namespace {

float elapsed_ms(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  ZO_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms;
}

// Best of `reps` timings of op() on the default stream, in ms.
template <typename F>
float best_ms(int reps, F&& op) {
  cudaEvent_t a, b;
  ZO_CUDA_CHECK(cudaEventCreate(&a));
  ZO_CUDA_CHECK(cudaEventCreate(&b));
  op();  // warm-up
  float best = 1e30f;
  for (int r = 0; r < reps; r++) {
    ZO_CUDA_CHECK(cudaEventRecord(a));
    op();
    ZO_CUDA_CHECK(cudaEventRecord(b));
    ZO_CUDA_CHECK(cudaEventSynchronize(b));
    best = std::min(best, elapsed_ms(a, b));
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return best;
}

}  // namespace

int main() {
  try {
    if (zo::cuda::device_count() == 0) {
      std::printf("{\"error\": \"no CUDA device\"}\n");
      return 1;
    }
    cudaDeviceProp prop{};
    ZO_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const size_t bytes = size_t(1) << 30;  // 1 GiB transfers
    void *pinned = nullptr, *dev = nullptr, *dev2 = nullptr;
    ZO_CUDA_CHECK(cudaMallocHost(&pinned, bytes));
    ZO_CUDA_CHECK(cudaMalloc(&dev, bytes));
    ZO_CUDA_CHECK(cudaMalloc(&dev2, bytes));
    std::vector<char> pageable(bytes, 1);
    std::memset(pinned, 1, bytes);
    float h2d_pinned = best_ms(5, [&] { ZO_CUDA_CHECK(cudaMemcpyAsync(dev, pinned, bytes, cudaMemcpyHostToDevice)); });
    float d2h_pinned = best_ms(5, [&] { ZO_CUDA_CHECK(cudaMemcpyAsync(pinned, dev, bytes, cudaMemcpyDeviceToHost)); });
    float h2d_pageable = best_ms(3, [&] { ZO_CUDA_CHECK(cudaMemcpy(dev, pageable.data(), bytes, cudaMemcpyHostToDevice)); });
    float d2d = best_ms(5, [&] { ZO_CUDA_CHECK(cudaMemcpyAsync(dev2, dev, bytes, cudaMemcpyDeviceToDevice)); });
    const size_t n = bytes / sizeof(float);
    float fill = best_ms(5, [&] { zo::cuda::fill_z(static_cast<float*>(dev), 7, 11, 0, n, zo::Dist::Gaussian, nullptr); });
    float pert = best_ms(5, [&] {
      zo::cuda::perturb_range(static_cast<float*>(dev2), static_cast<const float*>(dev), 1e-3f, 7, 11, 0, n,
                              zo::Dist::Gaussian, nullptr);
    });
    auto gbs = [&](float ms, double mult) { return mult * double(bytes) / (double(ms) * 1e6); };
    std::printf(
        "{\"device\": \"%s\", \"sm\": %d%d, \"multiprocessors\": %d, \"memory_gib\": %.1f, "
        "\"h2d_pinned_gb_s\": %.2f, \"d2h_pinned_gb_s\": %.2f, \"h2d_pageable_gb_s\": %.2f, "
        "\"d2d_gb_s_read_plus_write\": %.1f, \"fill_z_gvalues_s\": %.2f, \"perturb_gvalues_s\": %.2f}\n",
        prop.name, prop.major, prop.minor, prop.multiProcessorCount, double(prop.totalGlobalMem) / (1 << 30),
        gbs(h2d_pinned, 1), gbs(d2h_pinned, 1), gbs(h2d_pageable, 1), gbs(d2d, 2), double(n) / (fill * 1e6),
        double(n) / (pert * 1e6));
    cudaFreeHost(pinned);
    cudaFree(dev);
    cudaFree(dev2);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_probe: %s\n", e.what());
    return 1;
  }
}
