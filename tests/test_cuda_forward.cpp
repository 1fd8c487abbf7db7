// The GPU forward (offload/gpu_engine.h) against the CPU Engine on the tiny checkpoints (which
// match transformers, tests/test_forward_parity.cpp): target log-probabilities of every next
// token, and candidate scoring rows. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/cuda/perturb.h"
#include "core/perturb.h"
#include "models/load.h"
#include "offload/gpu_engine.h"
#include "offload/residency.h"

using namespace zo;

class CudaForward : public ::testing::TestWithParam<std::string> {};

namespace {
// A device budget with room for the globals, their perturbed copy, a working copy and the streaming
// buffers only (offload/residency.h): every block streams.
size_t stream_all_budget(const Model& m, WireDType w) {
  const ResidencyPlan rp = plan_residency(m, 0, 0, w);
  return 2 * rp.globals_bytes + m.max_block_numel() * 4 + rp.streaming_bytes + 1;
}
}  // namespace

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

// A whole ZO step on the device against the CPU step (zo/spsa.h's arithmetic): the +eps/-eps
// losses agree within f32 GEMM tolerance, and the same logged update applied on both sides gives
// bitwise the same weights (the update kernels are bit-identical by construction).
TEST_P(CudaForward, ZoStepLossesAndUpdatedWeightsMatchTheCpu) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  const std::string dir = std::string(ZO_TEST_DATA) + "/models/" + GetParam();
  Model m = load_model(dir);
  Batch b = Batch::from_sequences({{5, 17, 99, 3, 8, 201, 44}, {9, 9, 10, 11}, {100, 2, 3, 4, 5, 6, 7, 8}});
  std::vector<int32_t> rows, ids;
  for (int s = 0; s < b.n_seqs(); s++)
    for (int t = b.seq_start[size_t(s)]; t + 1 < b.seq_start[size_t(s) + 1]; t++) {
      rows.push_back(t);
      ids.push_back(b.ids[size_t(t) + 1]);
    }
  const float eps = 1e-2f;
  const uint64_t seed = 4242;
  std::vector<uint8_t> trainable(m.params.size(), 1);
  GpuEngine gpu(m);
  auto got = gpu.version_logprobs(b, rows, ids, {seed}, {0, 0, -1}, {eps, -eps, 0.0f}, Dist::Gaussian, trainable);
  // CPU: explicitly perturbed copies through the CPU Engine (the DualForward test shows the block-wise
  // pass gives these bits).
  for (int k = 0; k < 3; k++) {
    Model mk = load_model(dir);
    const float sc = k == 0 ? eps : k == 1 ? -eps : 0.0f;
    if (sc != 0.0f)
      for (const Param& p : mk.params) {
        float* w = static_cast<float*>(mk.arena()) + p.offset;
        perturb_range(w, w, sc, seed, rng::fnv1a64(p.name.data(), p.name.size()), 0, p.numel, Dist::Gaussian);
      }
    Engine e(mk);
    e.forward(b);
    auto want = e.target_logprobs(e.hidden(), rows, ids);
    for (size_t i = 0; i < want.size(); i++) EXPECT_NEAR(got[size_t(k)][i], want[i], 2e-4 * (1 + std::fabs(want[i])));
  }
  // The same update on both sides: SGD with weight decay, then momentum.
  std::vector<UpdateTerm> terms = {{seed, 0.37f}};
  Model cpu = load_model(dir);
  for (OptKind opt : {OptKind::SGD, OptKind::Momentum}) {
    gpu.update(terms, Dist::Gaussian, opt, 1e-2f, 0.1f, 0.9f, trainable);
    std::vector<float> mom(cpu.numel(), 0.0f);
    for (const Param& p : cpu.params)
      zo_update(static_cast<float*>(cpu.arena()) + p.offset, mom.data() + p.offset, p.numel,
                rng::fnv1a64(p.name.data(), p.name.size()), 0, terms.data(), 1, Dist::Gaussian, opt, 1e-2f,
                p.decay ? 0.1f : 0.0f, 0.9f);
    Model back = load_model(dir);
    gpu.download(back);
    EXPECT_EQ(std::memcmp(back.arena(), cpu.arena(), cpu.bytes()), 0) << "optimizer " << int(opt);
  }
}

