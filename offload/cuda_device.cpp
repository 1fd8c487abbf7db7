// StepDevice over the GPU engine (offload/gpu_engine.h), and the benchmark's link and GEMM probes.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/ops.h"

#include "core/cuda/perturb.h"
#include "core/error.h"
#include "offload/gpu_engine.h"
#include "offload/residency.h"
#include "zo/device.h"

namespace zo {
namespace {

cuda::GemmMode gemm_mode(const std::string& s) {
  if (s == "f32") return cuda::GemmMode::F32;
  if (s == "tf32") return cuda::GemmMode::TF32;
  if (s == "bf16") return cuda::GemmMode::BF16;
  fail("--gemm '{}': expected f32, tf32 or bf16", s);
}

class CudaDevice final : public StepDevice {
 public:
  CudaDevice(const Model& m, const DeviceOptions& o)
      : m_(m), o_(o), wire_(parse_wire_dtype(o.wire)), placement_(parse_placement(o.placement)),
        e_(m, GpuOptions{gemm_mode(o.gemm), o.gpu_mem, o.reserve, wire_, o.device_updates, o.device_updates_sequence,
                         placement_}),
        rp_(plan_residency(m, o.gpu_mem, o.reserve, wire_, o.device_updates != 0, placement_)) {}

  std::string describe() const override {
    const ResidencyPlan& p = rp_;  // (the engine's own plan: the same function of the same options)
    const int tw = e_.plan().two_way_blocks;
    std::string two_way;
    if (o_.device_updates < 0 && p.streamed_blocks > 0)
      two_way = "; streamed blocks updated on the device (sent back as f32) or on the host, the split chosen at each step";
    else if (tw)
      two_way = fmt::format("; {} streamed blocks updated on the device and sent back as f32", tw);
    return fmt::format("cuda ({} GEMMs): {}{}", o_.gemm, p.describe(m_, wire_), two_way);
  }
  std::vector<std::vector<double>> versions(const Batch& b, const std::vector<int32_t>*, const std::vector<int32_t>& rows,
                                            const std::vector<int32_t>& ids, const std::vector<uint64_t>& seeds,
                                            const std::vector<int>& dir, const std::vector<float>& scale, Dist dist,
                                            const std::vector<uint8_t>& trainable) override {
    return e_.version_logprobs(b, rows, ids, seeds, dir, scale, dist, trainable);
  }
  std::vector<double> logprobs(const Batch& b, const std::vector<int32_t>*, const std::vector<int32_t>& rows,
                               const std::vector<int32_t>& ids) override {
    return e_.target_logprobs(b, rows, ids);
  }
  void update(const std::vector<UpdateTerm>& terms, Dist dist, OptKind opt, float lr, float wd, float beta,
              const std::vector<uint8_t>& trainable) override {
    ZO_CHECK(terms.size() <= 16, "--device cuda: at most 16 directions per step (got {})", terms.size());
    e_.update(terms, dist, opt, lr, wd, beta, trainable);
  }
  void sync_host(Model& m) override { e_.download(m); }
  nlohmann::json stats() const override {
    const GpuEngine::Stats s = e_.stats();
    return {{"passes", s.passes},
            {"bytes_h2d", s.bytes_h2d},
            {"bytes_d2h", s.bytes_d2h},
            {"upload_seconds", s.upload_seconds},
            {"block_compute_seconds", s.block_compute_seconds},
            {"pass_seconds", s.pass_seconds},
            {"host_update_seconds", s.host_update_seconds},
            {"host_updated_weights", s.host_updated_weights},
            {"host_wait_seconds", s.host_wait_seconds},
            {"device_peak_bytes", s.device_peak_bytes},
            {"device_used_peak_bytes", s.device_used_peak_bytes},
            {"gemm_seconds", s.gemm_seconds},
            {"gemm_flop", s.gemm_flop},
            {"pass_seconds_each", s.pass_seconds_each},
            {"two_way_chosen", s.two_way_chosen},
            {"two_way_model_seconds", s.two_way_model_seconds}};
  }
  nlohmann::json plan() const override {
    const GpuEngine::Plan p = e_.plan();
    return {{"resident_blocks", p.resident_blocks}, {"streamed_blocks", p.streamed_blocks},
            {"resident_bytes", p.resident_bytes},   {"fixed_bytes", p.fixed_bytes},
            {"ring_bytes", p.ring_bytes},           {"host_shadow_bytes", p.shadow_bytes},
            {"streamed_bytes_per_pass", p.streamed_per_pass}, {"wire", wire_name(p.wire)},
            {"two_way_blocks", p.two_way_blocks},   {"sent_back_bytes_per_step", p.back_per_step},
            {"host_updated_weights", p.host_updated_numel},
            {"gemm", o_.gemm},
            {"placement", placement_name(rp_.placement)}};
  }
  void reset_stats() override { e_.reset_stats(); }

