// The trainer's device path (zo/device.h), on the CPU: a reference StepDevice keeps its own copy of
// the weights and runs plain CPU forwards over explicitly perturbed copies, which the block-wise
// pass equals bit for bit (tests/test_train.cpp, DualForward). Oracle: the CPU path. With the
// device, Spsa must give bitwise the same step records and weights as without it, and run_train
// the same log, evaluations and resumed run. The GPU device itself is tested against the CPU by
// tests/test_cuda_train.cpp on a GPU; this covers the plumbing it plugs into, everywhere.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/load.h"
#include "zo/device.h"
#include "zo/objective.h"
#include "zo/spsa.h"
#include "zo/steplog.h"
#include "zo/train.h"

namespace fs = std::filesystem;
using namespace zo;

namespace {

std::string data(const std::string& p) { return std::string(ZO_TEST_DATA) + "/" + p; }

Model clone(const Model& m) {
  Model c = Model::allocate(m.cfg, DType::F32);
  EXPECT_EQ(c.bytes(), m.bytes());
  std::memcpy(c.arena(), m.arena(), m.bytes());
  return c;
}

class ReferenceDevice final : public StepDevice {
 public:
  explicit ReferenceDevice(const Model& m) : w_(clone(m)) {}
  std::string describe() const override { return "reference (CPU, explicit copies)"; }
  std::vector<std::vector<double>> versions(const Batch& b, const std::vector<int32_t>* keep,
                                            const std::vector<int32_t>& rows, const std::vector<int32_t>& ids,
                                            const std::vector<uint64_t>& seeds, const std::vector<int>& dir,
                                            const std::vector<float>& scale, Dist dist,
                                            const std::vector<uint8_t>& trainable) override {
    std::vector<std::vector<double>> out;
    for (size_t k = 0; k < dir.size(); k++) {
      Model c = clone(w_);
      if (dir[k] >= 0 && scale[k] != 0.0f)
        for (size_t i = 0; i < c.params.size(); i++) {
          if (!trainable[i]) continue;
          const Param& p = c.params[i];
          float* w = static_cast<float*>(c.arena()) + p.offset;
          perturb_range(w, w, scale[k], seeds[size_t(dir[k])], tensor_id_of(p.name), 0, p.numel, dist);
        }
      out.push_back(run(c, b, keep, rows, ids));
    }
    return out;
  }
  std::vector<double> logprobs(const Batch& b, const std::vector<int32_t>* keep, const std::vector<int32_t>& rows,
                               const std::vector<int32_t>& ids) override {
    return run(w_, b, keep, rows, ids);
  }
  void update(const std::vector<UpdateTerm>& terms, Dist dist, OptKind opt, float lr, float wd, float beta,
              const std::vector<uint8_t>& trainable) override {
    if (opt == OptKind::Momentum && mom_.empty()) mom_.assign(w_.numel(), 0.0f);
    for (size_t i = 0; i < w_.params.size(); i++) {
      if (!trainable[i]) continue;
      const Param& p = w_.params[i];
      zo_update(static_cast<float*>(w_.arena()) + p.offset, mom_.empty() ? nullptr : mom_.data() + p.offset, p.numel,
                tensor_id_of(p.name), 0, terms.data(), int(terms.size()), dist, opt, lr, p.decay ? wd : 0.0f, beta);
    }
    updates_++;
  }
  void sync_host(Model& m) override { std::memcpy(m.arena(), w_.arena(), w_.bytes()); }
  nlohmann::json stats() const override { return {{"updates", updates_}}; }
  nlohmann::json plan() const override { return {{"kind", "reference"}}; }
  void reset_stats() override { updates_ = 0; }

 private:
  static std::vector<double> run(const Model& m, const Batch& b, const std::vector<int32_t>* keep,
                                 const std::vector<int32_t>& rows, const std::vector<int32_t>& ids) {
    Engine e(m);
    e.forward(b, nullptr, keep);
    return e.target_logprobs(e.hidden(), rows, ids);
  }
  Model w_;
  std::vector<float> mom_;
  long updates_ = 0;
};

void expect_same(const StepRecord& a, const StepRecord& b, const std::string& what) {
  EXPECT_EQ(a.loss_a, b.loss_a) << what;
  EXPECT_EQ(a.loss_b, b.loss_b) << what;
  EXPECT_EQ(a.g, b.g) << what;
  EXPECT_EQ(a.seeds, b.seeds) << what;
  EXPECT_EQ(a.flags, b.flags) << what;
}

}  // namespace

class DevicePath : public ::testing::TestWithParam<std::string> {};

