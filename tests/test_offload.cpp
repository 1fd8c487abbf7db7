// The disk tier: master weights in a file, RAM holding only the globals and the blocks in flight.
// Oracle: the in-memory run (same arithmetic, so bitwise the same losses and weights), and the
// kernel's own count of this process's resident pages of the mapping (/proc/self/smaps).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "core/perturb.h"
#include "core/wire.h"
#include "models/load.h"
#include "offload/residency.h"
#include "tests/support/small_models.h"
#include "zo/bench.h"
#include "zo/objective.h"
#include "zo/spsa.h"
#include "zo/task.h"

namespace fs = std::filesystem;
using namespace zo;

namespace {

// A LLaMA of 8 blocks of ~1 MiB each (f32) and small globals: ~8 MiB of masters.
ModelConfig eight_blocks() { return testing_support::small_llama(8, 512, 256); }

LossPlan plan() {
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5, 6}, {7, 8, 9}, {10, 11, 12, 13}, {14, 15}};
  std::vector<const std::vector<int32_t>*> ps;
  for (auto& p : prompts) ps.push_back(&p);
  return classification_loss_plan(ps, {0, 1, 1, 0}, {{20}, {30, 31}});
}

std::vector<StepRecord> train(Model& m, int steps) {
  Engine e(m);
  SpsaOptions o;
  o.eps = 1e-2f;
  o.n_dirs = 2;
  o.wd = 0.01f;
  Spsa s(m, e, o);
  LossPlan p = plan();
  std::vector<StepRecord> log;
  for (int t = 0; t < steps; t++) {
    StepRecord r = s.step(uint64_t(t), {rng::direction_seed(9, uint64_t(t), 0), rng::direction_seed(9, uint64_t(t), 1)},
                          1e-3f, p);
    s.set_pending(r);
    log.push_back(r);
  }
  s.flush();
  return log;
}

}  // namespace