 private:
  const Model& m_;
  DeviceOptions o_;
  WireDType wire_;
  Placement placement_;
  mutable GpuEngine e_;
  ResidencyPlan rp_;
};

}  // namespace

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
struct Ev {
  cudaEvent_t e = nullptr;
  Ev() { ZO_CUDA_CHECK(cudaEventCreate(&e)); }
  ~Ev() { cudaEventDestroy(e); }
};
}  // namespace

double cuda_h2d_pinned_gbs(size_t bytes) {
  void* h = nullptr;
  void* d = nullptr;
  ZO_CUDA_CHECK(cudaHostAlloc(&h, bytes, cudaHostAllocDefault));
  std::memset(h, 1, bytes);
  ZO_CUDA_CHECK(cudaMalloc(&d, bytes));
  Ev a, b;
  std::vector<double> r;
  for (int i = 0; i < 6; i++) {
    ZO_CUDA_CHECK(cudaEventRecord(a.e));
    ZO_CUDA_CHECK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice));
    ZO_CUDA_CHECK(cudaEventRecord(b.e));
    ZO_CUDA_CHECK(cudaEventSynchronize(b.e));
    float ms = 0;
    ZO_CUDA_CHECK(cudaEventElapsedTime(&ms, a.e, b.e));
    if (i > 0) r.push_back(double(bytes) / (ms * 1e-3) / 1e9);
  }
  cudaFree(d);
  cudaFreeHost(h);
  return median(r);
}

double cuda_gemm_tflops(const std::string& gemm, int M, int N, int K) {
  float *x = nullptr, *w = nullptr, *y = nullptr;
  ZO_CUDA_CHECK(cudaMalloc(&x, sizeof(float) * size_t(M) * K));
  ZO_CUDA_CHECK(cudaMalloc(&w, sizeof(float) * size_t(N) * K));
  ZO_CUDA_CHECK(cudaMalloc(&y, sizeof(float) * size_t(M) * N));
  cudaStream_t st;
  ZO_CUDA_CHECK(cudaStreamCreate(&st));
  // Random operands (zeros draw less power and run faster than real weights would).
  cuda::fill_z(x, 1, 1, 0, size_t(M) * K, Dist::Gaussian, st);
  cuda::fill_z(w, 1, 2, 0, size_t(N) * K, Dist::Gaussian, st);
  void* blas = cuda::cublas_create(st);
  const cuda::GemmMode mode = gemm_mode(gemm);
  Ev a, b;
  std::vector<double> r;
  for (int i = 0; i < 12; i++) {
    ZO_CUDA_CHECK(cudaEventRecord(a.e, st));
    cuda::linear(blas, y, x, w, nullptr, M, N, K, false, mode, st);
    ZO_CUDA_CHECK(cudaEventRecord(b.e, st));
    ZO_CUDA_CHECK(cudaEventSynchronize(b.e));
    float ms = 0;
    ZO_CUDA_CHECK(cudaEventElapsedTime(&ms, a.e, b.e));
    if (i >= 2) r.push_back(2.0 * M * N * K / (ms * 1e-3) / 1e12);
  }
  cuda::cublas_destroy(blas);
  cudaStreamDestroy(st);
  cudaFree(x);
  cudaFree(w);
  cudaFree(y);
  return median(r);
}

std::string cuda_device_name() {
  cudaDeviceProp p{};
  if (cuda::device_count() == 0 || cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "none";
  return p.name;
}

bool cuda_built() { return true; }
int cuda_devices() { return cuda::device_count(); }

std::unique_ptr<StepDevice> make_cuda_device(const Model& m, const DeviceOptions& o) {
  ZO_CHECK(cuda::device_count() > 0, "--device cuda: no CUDA device is visible (no driver or no GPU)");
  return std::make_unique<CudaDevice>(m, o);
}

}  // namespace zo
