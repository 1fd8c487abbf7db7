// ZO training with the steps on the GPU (zo/device.h over offload/gpu_engine.h) against the CPU
// reference (zo/spsa.h's own pass). Oracles: the CPU step's losses on the same weights (f32 GEMM
// tolerance); and replay: the device's log replayed by the CPU gives bitwise the device's weights,
// resident or streamed, in every wire dtype (the update kernels and the host updater use the same
// Philox arithmetic as core/perturb.h). Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "models/load.h"
#include "offload/residency.h"
#include "zo/device.h"
#include "zo/objective.h"
#include "zo/spsa.h"

using namespace zo;

namespace {
std::string model_dir(const std::string& v) { return std::string(ZO_TEST_DATA) + "/models/" + v; }
}  // namespace

class CudaTrain : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaTrain, DeviceStepsMatchTheCpuAndReplayBitwise) {
  if (cuda_devices() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  const std::string dir = model_dir(GetParam());
  LossPlan plan = lm_loss_plan({{5, 17, 99, 3, 8, 201, 44}, {9, 9, 10, 11}, {100, 2, 3, 4, 5, 6, 7, 8}});
  struct Case {
    const char* wire;
    bool stream;
    OptKind opt;
  };
  const Case cases[] = {{"f32", false, OptKind::SGD},      {"f32", true, OptKind::SGD}, {"bf16", true, OptKind::Momentum},
                        {"fp8", true, OptKind::Sign},      {"f16", true, OptKind::SGD}};
  for (const Case& cs : cases) {
    SCOPED_TRACE(std::string(cs.wire) + (cs.stream ? " streamed" : " resident"));
    SpsaOptions so;
    so.eps = 1e-2f;
    so.opt = cs.opt;
    so.wd = 0.01f;
    Model md = load_model(dir), mc = load_model(dir);
    Engine ed(md), ec(mc);
    Spsa sd(md, ed, so), sc(mc, ec, so);
    DeviceOptions o;
    o.gemm = "f32";
    o.wire = cs.wire;
    if (cs.stream) {  // room for the globals, a working copy and the streaming buffers only: every block streams
      const ResidencyPlan rp = plan_residency(md, 0, 0, parse_wire_dtype(cs.wire));
      o.gpu_mem = 2 * rp.globals_bytes + md.max_block_numel() * 4 + rp.streaming_bytes + 1;
    }
    auto dev = make_cuda_device(md, o);
    sd.set_device(dev.get());
    if (cs.stream) EXPECT_EQ(dev->plan()["streamed_blocks"].get<int>(), md.cfg.n_layers);
    std::vector<StepRecord> log;
    for (int t = 0; t < 4; t++) {
      std::vector<uint64_t> seeds = {rng::direction_seed(7, uint64_t(t), 0)};
      StepRecord rd = sd.step(uint64_t(t), seeds, 1e-3f, plan);
      if (t == 0) {  // same weights on both sides: the losses agree (the wire dtype rounds streamed blocks)
        StepRecord rc = sc.step(uint64_t(t), seeds, 1e-3f, plan);
        const double tol = std::string(cs.wire) == "f32" ? 1e-4 : std::string(cs.wire) == "fp8" ? 5e-2 : 1e-2;
        EXPECT_NEAR(rd.loss_a, rc.loss_a, tol * (1 + std::fabs(rc.loss_a)));
        EXPECT_NEAR(rd.loss_b, rc.loss_b, tol * (1 + std::fabs(rc.loss_b)));
      }
      sd.set_pending(rd);
      log.push_back(rd);
    }
    sd.flush();  // the device's weights into md's host arena
    Model mr = load_model(dir);
    Engine er(mr);
    Spsa sr(mr, er, so);
    for (const StepRecord& r : log) sr.apply(r);
    EXPECT_EQ(std::memcmp(md.arena(), mr.arena(), mr.bytes()), 0) << "device weights differ from the CPU replay";
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, CudaTrain, ::testing::Values("opt_pre_ln", "llama_gqa", "qwen2_bias"));
