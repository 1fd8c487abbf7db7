// The forward pass on one GPU with every weight resident: the CUDA mirror of models/forward.h's
// Engine, block by block, on the kernels of core/cuda/ops.h and cuBLAS. The CPU Engine is the
// reference it is tested against (tests/test_cuda_forward.cpp). No CUDA type in this header.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/cuda/ops.h"
#include "core/perturb.h"
#include "core/wire.h"
#include "models/forward.h"
#include "offload/residency.h"

namespace zo {

struct GpuOptions {
  cuda::GemmMode mode = cuda::GemmMode::F32;
  size_t gpu_mem = 0;  // bytes for weights on the device; 0: everything resident
  size_t reserve = 0;  // bytes of gpu_mem kept for activations
  WireDType wire = WireDType::F32;  // how streamed blocks travel (core/wire.h); resident ones stay f32
  // Streamed blocks (the first ones that stream, at most all) updated on the device instead of the
  // host, ZO2's two-way traffic: such a block travels up as its f32 masters, the step's pending
  // update is applied to it on the device (the same bits as the host's), and the updated masters
  // travel back while the block computes. It relieves a host whose cores cannot regenerate z for
  // every streamed weight in a step's time, at the price of f32 ring slots and the link's other
  // direction. 0: one-way only; -1: auto, chosen again at each update from the last step's
  // measured host time per block and link time per one-way and two-way block.
  int device_updates = 0;
  // Tests, with device_updates -1: the split at the k-th update is device_updates_sequence[k % size]
  // instead of auto's measured choice (exercises blocks switching between one-way and two-way).
  std::vector<int> device_updates_sequence;
  Placement placement = Placement::Auto;  // which blocks stream (offload/residency.h)
};

class GpuEngine {
 public:
  // Uploads the model's weights (f32 on the device, whatever the host storage).
  GpuEngine(const Model& m, cuda::GemmMode mode = cuda::GemmMode::F32);
  // With gpu_mem: the globals and as many blocks as fit stay resident; the other blocks are streamed
  // from the model's (f32) masters, which are pinned, uploaded once per pass into two ring slots
  // and updated on the host (ZO2 with one-way traffic). With a wire dtype other than f32 the host
  // keeps a pinned encoded shadow of the streamed blocks, re-encoded block by block right after each
  // block's host update; the device decodes a block once per pass. The model must outlive the engine.
  GpuEngine(const Model& m, const GpuOptions& o);
  struct Plan {
    int resident_blocks, streamed_blocks;
    size_t resident_bytes, ring_bytes;
    size_t fixed_bytes;         // globals' perturbed copies, working copy, decode buffer, ring slots
    size_t shadow_bytes;        // pinned host memory of the wire shadow (0 for f32)
    size_t streamed_per_pass;   // bytes host to device per pass (weights in the wire dtype, plus fp8 scales;
                                // f32 for two-way blocks)
    WireDType wire;
    int two_way_blocks;         // streamed blocks updated on the device (GpuOptions::device_updates)
    size_t back_per_step;       // bytes device to host per step (the two-way blocks' f32 masters)
    size_t host_updated_numel;  // weights the host updates per step (streamed, not two-way)
  };
  Plan plan() const;
  // Measured over the passes so far (version_logprobs and target_logprobs).
  struct Stats {
    long passes = 0;
    size_t bytes_h2d = 0;        // weights uploaded
    size_t bytes_d2h = 0;        // updated masters of two-way blocks sent back
    double upload_seconds = 0;   // the upload stream busy with weights (CUDA events)
    double block_compute_seconds = 0;  // the compute stream busy with blocks (decode, perturb, forward)
    double pass_seconds = 0;     // wall time of the passes, each ending in a device synchronization
    double host_update_seconds = 0;  // the updater thread's time on streamed blocks
    size_t host_updated_weights = 0; // weights it updated, summed over its updates (varies with auto's split)
    double host_wait_seconds = 0;    // uploads held back waiting for a block's host update
    size_t device_peak_bytes = 0;    // peak device memory taken since the engine began (cudaMemGetInfo)
    size_t device_used_peak_bytes = 0;  // peak of the whole device's memory in use (context included)
    double gemm_seconds = 0;  // the compute stream inside cuBLAS calls (bias seeding included; CUDA events)
    double gemm_flop = 0;     // 2 M N K summed over those calls
    std::vector<double> pass_seconds_each;  // each pass's wall time, in order (the first 4096 since a reset)
    // --device-updates auto, at each update: the two-way blocks chosen, and the pass the timing
    // model gave for that choice with the rates measured in the step before (blocks only; the
    // first 4096 since a reset).
    std::vector<int> two_way_chosen;
    std::vector<double> two_way_model_seconds;
  };
  Stats stats() const;
  void reset_stats();
  ~GpuEngine();
  GpuEngine(const GpuEngine&) = delete;
  GpuEngine& operator=(const GpuEngine&) = delete;

  // log p(ids[i] | rows[i]) after a forward over b, as Engine::target_logprobs (rows: packed rows).
  std::vector<double> target_logprobs(const Batch& b, const std::vector<int32_t>& rows,
                                      const std::vector<int32_t>& ids);
  // The ZO step's forward on the device, as Spsa::losses: version k runs the weights
  // W + scale[k] z(seeds[dir[k]]) (dir -1 or scale 0: the masters; parameters with trainable[i] == 0
  // are never perturbed), every version through each block while its working copy is at hand.
  // Returns the target log-probabilities of each version.
  std::vector<std::vector<double>> version_logprobs(const Batch& b, const std::vector<int32_t>& rows,
                                                    const std::vector<int32_t>& ids, const std::vector<uint64_t>& seeds,
                                                    const std::vector<int>& dir, const std::vector<float>& scale,
                                                    Dist dist, const std::vector<uint8_t>& trainable);
  // The update of core/perturb.h's zo_update on the device weights (bit-identical to the CPU's for
  // the same inputs). Momentum state lives on the device. wd applies to parameters with decay.
  void update(const std::vector<UpdateTerm>& terms, Dist dist, OptKind opt, float lr, float wd, float beta,
              const std::vector<uint8_t>& trainable);
  // Copies the device weights into the model's f32 arena (tests, export).
  void download(Model& m) const;
  // Device pointer to the f32 weights of block l, arena layout (for working copies).
  float* block_weights(int l);
  size_t device_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> p_;
};

}  // namespace zo
