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
#include "core/cuda/ops.h"
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
    // One OPT-13B block for one version (16 sequences of 128 tokens, tf32 GEMMs), op by op: where a
    // resident step's time goes (a step runs this twice per block, plus the update's z).
    const int M = 2048, C = 5120, F = 20480, H = 40, D = 128, T = 128;
    auto dalloc = [](size_t n) {
      float* p = nullptr;
      ZO_CUDA_CHECK(cudaMalloc(&p, n * sizeof(float)));
      zo::cuda::fill_z(p, 99, n, 0, n, zo::Dist::Gaussian, nullptr);  // never time zeros
      return p;
    };
    const size_t nw = size_t(3 * C) * C + size_t(C) * C + 2 * size_t(F) * C;
    float *wts = dalloc(nw), *wv = dalloc(nw), *bias = dalloc(size_t(F)), *x = dalloc(size_t(M) * C),
          *hbuf = dalloc(size_t(M) * C), *qkv = dalloc(size_t(M) * 3 * C), *att = dalloc(size_t(M) * C),
          *ffn = dalloc(size_t(M) * F);
    void* blas = zo::cuda::cublas_create(nullptr);
    const auto tf32 = zo::cuda::GemmMode::TF32;
    float* Wqkv = wts;
    float* Wo = Wqkv + size_t(3 * C) * C;
    float* W1 = Wo + size_t(C) * C;
    float* W2 = W1 + size_t(F) * C;
    const float t_perturb = best_ms(3, [&] { zo::cuda::perturb_range(wv, wts, 1e-3f, 7, 3, 0, nw, zo::Dist::Gaussian, nullptr); });
    const float t_qkv = best_ms(3, [&] { zo::cuda::linear(blas, qkv, hbuf, Wqkv, bias, M, 3 * C, C, false, tf32, nullptr); });
    const float t_o = best_ms(3, [&] { zo::cuda::linear(blas, x, att, Wo, bias, M, C, C, true, tf32, nullptr); });
    const float t_fc1 = best_ms(3, [&] { zo::cuda::linear(blas, ffn, hbuf, W1, bias, M, F, C, false, tf32, nullptr); });
    const float t_fc2 = best_ms(3, [&] { zo::cuda::linear(blas, x, ffn, W2, bias, M, C, F, true, tf32, nullptr); });
    std::vector<zo::AttnArgs> args;
    for (int s0 = 0; s0 < M / T; s0++)
      args.push_back(zo::AttnArgs{att + size_t(s0) * T * C, C, qkv + size_t(s0) * T * 3 * C, 3 * C,
                                  qkv + size_t(s0) * T * 3 * C + C, 3 * C, qkv + size_t(s0) * T * 3 * C + 2 * C, 3 * C,
                                  T, T, 0, H, H, D, 0.0883883476f});
    zo::AttnArgs* dargs = nullptr;
    ZO_CUDA_CHECK(cudaMalloc(&dargs, sizeof(zo::AttnArgs) * args.size()));
    const float t_att = best_ms(3, [&] { zo::cuda::attention(args.data(), int(args.size()), dargs, nullptr); });
    // Each way of loading attention's key/value tiles (core/cuda/ops.h), the default restored after.
    float t_att_load[3];
    const zo::cuda::AttnTileLoad default_load = zo::cuda::attention_tile_load();
    for (int v = 0; v < 3; v++) {
      zo::cuda::set_attention_tile_load(zo::cuda::AttnTileLoad(v));
      t_att_load[v] = best_ms(5, [&] { zo::cuda::attention(args.data(), int(args.size()), dargs, nullptr); });
    }
    zo::cuda::set_attention_tile_load(default_load);
    std::fprintf(stderr, "attention tile loads, ms (default %s): scalar %.3f | float4 %.3f | float4-prefetch %.3f\n",
                 zo::cuda::attention_tile_load_name(default_load), t_att_load[0], t_att_load[1], t_att_load[2]);
    const float t_ln = best_ms(3, [&] { zo::cuda::layernorm(hbuf, x, bias, bias, M, C, 1e-5f, nullptr); });
    const float t_relu = best_ms(3, [&] { zo::cuda::relu_inplace(ffn, size_t(M) * F, nullptr); });
    const double gemm_flop = 2.0 * M * double(nw);
    const float t_gemms = t_qkv + t_o + t_fc1 + t_fc2;
    const float t_block = t_perturb + t_gemms + t_att + 2 * t_ln + t_relu;
    std::fprintf(stderr,
                 "OPT-13B block, one version, ms: perturb %.3f | GEMMs %.3f (qkv %.3f, o %.3f, fc1 %.3f, fc2 %.3f; %.0f "
                 "TFLOP/s) | attention %.3f | layernorm %.3f x2 | relu %.3f | sum %.3f -> x80 + update z: %.3f s/step\n",
                 t_perturb, t_gemms, t_qkv, t_o, t_fc1, t_fc2, gemm_flop / (double(t_gemms) * 1e9), t_att, t_ln, t_relu,
                 t_block, (80.0 * t_block + 40.0 * t_perturb) / 1e3);
    zo::cuda::cublas_destroy(blas);
    for (float* p : {wts, wv, bias, x, hbuf, qkv, att, ffn}) cudaFree(p);
    cudaFree(dargs);
    std::printf(
        "{\"device\": \"%s\", \"sm\": %d%d, \"multiprocessors\": %d, \"memory_gib\": %.1f, "
        "\"h2d_pinned_gb_s\": %.2f, \"d2h_pinned_gb_s\": %.2f, \"h2d_pageable_gb_s\": %.2f, "
        "\"d2d_gb_s_read_plus_write\": %.1f, \"fill_z_gvalues_s\": %.2f, \"perturb_gvalues_s\": %.2f, "
        "\"opt13b_block_ms\": {\"perturb\": %.3f, \"gemm_qkv\": %.3f, \"gemm_o\": %.3f, \"gemm_fc1\": %.3f, "
        "\"gemm_fc2\": %.3f, \"attention\": %.3f, \"layernorm\": %.3f, \"relu\": %.3f}, "
        "\"attention_tile_load_ms\": {\"scalar\": %.3f, \"float4\": %.3f, \"float4_prefetch\": %.3f}}\n",
        prop.name, prop.major, prop.minor, prop.multiProcessorCount, double(prop.totalGlobalMem) / (1 << 30),
        gbs(h2d_pinned, 1), gbs(d2h_pinned, 1), gbs(h2d_pageable, 1), gbs(d2d, 2), double(n) / (fill * 1e6),
        double(n) / (pert * 1e6), t_perturb, t_qkv, t_o, t_fc1, t_fc2, t_att, t_ln, t_relu, t_att_load[0],
        t_att_load[1], t_att_load[2]);
    cudaFreeHost(pinned);
    cudaFree(dev);
    cudaFree(dev2);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_probe: %s\n", e.what());
    return 1;
  }
}