// ZO2 streaming: with a device budget that holds only the globals and two ring slots, every block
// is streamed from pinned host masters and updated on the host. Oracles: the CPU (the same updates
// by core/perturb.h give bitwise the trained weights; the CPU Engine gives the log-probs), plus
// the properties that the resident engine gives the same bits and each pass uploads each streamed
// block exactly once.
TEST_P(CudaForward, StreamedBlocksGiveTheResidentBits) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  const std::string dir = std::string(ZO_TEST_DATA) + "/models/" + GetParam();
  Model mr = load_model(dir), ms = load_model(dir);
  size_t blocks = 0;
  for (int l = 0; l < ms.cfg.n_layers; l++) blocks += (ms.block_end(l) - ms.block_begin(l)) * 4;
  GpuOptions o;
  o.gpu_mem = stream_all_budget(ms, WireDType::F32);
  GpuEngine res(mr), str(ms, o);
  ASSERT_EQ(str.plan().streamed_blocks, ms.cfg.n_layers);
  Batch b = Batch::from_sequences({{5, 17, 99, 3, 8}, {9, 9, 10, 11, 12, 13}});
  std::vector<int32_t> rows = {1, 2, 3, 6, 7}, ids = {99, 3, 8, 11, 12};
  std::vector<uint8_t> trainable(ms.params.size(), 1);
  const int steps = 3;
  for (int t = 0; t < steps; t++) {
    const uint64_t seed = 100 + uint64_t(t);
    auto a = res.version_logprobs(b, rows, ids, {seed}, {0, 0}, {1e-2f, -1e-2f}, Dist::Gaussian, trainable);
    auto s = str.version_logprobs(b, rows, ids, {seed}, {0, 0}, {1e-2f, -1e-2f}, Dist::Gaussian, trainable);
    ASSERT_EQ(a, s) << "step " << t;
    std::vector<UpdateTerm> terms = {{seed, float(t) - 0.5f}};
    res.update(terms, Dist::Gaussian, OptKind::SGD, 1e-2f, 0.01f, 0.9f, trainable);
    str.update(terms, Dist::Gaussian, OptKind::SGD, 1e-2f, 0.01f, 0.9f, trainable);
  }
  Model wr = load_model(dir), ws = load_model(dir);
  res.download(wr);
  str.download(ws);
  EXPECT_EQ(std::memcmp(wr.arena(), ws.arena(), wr.bytes()), 0);
  EXPECT_EQ(str.stats().bytes_h2d, size_t(steps) * blocks);
  // The GEMM counters (zo bench train's in-GEMM rate): each pass's two versions run every 2-D block
  // weight over the batch's tokens and the head over the 5 distinct rows.
  if (!ms.cfg.has_projection()) {
    double block_w = 0;
    for (const Param& p : ms.params)
      if (p.block >= 0 && p.shape.size() == 2) block_w += double(p.numel);
    const double per_version = 2.0 * b.n_tokens() * block_w + 2.0 * 5 * ms.cfg.vocab_size * ms.cfg.embed_dim;
    EXPECT_DOUBLE_EQ(str.stats().gemm_flop, steps * 2 * per_version);
    EXPECT_GT(str.stats().gemm_seconds, 0.0);
  }
  // The CPU reference: the same updates with core/perturb.h on the host, bit for bit.
  Model cpu = load_model(dir);
  for (int t = 0; t < steps; t++) {
    const uint64_t seed = 100 + uint64_t(t);
    std::vector<UpdateTerm> terms = {{seed, float(t) - 0.5f}};
    for (const Param& p : cpu.params)
      zo_update(static_cast<float*>(cpu.arena()) + p.offset, nullptr, p.numel, rng::fnv1a64(p.name.data(), p.name.size()),
                0, terms.data(), 1, Dist::Gaussian, OptKind::SGD, 1e-2f, p.decay ? 0.01f : 0.0f, 0.9f);
  }
  EXPECT_EQ(std::memcmp(ws.arena(), cpu.arena(), cpu.bytes()), 0);
  // And the streamed pass's log-probs against the CPU Engine on the trained weights.
  GpuEngine again(ws, o);
  auto got = again.target_logprobs(b, rows, ids);
  Engine e(cpu);
  e.forward(b);
  auto want = e.target_logprobs(e.hidden(), rows, ids);
  for (size_t i = 0; i < want.size(); i++) EXPECT_NEAR(got[i], want[i], 2e-4 * (1 + std::fabs(want[i]))) << i;
}