TEST_P(DevicePath, SpsaWithADeviceGivesTheCpuRecordsAndWeights) {
  const std::string dir = data("models/" + GetParam());
  std::vector<const std::vector<int32_t>*> ps;
  std::vector<std::vector<int32_t>> prompts = {{5, 17, 99, 3, 8}, {9, 9, 10, 11}, {100, 2, 3, 4, 5, 6}};
  for (auto& p : prompts) ps.push_back(&p);
  for (OptKind opt : {OptKind::SGD, OptKind::Momentum, OptKind::Sign}) {
    for (bool one_sided : {false, true}) {
      const std::string what = "optimizer " + std::to_string(int(opt)) + (one_sided ? " one-sided" : "");
      SpsaOptions so;
      so.eps = 1e-2f;
      so.n_dirs = 2;
      so.one_sided = one_sided;
      so.opt = opt;
      so.wd = 0.05f;
      so.freeze = "embed";  // a frozen tensor too
      Model mc = load_model(dir), md = load_model(dir);
      Engine ec(mc), ed(md);
      Spsa sc(mc, ec, so), sd(md, ed, so);
      ReferenceDevice dev(md);
      sd.set_device(&dev);
      for (int t = 0; t < 4; t++) {
        LossPlan plan = t % 2 ? lm_loss_plan(prompts) : classification_loss_plan(ps, {1, 0, 1}, {{3}, {7, 8}});
        std::vector<uint64_t> seeds = {rng::direction_seed(3, uint64_t(t), 0), rng::direction_seed(3, uint64_t(t), 1)};
        StepRecord rc = sc.step(uint64_t(t), seeds, 1e-3f, plan), rd = sd.step(uint64_t(t), seeds, 1e-3f, plan);
        expect_same(rc, rd, what + " step " + std::to_string(t));
        sc.set_pending(rc);
        sd.set_pending(rd);
      }
      sc.flush();
      sd.flush();
      EXPECT_EQ(std::memcmp(mc.arena(), md.arena(), mc.bytes()), 0) << what;
      EXPECT_EQ(dev.stats()["updates"].get<long>(), 4) << what;
    }
  }
}
INSTANTIATE_TEST_SUITE_P(Tiny, DevicePath, ::testing::Values("opt_pre_ln", "llama_gqa"));

// run_train's device branches: the device is made after a resumed run's replay, evaluates, and
// takes each update as it is logged. The log's records, the evaluations and a stopped-then-resumed
// device run equal the CPU run's.
TEST(DevicePath, TrainerWithADeviceMatchesTheCpuRun) {
  const fs::path root = fs::temp_directory_path() / ("zo_device_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "model");
  for (const char* f : {"config.json", "model.safetensors"})
    fs::copy_file(data("models/llama_gqa/") + f, root / "model" / f);
  fs::copy_file(data("tokenizers/byte256/tokenizer.json"), root / "model" / "tokenizer.json");
  {
    std::ofstream f(root / "data.jsonl");
    const char* words[] = {"good", "fine", "bad", "dull"};
    for (int i = 0; i < 80; i++)
      f << "{\"sentence\": \"" << words[i % 4] << " " << words[(i / 4) % 4] << "\", \"label\": " << (i % 4 < 2) << "}\n";
  }
  nlohmann::json j = {{"model", (root / "model").string()}, {"data", (root / "data.jsonl").string()},
                      {"template", "{sentence} :"}, {"label-words", {" A", " B"}}, {"n-train", 40}, {"n-dev", 12},
                      {"n-test", 12}, {"steps", 8}, {"batch", 4}, {"lr", 1e-3}, {"eps", 1e-2}, {"directions", 2},
                      {"optimizer", "momentum"}, {"eval-every", 4}, {"fsync", "never"}};
  auto run = [&](const std::string& name, const std::string& device, long stop_after, bool resume) {
    TrainConfig cfg = TrainConfig::from_json(j, "test");
    cfg.device = device;
    RunOptions o;
    o.out = (root / name).string();
    o.progress = false;
    o.quiet = true;
    o.stop_after = stop_after;
    o.resume = resume;
    if (device == "cuda") o.device_factory = [](const Model& m) { return std::make_unique<ReferenceDevice>(m); };
    return run_train(cfg, o);
  };
  nlohmann::json cpu = run("cpu", "cpu", -1, false);
  nlohmann::json dev = run("dev", "cuda", -1, false);
  run("dev_resumed", "cuda", 3, false);
  nlohmann::json resumed = run("dev_resumed", "cuda", -1, true);
  ASSERT_TRUE(dev.contains("device"));
  EXPECT_EQ(dev["device"]["stats"]["updates"].get<long>(), 8);
  EXPECT_EQ(resumed["device"]["stats"]["updates"].get<long>(), 8);  // the replay goes through the device
  for (const char* k : {"dev_at_start", "dev_final", "test_final"}) {
    EXPECT_EQ(dev[k]["loss"], cpu[k]["loss"]) << k;
    EXPECT_EQ(dev[k]["accuracy"], cpu[k]["accuracy"]) << k;
  }
  EXPECT_EQ(resumed["dev_final"]["loss"], cpu["dev_final"]["loss"]);
  auto a = read_step_log((root / "cpu" / "steps.zolog").string()).records;
  auto b = read_step_log((root / "dev" / "steps.zolog").string()).records;
  auto c = read_step_log((root / "dev_resumed" / "steps.zolog").string()).records;
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  ASSERT_EQ(c.size(), 8u);
  for (size_t t = 0; t < a.size(); t++) {
    expect_same(a[t], b[t], "device run, step " + std::to_string(t));
    expect_same(a[t], c[t], "resumed device run, step " + std::to_string(t));
  }
  fs::remove_all(root);
}
