// The GPU forward (offload/gpu_engine.h) against the CPU Engine on the tiny checkpoints (which
// match transformers, tests/test_forward_parity.cpp): target log-probabilities of every next
// token, and candidate scoring rows. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/cuda/perturb.h"
#include "models/load.h"
#include "offload/gpu_engine.h"

using namespace zo;

class CudaForward : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaForward, TargetLogprobsMatchTheCpuEngine) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  Model m = load_model(std::string(ZO_TEST_DATA) + "/models/" + GetParam());
  Batch b = Batch::from_sequences({{5, 17, 99, 3, 8, 201, 44, 12, 9}, {9, 9, 10, 11}, {100, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}});
  std::vector<int32_t> rows, ids;
  for (int s = 0; s < b.n_seqs(); s++)
    for (int t = b.seq_start[size_t(s)]; t + 1 < b.seq_start[size_t(s) + 1]; t++) {
      rows.push_back(t);
      ids.push_back(b.ids[size_t(t) + 1]);
    }
  Engine cpu(m);
  cpu.forward(b);
  auto want = cpu.target_logprobs(cpu.hidden(), rows, ids);
  for (cuda::GemmMode mode : {cuda::GemmMode::F32, cuda::GemmMode::TF32}) {
    GpuEngine gpu(m, mode);
    auto got = gpu.target_logprobs(b, rows, ids);
    const double tol = mode == cuda::GemmMode::F32 ? 2e-4 : 2e-2;
    for (size_t i = 0; i < want.size(); i++) EXPECT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, CudaForward,
                         ::testing::Values("opt_pre_ln", "opt_post_ln", "llama_gqa", "llama_tied_bf16", "qwen2_bias"));