TEST(DiskTier, SameBitsAsInMemoryWithinTheRamBudget) {
  fs::path dir = fs::temp_directory_path() / ("zo_offload_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "hf");
  {
    Model src = Model::allocate(eight_blocks(), DType::F32);
    fill_random(src, 77);
    save_hf(src, (dir / "hf").string());
  }
  Model ram = load_model((dir / "hf").string());
  LoadOptions lo;
  lo.backing_file = (dir / "masters.f32").string();
  Model disk = load_model((dir / "hf").string(), lo);
  ASSERT_TRUE(disk.file_backed());
  const size_t block_bytes = disk.max_block_numel() * 4;
  const size_t budget = 4 * 1024 * 1024;
  ASSERT_GE(disk.bytes(), 2 * budget - budget / 8) << "the model must be about twice the budget";
  ASSERT_GT(block_bytes, size_t(900) * 1024);
  // Loading released every block: what stays resident is the globals (and partial pages).
  EXPECT_LT(disk.resident_bytes(), budget / 2);
  // The fast tier's measure (this process's present pages of the mapping, from pagemap) against the
  // kernel's own Rss accounting of the mapping in smaps: at rest, with block 1 read in, and released.
  {
    const size_t rest = disk.resident_bytes();
    EXPECT_EQ(rest, disk.resident_bytes_smaps());
    const Param* p1 = nullptr;
    for (const Param& p : disk.params)
      if (p.block == 1 && (!p1 || p.numel > p1->numel)) p1 = &p;
    ASSERT_NE(p1, nullptr);
    volatile float sink = 0;
    const float* w = disk.f32_ptr(*p1);
    for (size_t i = 0; i < p1->numel; i += 256) sink = sink + w[i];
    const size_t in = disk.resident_bytes();
    EXPECT_EQ(in, disk.resident_bytes_smaps());
    EXPECT_GE(in, rest + p1->numel * 4 - 2 * 4096) << "reading a tensor of block 1 mapped its pages in";
    disk.release_block(1, false);
    EXPECT_EQ(disk.resident_bytes(), rest);
    EXPECT_EQ(disk.resident_bytes_smaps(), rest);
  }

  auto want = train(ram, 4);
  disk.track_resident(true);
  auto got = train(disk, 4);
  const size_t peak = disk.peak_resident_bytes();
  ASSERT_EQ(got.size(), want.size());
  for (size_t t = 0; t < want.size(); t++) {
    EXPECT_EQ(got[t].loss_a, want[t].loss_a) << t;
    EXPECT_EQ(got[t].loss_b, want[t].loss_b) << t;
    EXPECT_EQ(got[t].g, want[t].g) << t;
  }
  std::printf("disk tier: masters %zu bytes, RAM budget %zu, measured fast-tier peak %zu (block %zu)\n", disk.bytes(),
              budget, peak, block_bytes);
  EXPECT_GT(peak, block_bytes / 2) << "the measurement saw no block resident at all";
  EXPECT_LE(peak, budget) << "fast tier peak " << peak << " bytes";
  EXPECT_EQ(std::memcmp(ram.arena(), disk.arena(), ram.bytes()), 0);
  // The file itself holds the trained masters (another process could map it).
  disk = Model();
  FILE* f = std::fopen((dir / "masters.f32").c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::vector<char> bytes(ram.bytes());
  ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
  EXPECT_EQ(std::memcmp(bytes.data(), ram.arena(), ram.bytes()), 0);
  fs::remove_all(dir);
}

// The GPU engine's residency planner (offload/residency.h), tested without a GPU on the 8-block
// model, against the sizes computed here from the layout: whatever the budget, what it plans
// (resident blocks + fixed buffers + the activation reserve) fits the budget, and one more
// resident block would not.
TEST(Residency, PlansNeverExceedTheBudgetAndKeepAsManyBlocksAsFit) {
  Model m = Model::allocate(eight_blocks(), DType::F32);
  size_t globals = 0, block = 0;
  for (const Param& p : m.params)
    if (p.block < 0) globals += p.numel * 4;
    else if (p.block == 0) block += p.numel * 4;
  EXPECT_EQ(block, m.max_block_numel() * 4);
  ResidencyPlan all = plan_residency(m, 0, 0, WireDType::F32);
  EXPECT_EQ(all.resident_blocks, 8);
  EXPECT_EQ(all.streamed_blocks, 0);
  EXPECT_EQ(all.resident_bytes, m.bytes());
  for (WireDType w : {WireDType::F32, WireDType::BF16, WireDType::F16, WireDType::FP8}) {
    // Streaming buffers from the layout: two slots of a block in the wire dtype (+ one scale per
    // 16384 elements of each tensor for fp8) and an f32 decode buffer unless the wire is f32.
    size_t scales = 0;
    for (const Param& p : m.params)
      if (p.block == 0) scales += (p.numel + 16383) / 16384;
    const size_t streaming = 2 * (block / 4 * wire_size(w) + (w == WireDType::FP8 ? 4 * scales : 0)) +
                             (w == WireDType::F32 ? 0 : block);
    EXPECT_EQ(plan_residency(m, 0, 0, w).streaming_bytes, streaming) << wire_name(w);
    // Two-way blocks travel as f32 masters: the slots hold f32 blocks whatever the wire dtype.
    const size_t two_way = 2 * (block + (w == WireDType::FP8 ? 4 * scales : 0)) + (w == WireDType::F32 ? 0 : block);
    EXPECT_EQ(plan_residency(m, 0, 0, w, true).streaming_bytes, two_way) << wire_name(w);
    const size_t reserve = 1 << 16, base = 2 * globals + block + reserve;
    for (size_t budget = base + streaming + 1; budget < base + m.bytes() + 3 * block; budget += block / 3) {
      ResidencyPlan p = plan_residency(m, budget, reserve, w);
      const size_t used = p.device_bytes() + reserve;
      EXPECT_LE(used, budget) << wire_name(w) << " budget " << budget;
      EXPECT_EQ(p.resident_blocks + p.streamed_blocks, 8);
      // Which blocks (one-way: Tail): the S streamed ones in the last T = min(8, 2S) blocks, each
      // last in its group there (every l first blocks of that region hold exactly floor(l S / T)
      // of them), so that the blocks before it and block 0 are resident and block 7 streams; and
      // the bytes counted are the resident blocks'.
      ASSERT_EQ(p.resident.size(), 8u);
      EXPECT_EQ(p.placement, Placement::Tail);
      const size_t S = size_t(p.streamed_blocks), T = std::min<size_t>(8, 2 * S);
      size_t streamed = 0, bytes = globals;
      for (size_t l = 0; l < 8; l++) {
        const size_t in = l < 8 - T ? 0 : l - (8 - T);
        EXPECT_EQ(streamed, T ? in * S / T : 0) << "budget " << budget << " block " << l;
        streamed += !p.resident[l];
        bytes += p.resident[l] ? block : 0;
      }
      EXPECT_EQ(streamed, S);
      EXPECT_EQ(bytes, p.resident_bytes);
      if (S > 0 && S < 8) {  // the host's update gets a head start; uploads overlap resident compute
        EXPECT_TRUE(p.resident[0]) << "budget " << budget;
        EXPECT_FALSE(p.resident[7]) << "budget " << budget;
      }
      // The other rules: the same blocks counted, and which ones. Spread (two-way's): the S
      // streamed blocks over all 8, floor(l S / 8) of them in every l first blocks. First (the rule
      // Auto replaced, for benchmarks): the R resident ones spread, each last in its group, so
      // floor(l R / 8) of them in every l first blocks.
      for (Placement rule : {Placement::Spread, Placement::First}) {
        ResidencyPlan q = plan_residency(m, budget, reserve, w, false, rule);
        EXPECT_EQ(q.placement, rule);
        EXPECT_EQ(q.resident_blocks, p.resident_blocks);
        EXPECT_EQ(q.resident_bytes, p.resident_bytes);
        EXPECT_EQ(q.device_bytes(), p.device_bytes());
        const size_t R = size_t(q.resident_blocks);
        size_t seen = 0;
        for (size_t l = 0; l < 8; l++) {
          EXPECT_EQ(seen, l * (rule == Placement::First ? R : S) / 8) << placement_name(rule) << " block " << l;
          seen += rule == Placement::First ? q.resident[l] : !q.resident[l];
        }
        EXPECT_EQ(seen, rule == Placement::First ? R : S);
      }
      // With two-way blocks (f32 ring slots: a larger minimum) Auto spreads them.
      if (budget > base + two_way) {
        EXPECT_EQ(plan_residency(m, budget, reserve, w, true).placement, Placement::Spread);
      }
      if (p.streamed_blocks > 0) {
        // One more resident block (streaming buffers still needed unless it was the last) exceeds.
        const bool last = p.streamed_blocks == 1;
        EXPECT_GT(used + block - (last ? streaming : 0), budget) << wire_name(w) << " budget " << budget;
      }
    }
    try {
      plan_residency(m, base + streaming - 1, reserve, w);
      ADD_FAILURE() << "a budget below the minimum was accepted";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("--gpu-mem"), std::string::npos) << e.what();
    }
  }
}

// The timing model behind `--device-updates auto` (offload/residency.h), against a timeline worked
// by hand and against bench/step_model.py, the independent Python model the GPU runs were checked
// with (its figures for OPT-13B with run 5-6's rates, printed there to 17 digits).
TEST(Residency, PassModelMatchesHandTimelinesAndTheStepModel) {
  // Blocks R S R S: compute 1 s each, host 3 s per one-way block, uploads 0.5 s one-way, 2 s
  // two-way, 1 s back. n = 0: uploads wait for the host (3, 6): block 1 computes 3.5-4.5, block 3
  // 6.5-7.5. n = 1: block 1 up 0-2, computes 2-3, back 3-4; the host updates block 3 alone (0-3),
  // up 3-3.5, computes 4-5. n = 2: block 3 up 2-4, computes 4-5, back 5-6.
  const std::vector<uint8_t> rsrs = {1, 0, 1, 0};
  PassRates r;
  r.compute = {1, 1, 1, 1};
  r.host = 3, r.up_one = 0.5, r.up_two = 2, r.down_two = 1;
  EXPECT_DOUBLE_EQ(model_pass_seconds(rsrs, r, 0), 7.5);
  EXPECT_DOUBLE_EQ(model_pass_seconds(rsrs, r, 1), 5.0);
  EXPECT_DOUBLE_EQ(model_pass_seconds(rsrs, r, 2), 6.0);
  EXPECT_EQ(best_two_way(rsrs, r), 1);
  // The device time of a two-way block's own update (0.5 s) is charged to the two-way blocks only:
  // n = 1: block 1 computes 2-3.5, back 3.5-4.5, block 3 computes 4.5-5.5; n = 2: block 3 up 2-4,
  // computes 4.5-6, back 6-7.
  r.dev_two = 0.5;
  EXPECT_DOUBLE_EQ(model_pass_seconds(rsrs, r, 0), 7.5);
  EXPECT_DOUBLE_EQ(model_pass_seconds(rsrs, r, 1), 5.5);
  EXPECT_DOUBLE_EQ(model_pass_seconds(rsrs, r, 2), 7.0);
  r.dev_two = 0;
  // A fast host: nothing goes two-way. A host slower than everything else: all of them.
  r.host = 0.1;
  EXPECT_EQ(best_two_way(rsrs, r), 0);
  r.host = 100;
  EXPECT_EQ(best_two_way(rsrs, r), 2);
  // Ring slots: with one slot, block 1's upload waits for block 0's compute (1.6), so 2.1 to 3.1;
  // with two, it overlaps: up 0.6-1.1, computes 1.6-2.6.
  PassRates s;
  s.compute = {1, 1};
  s.host = 0.1, s.up_one = 0.5, s.slots = 1;
  EXPECT_DOUBLE_EQ(model_pass_seconds({0, 0}, s, 0), 3.1);
  s.slots = 2;
  EXPECT_DOUBLE_EQ(model_pass_seconds({0, 0}, s, 0), 2.6);
  // Per-block compute times are used as given (a slow last block).
  s.compute = {1, 5};
  EXPECT_DOUBLE_EQ(model_pass_seconds({0, 0}, s, 0), 6.6);

  // bench/step_model.py, OPT-13B two-way plans (planner masks; '.' streams), the resident step
  // 0.516 s over 40 blocks, host 0.15 or 0.18 ns per weight, bf16 up at 50 GB/s, f32 at 40 GB/s
  // each way (314,639,360 weights per block).
  struct Case {
    const char* mask;
    double host;
    std::vector<double> t;  // the model's pass for n = 0, 1, ...
    int best;
  };
  const double blk = 314639360.0;
  const std::vector<Case> cases = {
      {"RR.R.RR.R.RR.R.RR.R.RR.R.RR.R.RR.R.RR.R.", 0.15,
       {0.78062003839999983, 0.73342413439999987, 0.68622823039999992, 0.63903232639999996, 0.59183642240000001,
        0.54464051840000005, 0.54998361600000045, 0.55564755200000049, 0.56131148800000041, 0.56697542400000034,
        0.57263936000000026, 0.57830329600000019, 0.58396723200000011, 0.58963116800000004, 0.59529510399999996,
        0.60662297599999981, 0.63808691199999978},
       5},
      {"RRR.RRR.RR.RRR.RRR.RR.RRR.RRR.RR.RRR.RR.", 0.18,
       {0.64847150720000002, 0.59183642240000001, 0.53520133759999999, 0.51600000000000035, 0.51600000000000035,
        0.51600000000000035, 0.51600000000000035, 0.51600000000000035, 0.51600000000000035, 0.51600000000000035,
        0.51600000000000035, 0.54746393600000032},
       3},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> mask;
    for (const char* p = c.mask; *p; p++) mask.push_back(*p == 'R');
    PassRates q;
    q.compute.assign(mask.size(), 0.516 / 40);
    q.host = blk * c.host * 1e-9, q.up_one = blk * 2 / 50e9, q.up_two = q.down_two = blk * 4 / 40e9;
    for (size_t n = 0; n < c.t.size(); n++)
      EXPECT_NEAR(model_pass_seconds(mask, q, int(n)), c.t[n], 1e-12) << c.mask << " n " << n;
    EXPECT_EQ(best_two_way(mask, q), c.best) << c.mask;
  }
}

// The streaming engine's host step: the fused update and re-encode gives the bytes of
// core/perturb.h's zo_update followed by core/wire.h's encoder (each tested against its own oracle).
TEST(Residency, FusedHostUpdateAndEncodeMatchesTheTwoPasses) {
  const size_t n = 3 * kWireGroup + 77;
  std::vector<float> w(n), w2, m(n, 0.0f), m2;
  fill_z(w.data(), 5, 6, 0, n, Dist::Gaussian);
  for (float& v : w) v *= 0.05f;
  w2 = w;
  m2 = m;
  std::vector<UpdateTerm> terms = {{11, 0.5f}, {12, -0.25f}};
  for (WireDType t : {WireDType::BF16, WireDType::F16, WireDType::FP8}) {
    for (OptKind opt : {OptKind::SGD, OptKind::Momentum, OptKind::Sign}) {
      std::vector<uint8_t> a(n * wire_size(t)), b(n * wire_size(t));
      std::vector<float> sa(wire_groups(n)), sb(wire_groups(n));
      ASSERT_TRUE(update_and_encode(w.data(), m.data(), n, 99, terms.data(), 2, Dist::Gaussian, opt, 1e-3f, 0.1f, 0.9f, t,
                                    a.data(), sa.data()));
      zo_update(w2.data(), m2.data(), n, 99, 0, terms.data(), 2, Dist::Gaussian, opt, 1e-3f, 0.1f, 0.9f);
      ASSERT_TRUE(wire_encode(t, w2.data(), n, b.data(), sb.data()));
      EXPECT_EQ(std::memcmp(w.data(), w2.data(), n * 4), 0);
      EXPECT_EQ(std::memcmp(m.data(), m2.data(), n * 4), 0);
      EXPECT_EQ(a, b) << wire_name(t);
      if (t == WireDType::FP8) {
        EXPECT_EQ(sa, sb);
      }
    }
  }
}
