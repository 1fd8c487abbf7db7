// The forward pass on one GPU with every weight resident: the CUDA mirror of models/forward.h's
// Engine, block by block, on the kernels of core/cuda/ops.h and cuBLAS. The CPU Engine is the
// reference it is tested against (tests/test_cuda_forward.cpp). No CUDA type in this header.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/cuda/ops.h"
#include "models/forward.h"

namespace zo {

class GpuEngine {
 public:
  // Uploads the model's weights (f32 on the device, whatever the host storage).
  GpuEngine(const Model& m, cuda::GemmMode mode = cuda::GemmMode::F32);
  ~GpuEngine();
  GpuEngine(const GpuEngine&) = delete;
  GpuEngine& operator=(const GpuEngine&) = delete;

  // log p(ids[i] | rows[i]) after a forward over b, as Engine::target_logprobs (rows: packed rows).
  std::vector<double> target_logprobs(const Batch& b, const std::vector<int32_t>& rows,
                                      const std::vector<int32_t>& ids);
  // Device pointer to the f32 weights of block l, arena layout (for working copies).
  float* block_weights(int l);
  size_t device_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> p_;
};

}  // namespace zo
