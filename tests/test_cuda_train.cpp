// ZO training with the steps on the GPU (zo/device.h over offload/gpu_engine.h) against the CPU
// reference (zo/spsa.h's own pass). Oracles: the CPU step's losses on the same weights (f32 GEMM
// tolerance); and replay: the device's log replayed by the CPU gives bitwise the device's weights,
// resident or streamed, in every wire dtype, with blocks updated on the host (one-way) or on the
// device and sent back (two-way), the engine flushed or destroyed (the update kernels and the host
// updater use the same Philox arithmetic as core/perturb.h). Skips without a GPU.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/wire.h"
#include "models/load.h"
#include "offload/residency.h"
#include "tests/support/small_models.h"
#include "zo/bench.h"
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
    int two_way = 0;       // GpuOptions::device_updates
    bool destroy = false;  // end by destroying the device instead of flushing it
    std::vector<int> seq = {};  // auto's split forced update by update (blocks switch between one- and two-way)
  };
  const Case cases[] = {{"f32", false, OptKind::SGD},        {"f32", true, OptKind::SGD},
                        {"bf16", true, OptKind::Momentum},   {"fp8", true, OptKind::Sign},
                        {"f16", true, OptKind::SGD},
                        // two-way: every streamed block; one of them (the others one-way); under
                        // momentum (its state is on the host: all one-way); ended by the destructor
                        {"bf16", true, OptKind::SGD, 100},   {"f32", true, OptKind::Sign, 1},
                        {"fp8", true, OptKind::Momentum, 1}, {"bf16", true, OptKind::SGD, 1, true},
                        // auto: the split between host and device may change at every step; then
                        // forced through 0, 2, 1, 0 two-way blocks
                        {"f16", true, OptKind::SGD, -1},
                        {"bf16", true, OptKind::SGD, -1, false, {0, 2, 1, 0}}};
  for (const Case& cs : cases) {
    SCOPED_TRACE(std::string(cs.wire) + (cs.stream ? " streamed" : " resident") + " two-way " +
                 std::to_string(cs.two_way) + (cs.destroy ? " destroyed" : "") + (cs.seq.empty() ? "" : " forced"));
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
    o.device_updates = cs.two_way;
    o.device_updates_sequence = cs.seq;
    if (cs.stream) {  // room for the globals, a working copy and the streaming buffers only: every block streams
      const ResidencyPlan rp = plan_residency(md, 0, 0, parse_wire_dtype(cs.wire), cs.two_way != 0);
      o.gpu_mem = 2 * rp.globals_bytes + md.max_block_numel() * 4 + rp.streaming_bytes + 1;
    }
    auto dev = make_cuda_device(md, o);
    sd.set_device(dev.get());
    if (cs.stream) {
      EXPECT_EQ(dev->plan()["streamed_blocks"].get<int>(), md.cfg.n_layers);
      if (cs.two_way >= 0) {
        EXPECT_EQ(dev->plan()["two_way_blocks"].get<int>(), std::min(cs.two_way, md.cfg.n_layers));
      }
    }
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
    if (cs.two_way > 0) {  // the updated masters came back over the link unless momentum kept them on the host
                           // (auto's split depends on the machine's timings)
      const size_t back = dev->stats()["bytes_d2h"].get<size_t>();
      if (cs.opt == OptKind::Momentum)
        EXPECT_EQ(back, 0u);
      else
        EXPECT_GT(back, 0u);
    }
    if (cs.destroy) {  // the destructor leaves every streamed block's update in md's masters (sd is not used again)
      dev.reset();
    } else {
      sd.flush();  // the device's weights into md's host arena
    }
    Model mr = load_model(dir);
    Engine er(mr);
    Spsa sr(mr, er, so);
    for (const StepRecord& r : log) sr.apply(r);
    if (!cs.destroy) {
      EXPECT_EQ(std::memcmp(md.arena(), mr.arena(), mr.bytes()), 0) << "device weights differ from the CPU replay";
    } else {  // the resident globals' updates stay on the device; the streamed blocks' masters are the host's
      for (const Param& p : md.params) {
        if (p.block < 0) continue;
        EXPECT_EQ(std::memcmp(static_cast<const float*>(md.arena()) + p.offset,
                              static_cast<const float*>(mr.arena()) + p.offset, p.numel * sizeof(float)),
                  0)
            << p.name << " differs from the CPU replay after the engine was destroyed";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, CudaTrain, ::testing::Values("opt_pre_ln", "llama_gqa", "qwen2_bias"));

// Part of the model resident: the planner spreads the streamed blocks among the resident ones
// (offload/residency.h), so the ring slots and the uploads follow the streamed blocks' order, not
// the block index. An eight-block LLaMA with random weights, four blocks resident (0, 2, 4, 6: the
// streamed blocks alternate with them) or three (0, 2, 5: an odd number streamed, two pairs of them
// adjacent, the last two blocks streamed); f32, bf16, fp8 and f16 wires; one-way, two blocks two-way, a
// forced changing split, and momentum (which keeps every streamed block on the host). Oracles, at
// every step: the CPU's losses on the weights the device's forward should see (the CPU applies the
// device's records to its own masters, and rounds every streamed block by a trip over the wire,
// however the block travelled) agree within the f32 GEMM tolerance, so a wrong block in a slot, an
// upload racing the compute, or a two-way block's forward seeing unrounded masters shows; the
// bytes over the link are exactly each pass's streamed blocks, f32 for two-way ones and the wire
// dtype for the others, and the two-way blocks' f32 masters back; and the CPU replay of the log
// gives the device's weights bitwise. And the split is invisible to the forward: every run with
// two-way blocks gives the one-way run's losses bit for bit (momentum: its first step, the only one
// with the same update rule). The block weights are N(0, 0.1) rather than fill_random's 0.02, so
// that the blocks move the loss: on the CPU, exchanging two blocks then moves it by 2e-2 relative,
// and rounding two blocks to bf16 by 4e-4 (with 0.02: 6e-4 and 5e-7).
TEST(CudaTrainPartial, InterleavedResidencyMatchesTheCpuStepByStep) {
  if (cuda_devices() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  const ModelConfig c = testing_support::small_llama(8, 256, 64);
  LossPlan plan = lm_loss_plan({{5, 17, 99, 3, 8, 201, 44}, {9, 9, 10, 11}, {100, 2, 3, 4, 5, 6, 7, 8}});
  struct Case {
    const char* wire;
    int resident;
    int two_way;               // DeviceOptions::device_updates
    std::vector<int> seq;      // forced split of auto, update by update
    OptKind opt = OptKind::SGD;
  };
  std::vector<Case> cases;
  for (const char* wire : {"f32", "bf16", "fp8", "f16"})
    for (int r : {4, 3}) {
      cases.push_back({wire, r, 0, {}});
      cases.push_back({wire, r, 2, {}});
      if (std::string(wire) == "f16") continue;  // (f16: its overflow check on two-way blocks)
      cases.push_back({wire, r, -1, {0, 3, 1, 4}});
      cases.push_back({wire, r, 2, {}, OptKind::Momentum});
    }
  const int L = c.n_layers, steps = 5;
  auto make_model = [&] {
    Model m = Model::allocate(c, DType::F32);
    fill_random(m, 3);
    float* a = static_cast<float*>(m.arena());
    for (const Param& p : m.params)
      if (p.block >= 0 && p.role != kLn1W && p.role != kLn2W)
        for (size_t i = 0; i < p.numel; i++) a[p.offset + i] *= 5.0f;
    return m;
  };
  std::vector<std::pair<double, double>> one_way;  // the losses of the last one-way case
  for (const Case& cs : cases) {
    SCOPED_TRACE(std::string(cs.wire) + " resident " + std::to_string(cs.resident) + " two-way " +
                 std::to_string(cs.two_way) + (cs.seq.empty() ? "" : " forced") +
                 (cs.opt == OptKind::Momentum ? " momentum" : ""));
    SpsaOptions so;
    so.eps = 1e-2f;
    so.opt = cs.opt;
    Model md = make_model(), mc = make_model();
    Engine ed(md), ec(mc);
    Spsa sd(md, ed, so), sc(mc, ec, so);  // sc: the CPU replay of the device's log, step by step
    const WireDType wire = parse_wire_dtype(cs.wire);
    DeviceOptions o;
    o.gemm = "f32";
    o.wire = cs.wire;
    o.device_updates = cs.two_way;
    o.device_updates_sequence = cs.seq;
    const size_t n = md.max_block_numel();  // every block has the same size
    const ResidencyPlan rp = plan_residency(md, 0, 0, wire, cs.two_way != 0);
    o.gpu_mem = 2 * rp.globals_bytes + n * 4 * size_t(cs.resident + 1) + rp.streaming_bytes + 1;
    const ResidencyPlan want = plan_residency(md, o.gpu_mem, 0, wire, cs.two_way != 0);
    ASSERT_EQ(want.resident_blocks, cs.resident);
    const std::vector<bool> spread = cs.resident == 4 ? std::vector<bool>{1, 0, 1, 0, 1, 0, 1, 0}
                                                      : std::vector<bool>{1, 0, 1, 0, 0, 1, 0, 0};
    for (int l = 0; l < L; l++) ASSERT_EQ(bool(want.resident[size_t(l)]), spread[size_t(l)]) << "block " << l;
    using Clock = std::chrono::steady_clock;
    auto secs = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
    const Clock::time_point t_setup = Clock::now();
    auto dev = make_cuda_device(md, o);
    sd.set_device(dev.get());
    const Clock::time_point t_steps = Clock::now();
    double cpu_s = 0;  // the CPU's side of the steps (the reference forward)
    const int S = L - cs.resident;
    EXPECT_EQ(dev->plan()["resident_blocks"].get<int>(), cs.resident);
    // The weights the device's forward sees: the masters, each streamed block rounded by the wire.
    auto seen = [&](const Model& from) {
      Model mw = Model::allocate(c, DType::F32);
      std::memcpy(mw.arena(), from.arena(), from.bytes());
      for (const Param& p : mw.params) {
        if (p.block < 0 || want.resident[size_t(p.block)]) continue;
        float* w = static_cast<float*>(mw.arena()) + p.offset;
        std::vector<uint8_t> enc(p.numel * wire_size(wire));
        std::vector<float> scales(wire_groups(p.numel));
        EXPECT_TRUE(wire_encode(wire, w, p.numel, enc.data(), scales.data()));
        wire_decode(wire, enc.data(), p.numel, scales.data(), w);
      }
      return mw;
    };
    for (int t = 0; t < steps; t++) {
      const std::vector<uint64_t> seeds = {rng::direction_seed(9, uint64_t(t), 0)};
      StepRecord rd = sd.step(uint64_t(t), seeds, 1e-3f, plan);
      const Clock::time_point t_cpu = Clock::now();
      Model mw = seen(mc);
      Engine ew(mw);
      Spsa sw(mw, ew, so);
      const StepRecord rc = sw.step(uint64_t(t), seeds, 1e-3f, plan);
      cpu_s += secs(t_cpu, Clock::now());
      ASSERT_FALSE(rd.skipped()) << "step " << t << ": non-finite loss on the device";
      EXPECT_NEAR(rd.loss_a, rc.loss_a, 1e-4 * (1 + std::fabs(rc.loss_a))) << "step " << t;
      EXPECT_NEAR(rd.loss_b, rc.loss_b, 1e-4 * (1 + std::fabs(rc.loss_b))) << "step " << t;
      if (cs.two_way == 0) {
        if (t == 0) one_way.clear();
        one_way.emplace_back(rd.loss_a, rd.loss_b);
      } else if (cs.opt == OptKind::SGD || t == 0) {
        EXPECT_EQ(rd.loss_a, one_way[size_t(t)].first) << "step " << t << ": the split changed the forward";
        EXPECT_EQ(rd.loss_b, one_way[size_t(t)].second) << "step " << t << ": the split changed the forward";
      }
      sd.set_pending(rd);
      sc.apply(rd);  // the CPU's masters follow the device's trajectory
    }
    // The split of each pass: the plan's before the first update, then the one chosen at each update
    // (momentum: every streamed block on the host after the first update). A two-way block's masters
    // come back only once an update is pending, so from the second pass on.
    std::vector<int> split(steps, std::min(std::max(cs.two_way, 0), S));
    if (!cs.seq.empty())
      for (int p = 1; p < steps; p++) split[size_t(p)] = cs.seq[size_t(p - 1) % cs.seq.size()];
    if (cs.opt == OptKind::Momentum)
      for (int p = 1; p < steps; p++) split[size_t(p)] = 0;
    size_t scale_bytes = 0;  // fp8: a one-way block's scales travel with it
    for (const Param& p : md.params)
      if (p.block == 0 && wire_scaled(wire)) scale_bytes += wire_groups(p.numel) * sizeof(float);
    size_t up = 0, down = 0;
    for (int p = 0; p < steps; p++) {
      up += size_t(split[size_t(p)]) * n * 4 + size_t(S - split[size_t(p)]) * (n * wire_size(wire) + scale_bytes);
      if (p > 0) down += size_t(split[size_t(p)]) * n * 4;
    }
    EXPECT_EQ(dev->stats()["bytes_h2d"].get<size_t>(), up) << "each streamed block once per pass, resident ones never";
    EXPECT_EQ(dev->stats()["bytes_d2h"].get<size_t>(), down);
    // The host updates, at each update, the streamed blocks that are one-way in the split it sets.
    size_t host_n = 0;
    for (int t = 0; t < steps; t++) {
      const int after = cs.opt == OptKind::Momentum ? 0
                        : cs.seq.empty()            ? std::min(std::max(cs.two_way, 0), S)
                                                    : std::min(cs.seq[size_t(t) % cs.seq.size()], S);
      host_n += size_t(S - after) * n;
    }
    EXPECT_EQ(dev->stats()["host_updated_weights"].get<size_t>(), host_n);
    sd.flush();
    EXPECT_EQ(std::memcmp(md.arena(), mc.arena(), mc.bytes()), 0) << "device weights differ from the CPU replay";
    // Where this test's time goes (28 cases in 113 s on the H100 machine in run 7, 4 s each: not yet broken down).
    const Clock::time_point t_end = Clock::now();
    std::printf("[ timing   ] %s resident %d two-way %d%s: device setup %.3f s, %d steps %.3f s (CPU reference %.3f s)\n",
                cs.wire, cs.resident, cs.two_way, cs.opt == OptKind::Momentum ? " momentum" : "", secs(t_setup, t_steps),
                steps, secs(t_steps, t_end), cpu_s);
    const Clock::time_point t_down = Clock::now();
    dev.reset();
    std::printf("[ timing   ] device teardown %.3f s\n", secs(t_down, Clock::now()));
  }
}

// The CLI on the device: `zo train --device cuda` (resident, and streamed under --gpu-mem) against
// `zo train` on the CPU with the same flags: the first step's losses and the evaluation at start
// agree within f32 GEMM tolerance, and the streamed run reports its PCIe bytes.
TEST(CudaTrainCli, DeviceRunsAgreeWithTheCpuRun) {
  if (cuda_devices() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("zo_cuda_cli_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "model");
  for (const char* f : {"config.json", "model.safetensors"})
    fs::copy_file(model_dir("llama_gqa") + "/" + f, root / "model" / f);
  fs::copy_file(std::string(ZO_TEST_DATA) + "/tokenizers/byte256/tokenizer.json", root / "model" / "tokenizer.json");
  {
    std::ofstream f(root / "data.jsonl");
    const char* words[] = {"good", "fine", "bad", "dull"};
    for (int i = 0; i < 80; i++) f << "{\"sentence\": \"" << words[i % 4] << " " << words[(i / 4) % 4] << "\", \"label\": " << (i % 4 < 2) << "}\n";
  }
  Model m = load_model(model_dir("llama_gqa"));
  const ResidencyPlan rp = plan_residency(m, 0, 0, WireDType::BF16);
  const size_t budget = 2 * rp.globals_bytes + m.max_block_numel() * 4 + rp.streaming_bytes + 1;
  auto train = [&](const std::string& name, const std::string& extra) {
    std::string cmd = std::string(ZO_BINARY_DIR) + "/bin/zo train --model " + (root / "model").string() + " --data " +
                      (root / "data.jsonl").string() +
                      " --template '{sentence} :' --label-words ' A' ' B' --n-train 40 --n-dev 16 --n-test 16 --steps 3"
                      " --batch 4 --lr 1e-3 --eps 1e-2 --eval-every 0 --fsync never --quiet --out " +
                      (root / name).string() + " " + extra + " > /dev/null 2> " + (root / (name + ".err")).string();
    EXPECT_EQ(std::system(cmd.c_str()), 0) << name;
    std::ifstream s(root / name / "summary.json"), mt(root / name / "metrics.jsonl");
    nlohmann::json summary = nlohmann::json::parse(s), first;
    for (std::string line; std::getline(mt, line);) {
      auto j = nlohmann::json::parse(line);
      if (j["type"] == "step") {
        first = j;
        break;
      }
    }
    return std::make_pair(summary, first);
  };
  auto [cs, cf] = train("cpu", "");
  auto [gs, gf] = train("gpu", "--device cuda --gemm f32");
  auto [ss, sf] = train("gpu_streamed", "--device cuda --gemm f32 --wire-dtype bf16 --gpu-reserve 0 --gpu-mem " +
                                            std::to_string(budget));
  auto near = [](double a, double b, double rel) { return std::fabs(a - b) <= rel * (1 + std::fabs(b)); };
  EXPECT_TRUE(near(gf["loss_a"].get<double>(), cf["loss_a"].get<double>(), 1e-4)) << gf << " vs " << cf;
  EXPECT_TRUE(near(gf["loss_b"].get<double>(), cf["loss_b"].get<double>(), 1e-4)) << gf << " vs " << cf;
  EXPECT_TRUE(near(gs["dev_at_start"]["loss"].get<double>(), cs["dev_at_start"]["loss"].get<double>(), 1e-4));
  EXPECT_TRUE(near(sf["loss_a"].get<double>(), cf["loss_a"].get<double>(), 2e-2)) << "bf16 wire";
  EXPECT_EQ(ss["device"]["plan"]["streamed_blocks"].get<int>(), m.cfg.n_layers);
  EXPECT_GT(ss["device"]["stats"]["bytes_h2d"].get<double>(), 0.0);
  EXPECT_EQ(gs["device"]["stats"]["bytes_h2d"].get<double>(), 0.0);
  fs::remove_all(root);
}
