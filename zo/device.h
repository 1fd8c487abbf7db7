// Where a ZO step runs: the CPU (zo/spsa.h's own block-wise pass, the reference) or a device that
// runs the same versions and applies the same updates (the GPU engine of offload/, built only with
// the CUDA toolkit). Spsa keeps the bookkeeping (directions, projected gradients, the log); the
// device keeps the weights it computes with and applies each logged update as it is made.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/perturb.h"
#include "models/forward.h"

namespace zo {

struct DeviceOptions {
  std::string gemm = "tf32";   // f32 | tf32 | bf16: cuBLAS compute mode of the GEMMs
  size_t gpu_mem = 0;          // bytes for weights and buffers on the device; 0: everything resident
  size_t reserve = 0;          // bytes of gpu_mem kept for activations
  std::string wire = "f32";    // f32 | bf16 | f16 | fp8: how streamed blocks travel (core/wire.h)
  int device_updates = 0;      // streamed blocks updated on the device, two-way (offload/gpu_engine.h); -1: auto
  std::vector<int> device_updates_sequence;  // tests: auto's split forced, update by update (GpuOptions)
  std::string placement = "auto";  // which blocks stream (offload/residency.h): auto, or tail | spread | first (benchmarks)
};

class StepDevice {
 public:
  virtual ~StepDevice() = default;
  virtual std::string describe() const = 0;  // the device and the residency plan, one line
  // Version k runs the weights W + scale[k] z(seeds[dir[k]]) (dir -1 or scale 0: the masters);
  // parameters with trainable[i] == 0 are never perturbed. Target log-probabilities per version.
  // keep (may be null): the rows the last block must produce (Engine::forward's keep_from); a
  // device may compute more.
  virtual std::vector<std::vector<double>> versions(const Batch& b, const std::vector<int32_t>* keep,
                                                    const std::vector<int32_t>& rows,
                                                    const std::vector<int32_t>& ids, const std::vector<uint64_t>& seeds,
                                                    const std::vector<int>& dir, const std::vector<float>& scale,
                                                    Dist dist, const std::vector<uint8_t>& trainable) = 0;
  virtual std::vector<double> logprobs(const Batch& b, const std::vector<int32_t>* keep, const std::vector<int32_t>& rows,
                                       const std::vector<int32_t>& ids) = 0;
  // core/perturb.h's zo_update on every trainable parameter (wd only where Param::decay).
  virtual void update(const std::vector<UpdateTerm>& terms, Dist dist, OptKind opt, float lr, float wd, float beta,
                      const std::vector<uint8_t>& trainable) = 0;
  // Makes the model's host masters equal to the device's weights.
  virtual void sync_host(Model& m) = 0;
  virtual nlohmann::json stats() const = 0;  // bytes moved, link time, peak memory (offload/gpu_engine.h)
  virtual nlohmann::json plan() const = 0;
  virtual void reset_stats() = 0;
};

// --device-updates (DeviceOptions::device_updates) against the other flags: `zo train` and
// `zo bench train` check it alike.
inline void check_device_updates(int device_updates, const std::string& device, double gpu_mem) {
  ZO_CHECK(device_updates >= -1, "--device-updates: a number of blocks >= 0, or auto");
  ZO_CHECK(device_updates == 0 || (device == "cuda" && gpu_mem > 0),
           "--device-updates applies to streamed blocks: --device cuda with --gpu-mem");
}

bool cuda_built();   // was this zo built with the CUDA toolkit
int cuda_devices();  // usable CUDA devices (0 without a driver or a GPU, or when not built with CUDA)
// The GPU engine over m (which must outlive it). Throws a one-line error without CUDA or a GPU.
std::unique_ptr<StepDevice> make_cuda_device(const Model& m, const DeviceOptions& o);

// Measured in the calling run, for the benchmark's ratios: the pinned host-to-device copy rate
// (GB/s, median of 5 copies of `bytes`), and cuBLAS's rate on one y[M,N] = x[M,K] W[N,K]^T in
// the given mode (TFLOP/s, median of 10 after a warm-up).
double cuda_h2d_pinned_gbs(size_t bytes);
double cuda_gemm_tflops(const std::string& gemm, int M, int N, int K);
std::string cuda_device_name();

}  // namespace zo