// Streaming in a narrow wire dtype: the device computes with decode(encode(W)) for streamed blocks,
// so its log-probs match the CPU Engine run on a model whose streamed blocks hold exactly those
// values (core/wire.h's CPU reference, tested against torch's casts); the f32 host masters take the
// updates and equal core/perturb.h's bit for bit.
TEST_P(CudaForward, WireDtypesStreamDecodedWeights) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  const std::string dir = std::string(ZO_TEST_DATA) + "/models/" + GetParam();
  Batch b = Batch::from_sequences({{5, 17, 99, 3, 8}, {9, 9, 10, 11, 12, 13}});
  std::vector<int32_t> rows = {1, 2, 3, 6, 7}, ids = {99, 3, 8, 11, 12};
  for (WireDType t : {WireDType::BF16, WireDType::F16, WireDType::FP8}) {
    Model ms = load_model(dir);
    GpuOptions o;
    o.wire = t;
    o.gpu_mem = stream_all_budget(ms, t);
    GpuEngine g(ms, o);
    ASSERT_EQ(g.plan().streamed_blocks, ms.cfg.n_layers) << wire_name(t);
    std::vector<uint8_t> trainable(ms.params.size(), 1);
    std::vector<UpdateTerm> terms = {{9, 0.75f}};
    g.version_logprobs(b, rows, ids, {9}, {0, 0}, {1e-2f, -1e-2f}, Dist::Gaussian, trainable);
    g.update(terms, Dist::Gaussian, OptKind::SGD, 1e-2f, 0.0f, 0.9f, trainable);
    auto got = g.target_logprobs(b, rows, ids);
    EXPECT_EQ(g.stats().bytes_h2d, 2 * g.plan().streamed_per_pass) << wire_name(t);
    Model cpu = load_model(dir);
    for (const Param& p : cpu.params)
      zo_update(static_cast<float*>(cpu.arena()) + p.offset, nullptr, p.numel, rng::fnv1a64(p.name.data(), p.name.size()),
                0, terms.data(), 1, Dist::Gaussian, OptKind::SGD, 1e-2f, 0.0f, 0.9f);
    Model back = load_model(dir);
    g.download(back);  // the device's globals and the host's streamed masters
    EXPECT_EQ(std::memcmp(back.arena(), cpu.arena(), cpu.bytes()), 0) << wire_name(t);
    for (const Param& p : cpu.params) {  // what crossed the link: blocks encoded then decoded
      if (p.block < 0) continue;
      float* w = static_cast<float*>(cpu.arena()) + p.offset;
      std::vector<uint8_t> enc(p.numel * wire_size(t));
      std::vector<float> sc(wire_groups(p.numel));
      wire_encode(t, w, p.numel, enc.data(), sc.data());
      wire_decode(t, enc.data(), p.numel, sc.data(), w);
    }
    Engine e(cpu);
    e.forward(b);
    auto want = e.target_logprobs(e.hidden(), rows, ids);
    for (size_t i = 0; i < want.size(); i++)
      EXPECT_NEAR(got[i], want[i], 2e-4 * (1 + std::fabs(want[i]))) << wire_name(t) << " row " << i;
  }
}
