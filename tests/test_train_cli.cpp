// `zo train` as a user runs it: killed with SIGKILL at random moments and resumed, stopped with
// SIGINT, its log torn; every path must end with bitwise the weights of an uninterrupted run.
// Plus the step log's reader against damage, and the CLI's one-line errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "zo/device.h"
#include "zo/steplog.h"

namespace fs = std::filesystem;
using namespace zo;

namespace {

std::string data(const std::string& p) { return std::string(ZO_TEST_DATA) + "/" + p; }
std::string zo_bin() { return std::string(ZO_BINARY_DIR) + "/bin/zo"; }

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A scratch folder with a tiny LLaMA, a byte-level tokenizer, and a synthetic sentiment set.
struct World {
  fs::path root, model, jsonl;
  explicit World(const std::string& name) {
    root = fs::temp_directory_path() / ("zo_train_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(root);
    model = root / "model";
    fs::create_directories(model);
    fs::copy_file(data("models/llama_gqa/config.json"), model / "config.json");
    fs::copy_file(data("models/llama_gqa/model.safetensors"), model / "model.safetensors");
    fs::copy_file(data("tokenizers/byte256/tokenizer.json"), model / "tokenizer.json");
    jsonl = root / "data.jsonl";
    std::ofstream f(jsonl);
    const char* pos[] = {"good", "fine", "nice", "great fun"};
    const char* neg[] = {"bad", "dull", "awful", "boring mess"};
    std::mt19937 g(5);
    for (int i = 0; i < 160; i++) {
      int y = int(g() % 2);
      f << "{\"sentence\": \"" << (y ? pos[g() % 4] : neg[g() % 4]) << " " << (y ? pos[g() % 4] : neg[g() % 4])
        << "\", \"label\": " << y << "}\n";
    }
  }
  ~World() { fs::remove_all(root); }
  std::vector<std::string> train_args(const fs::path& out) const {
    return {"train", "--model", model.string(), "--data", jsonl.string(), "--template", "{sentence} :", "--label-words",
            " A", " B", "--n-train", "100", "--n-dev", "20", "--n-test", "20", "--steps", "60", "--batch", "4",
            "--lr", "2e-3", "--eps", "1e-2", "--directions", "2", "--optimizer", "momentum", "--eval-every", "20",
            "--fsync", "never", "--quiet", "--out", out.string()};
  }
};

pid_t spawn(const std::vector<std::string>& args) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    std::string bin = zo_bin();
    argv.push_back(bin.data());
    std::vector<std::string> copy(args);
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    FILE* n = std::freopen("/dev/null", "w", stdout);
    FILE* e = std::freopen("/dev/null", "w", stderr);
    (void)n, (void)e;
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_code(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int run(const std::vector<std::string>& args) { return wait_code(spawn(args)); }

long logged_steps(const fs::path& out) {
  try {
    return long(read_step_log((out / "steps.zolog").string()).records.size());
  } catch (const std::exception&) {
    return -1;  // not created yet
  }
}

std::string exported(const World& w, const fs::path& run_dir, const std::string& step = "last") {
  fs::path out = run_dir.string() + "_export_" + step;
  EXPECT_EQ(run({"export", run_dir.string(), "--step", step, "--out", out.string(), "--quiet"}), 0);
  (void)w;
  return slurp(out / "model.safetensors");
}

}  // namespace

TEST(TrainCli, KillAndResumeGivesBitwiseTheUninterruptedWeights) {
  World w("kill");
  fs::path ref = w.root / "ref";
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run(w.train_args(ref)), 0);
  double full = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(logged_steps(ref), 60);
  const std::string want = exported(w, ref);
  ASSERT_FALSE(want.empty());
  ASSERT_NE(want, slurp(w.model / "model.safetensors").substr(0, 0) + "x");

  std::mt19937 g(2024);
  int mid_run_kills = 0;
  for (int trial = 0; trial < 4; trial++) {
    fs::path out = w.root / ("run" + std::to_string(trial));
    bool first = true;
    for (int attempt = 0; attempt < 8; attempt++) {
      auto args = w.train_args(out);
      if (!first) args.push_back("--resume");
      pid_t pid = spawn(args);
      if (attempt < 3) {
        if (trial % 2 == 0) {
          // Kill once the log holds a random number of steps (a moment inside the loop).
          long target = logged_steps(out) + 1 + long(g() % 20);
          auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
          while (logged_steps(out) < target && std::chrono::steady_clock::now() < deadline) {
            int st;
            if (::waitpid(pid, &st, WNOHANG) == pid) {
              pid = -1;
              break;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));
          }
        } else {
          // Kill at a random wall-clock moment (setup, a step, an evaluation, the summary...).
          std::this_thread::sleep_for(std::chrono::duration<double>(full * std::uniform_real_distribution<>(0, 1)(g)));
        }
        if (pid > 0) {
          ::kill(pid, SIGKILL);
          int code = wait_code(pid);
          long n = logged_steps(out);
          if (code == 128 + SIGKILL && n > 0 && n < 60) mid_run_kills++;
        }
      } else {
        ASSERT_EQ(wait_code(pid), 0) << "trial " << trial << " attempt " << attempt;
      }
      if (fs::exists(out / "steps.zolog")) first = false;
      if (logged_steps(out) == 60 && fs::exists(out / "summary.json")) break;
    }
    ASSERT_EQ(logged_steps(out), 60) << "trial " << trial;
    EXPECT_EQ(exported(w, out), want) << "trial " << trial << ": resumed weights differ from the uninterrupted run";
  }
  EXPECT_GE(mid_run_kills, 3) << "too few kills landed inside the training loop to test anything";
}

TEST(TrainCli, SigintStopsCleanlyAndATornTailIsDropped) {
  World w("int");
  fs::path ref = w.root / "ref";
  ASSERT_EQ(run(w.train_args(ref)), 0);
  const std::string want = exported(w, ref);
  fs::path out = w.root / "run";
  pid_t pid = spawn(w.train_args(out));
  while (logged_steps(out) < 10) std::this_thread::sleep_for(std::chrono::microseconds(200));
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_code(pid), 130);
  long n = logged_steps(out);
  EXPECT_GE(n, 10);
  EXPECT_LT(n, 60);
  // Tear the last record (a power cut mid-write), then resume.
  fs::path log = out / "steps.zolog";
  fs::resize_file(log, fs::file_size(log) - 7);
  StepLogContents c = read_step_log(log.string());
  EXPECT_EQ(long(c.records.size()), n - 1);
  EXPECT_FALSE(c.torn_warning.empty());
  auto args = w.train_args(out);
  args.push_back("--resume");
  ASSERT_EQ(run(args), 0);
  EXPECT_EQ(exported(w, out), want);
  // `zo replay` reports the same weights hash for both runs.
  EXPECT_EQ(exported(w, out, "20"), exported(w, ref, "20"));
  EXPECT_NE(exported(w, out, "20"), want);
  // A damaged best.json (a step count beyond any integer): an error exit, no crash, for the
  // commands that read it.
  ASSERT_TRUE(fs::exists(out / "best.json"));
  { std::ofstream(out / "best.json") << "{\"steps\": 1e300, \"dev_loss\": 1.0}\n"; }
  EXPECT_EQ(run({"export", out.string(), "--step", "best", "--out", (w.root / "bad_export").string(), "--quiet"}), 1);
  EXPECT_FALSE(fs::exists(w.root / "bad_export"));
  args = w.train_args(out);
  args.push_back("--resume");
  EXPECT_EQ(run(args), 1);
}

// A log whose header has a field of the wrong type (its checksum intact: written so, not damaged)
// gives a one-line error naming the field, from export and from resume; before, nlohmann's
// type_error escaped, naming neither the file nor the field.
TEST(StepLog, HeaderFieldsOfTheWrongTypeAreOneLineErrors) {
  World w("header");
  fs::path out = w.root / "run";
  auto args = w.train_args(out);
  *(std::find(args.begin(), args.end(), "--steps") + 1) = "3";
  ASSERT_EQ(run(args), 0);
  const StepLogContents c = read_step_log((out / "steps.zolog").string());
  for (const auto& [key, bad] : {std::pair<std::string, nlohmann::json>{"model_path", nlohmann::json::array({1})},
                                 {"base_hash", 7}}) {
    fs::path d = w.root / ("bad_" + key);
    fs::create_directories(d);
    nlohmann::json h = c.header;
    h[key] = bad;
    {
      auto lw = StepLogWriter::create((d / "steps.zolog").string(), h, FsyncPolicy::Never);
      for (const StepRecord& r : c.records) lw.append(r);
    }
    for (const std::vector<std::string>& cmd :
         {std::vector<std::string>{"export", d.string(), "--out", (w.root / ("exp_" + key)).string(), "--quiet"},
          std::vector<std::string>{"train", "--resume", "--out", d.string(), "--quiet"}}) {
      std::string line = zo_bin();
      for (auto& a : cmd) line += " '" + a + "'";
      line += " >/dev/null 2>" + (w.root / "err").string();
      const int st = std::system(line.c_str());
      const std::string err = slurp(w.root / "err");
      EXPECT_EQ(WEXITSTATUS(st), 1) << cmd[0] << " " << key << ": " << err;
      EXPECT_EQ(err.rfind("zo: error: ", 0), 0u) << err;
      EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
      EXPECT_NE(err.find("the log header's '" + key + "' is not a string"), std::string::npos) << cmd[0] << ": " << err;
    }
  }
}

TEST(StepLog, RoundTripAndDamage) {
  fs::path dir = fs::temp_directory_path() / ("zo_steplog_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string path = (dir / "steps.zolog").string();
  {
    auto w = StepLogWriter::create(path, {{"config", {{"lr", 1e-3}}}}, FsyncPolicy::Never);
    for (uint64_t t = 0; t < 5; t++) {
      StepRecord r;
      r.step = t;
      r.lr = 0.5f * float(t);
      r.loss_a = 1.0 + double(t);
      r.loss_b = 2.0;
      r.seeds = {t * 7, t * 11};
      r.g = {float(t) - 2.5f, 1.0f};
      w.append(r);
    }
  }
  EXPECT_THROW(StepLogWriter::create(path, {}, FsyncPolicy::Never), zo::Error);  // never overwrites
  auto c = read_step_log(path);
  ASSERT_EQ(c.records.size(), 5u);
  EXPECT_TRUE(c.torn_warning.empty());
  EXPECT_EQ(c.records[3].seeds[1], 33u);
  EXPECT_EQ(c.records[3].g[0], 0.5f);
  EXPECT_EQ(c.header["config"]["lr"], 1e-3);
  const std::string good = slurp(path);
  auto write_bytes = [&](const std::string& s) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << s;
  };
  // A flipped byte inside a middle record: an error naming the byte offset, not a silent drop.
  std::string bad = good;
  bad[good.size() - 3 * 40 - 10] ^= 0x40;
  write_bytes(bad);
  EXPECT_THROW(read_step_log(path), zo::Error);
  // Torn tails of every length are dropped with a warning.
  for (size_t cut = 1; cut < 40; cut += 3) {
    write_bytes(good.substr(0, good.size() - cut));
    auto t = read_step_log(path);
    EXPECT_EQ(t.records.size(), 4u) << cut;
    EXPECT_FALSE(t.torn_warning.empty());
  }
  // Appending after a torn tail first truncates it.
  write_bytes(good.substr(0, good.size() - 5));
  {
    auto t = read_step_log(path);
    auto w = StepLogWriter::append_to(path, t.valid_bytes, FsyncPolicy::Never);
    StepRecord r;
    r.step = 4;
    r.seeds = {1};
    r.g = {2.0f};
    w.append(r);
  }
  EXPECT_EQ(read_step_log(path).records.size(), 5u);
  write_bytes("ZOSTEPLG garbage");
  EXPECT_THROW(read_step_log(path), zo::Error);
  write_bytes("not a log at all");
  EXPECT_THROW(read_step_log(path), zo::Error);
  fs::remove_all(dir);
}

TEST(TrainCli, BadInputsGiveOneLineErrors) {
  World w("errors");
  auto base = w.train_args(w.root / "r1");
  struct Case {
    std::vector<std::string> extra;
    std::string what;
  };
  fs::path cfg = w.root / "cfg.json";
  std::ofstream(cfg) << "{\"lr\": 1e-3, \"no-such-key\": 1}";
  fs::path cfg2 = w.root / "cfg2.json";
  std::ofstream(cfg2) << "{\"lr\": ";
  fs::path cfg3 = w.root / "cfg3.json";  // a field of the wrong type: the error names the key
  std::ofstream(cfg3) << "{\"task\": 3}";
  for (const Case& c : {Case{{"--lr", "-1"}, "--lr"}, Case{{"--optimizer", "adamw"}, "--optimizer"},
                        Case{{"--params", "(("}, "--params"}, Case{{"--params", "no_such_param"}, "no parameter matches"},
                        Case{{"--config", cfg.string()}, "no-such-key"}, Case{{"--config", cfg2.string()}, "cfg2.json"},
                        Case{{"--config", cfg3.string()}, "'task'"},
                        Case{{"--n-train", "1000"}, "rows"}, Case{{"--resume"}, "no run to resume"},
                        Case{{"--gpu-mem", "1G"}, "--gpu-mem"}, Case{{"--device", "tpu"}, "--device"},
                        Case{{"--device", "cuda", "--wire-dtype", "int4"}, "--wire-dtype"},
                        Case{{"--device", "cuda", "--gemm", "fp64"}, "--gemm"},
                        Case{{"--device", "cuda", "--offload", "disk"}, "--offload disk"},
                        Case{{"--device-updates", "2"}, "--device-updates applies"},
                        Case{{"--device", "cuda", "--gpu-mem", "1G", "--device-updates", "-3"}, "--device-updates"},
                        // Without a GPU (or without CUDA in this build) the device is refused before anything is written.
                        Case{{"--device", cuda_devices() > 0 ? "gpu" : "cuda"}, "--device"}}) {
    auto args = base;
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    std::string cmd = zo_bin();
    for (auto& a : args) cmd += " '" + a + "'";
    cmd += " >/dev/null 2>" + (w.root / "err").string();
    int st = std::system(cmd.c_str());
    std::string err = slurp(w.root / "err");
    EXPECT_EQ(WEXITSTATUS(st), 1) << c.what << ": " << err;
    EXPECT_EQ(err.rfind("zo: error: ", 0), 0u) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find(c.what), std::string::npos) << err;
  }
  // A run folder is never overwritten.
  ASSERT_EQ(run(base), 0);
  EXPECT_EQ(run(base), 1);
}

// A JSON config holds the flags (the command line wins); --objective accuracy trains on minus the
// batch accuracy (so each logged loss is a multiple of -1/(batch x directions)); `zo replay` and `zo export` agree on the weights.
TEST(TrainCli, ConfigFileAndAccuracyObjective) {
  World w("config");
  fs::path cfg = w.root / "cfg.json";
  std::ofstream(cfg) << "{\"steps\": 6, \"objective\": \"accuracy\", \"one-sided\": true, \"optimizer\": \"sign\", "
                        "\"eval-every\": 0, \"lr\": 1e-4}";
  fs::path out = w.root / "run";
  auto args = w.train_args(out);
  args.push_back("--config");
  args.push_back(cfg.string());
  // The command line's --steps 60 wins over the file's 6; drop it to let the file speak.
  auto it = std::find(args.begin(), args.end(), "--steps");
  args.erase(it, it + 2);
  ASSERT_EQ(run(args), 0);
  EXPECT_EQ(logged_steps(out), 6);
  auto log = read_step_log((out / "steps.zolog").string());
  EXPECT_EQ(log.header["config"]["objective"], "accuracy");
  EXPECT_EQ(log.header["config"]["one-sided"], true);
  EXPECT_EQ(log.header["config"]["optimizer"], "momentum");  // the command line wins over the file
  for (auto& r : log.records) {
    for (double l : {r.loss_a, r.loss_b}) {
      EXPECT_LE(l, 0.0);
      EXPECT_GE(l, -1.0);
      // batch 4, averaged over 2 directions: multiples of 1/8
      EXPECT_DOUBLE_EQ(l * 8, std::round(l * 8)) << "not minus a batch accuracy: " << l;
    }
  }
  fs::path hf = w.root / "hf";
  ASSERT_EQ(run({"export", out.string(), "--out", hf.string(), "--quiet"}), 0);
  EXPECT_TRUE(fs::exists(hf / "model.safetensors"));
  EXPECT_TRUE(fs::exists(hf / "config.json"));
}

// `zo train --offload disk`: the same log and weights as in RAM; a budget below what must stay
// resident is refused up front.
TEST(TrainCli, DiskTierRunMatchesTheInMemoryRun) {
  World w("disk");
  auto shorten = [](std::vector<std::string> a) {
    auto it = std::find(a.begin(), a.end(), "--steps");
    it[1] = "12";
    it = std::find(a.begin(), a.end(), "--optimizer");
    it[1] = "sgd";
    return a;
  };
  fs::path ram = w.root / "ram", disk = w.root / "disk";
  ASSERT_EQ(run(shorten(w.train_args(ram))), 0);
  auto args = shorten(w.train_args(disk));
  for (const char* a : {"--offload", "disk", "--ram-budget", "2M"}) args.push_back(a);
  ASSERT_EQ(run(args), 0);
  EXPECT_TRUE(fs::exists(disk / "masters.f32"));
  auto a = read_step_log((ram / "steps.zolog").string()), b = read_step_log((disk / "steps.zolog").string());
  ASSERT_EQ(a.records.size(), b.records.size());
  for (size_t t = 0; t < a.records.size(); t++) EXPECT_EQ(a.records[t].g, b.records[t].g) << t;
  EXPECT_EQ(exported(w, disk), exported(w, ram));
  std::ifstream sf(disk / "summary.json");
  std::stringstream ss;
  ss << sf.rdbuf();
  EXPECT_NE(ss.str().find("fast_tier_peak_bytes"), std::string::npos);

  args = shorten(w.train_args(w.root / "tiny_budget"));
  for (const char* x : {"--offload", "disk", "--ram-budget", "10K"}) args.push_back(x);
  EXPECT_EQ(run(args), 1);
}

// A failed setup leaves nothing it made. With the disk tier a data file that cannot be used is found
// after the masters file (as large as the model) was written: the file and the run folder go, and a
// folder that was there before stays. A config that does not match its checkpoint is refused before
// memory or disk is committed: here one of about a petabyte of weights, whose masters file could
// not even be reserved (the error would then be that, not the tensor's shape).
TEST(TrainCli, FailedSetupLeavesNothingBehind) {
  World w("setup");
  auto attempt = [&](std::vector<std::string> args, const fs::path& out) {
    for (const char* a : {"--offload", "disk"}) args.push_back(a);
    *(std::find(args.begin(), args.end(), "--optimizer") + 1) = "sgd";  // (momentum: not with the disk tier)
    std::string cmd = zo_bin();
    for (auto& a : args) cmd += " '" + a + "'";
    cmd += " >/dev/null 2>" + (w.root / "err").string();
    const int st = std::system(cmd.c_str());
    EXPECT_EQ(WEXITSTATUS(st), 1);
    EXPECT_FALSE(fs::exists(out / "masters.f32"));
    return slurp(w.root / "err");
  };
  fs::path bad = w.root / "bad.jsonl";
  std::ofstream(bad) << "{\"sentence\": \"good\", \"label\": 0}\n";
  for (bool existed : {false, true}) {
    const fs::path out = w.root / (existed ? "kept" : "made");
    if (existed) fs::create_directories(out);
    auto args = w.train_args(out);
    *(std::find(args.begin(), args.end(), "--data") + 1) = bad.string();
    EXPECT_NE(attempt(args, out).find("bad.jsonl"), std::string::npos);
    EXPECT_EQ(fs::exists(out), existed);
    if (existed) {
      EXPECT_TRUE(fs::is_empty(out));
    }
  }
  const fs::path big = w.root / "big";
  fs::create_directories(big);
  for (const char* f : {"model.safetensors", "tokenizer.json"}) fs::copy_file(w.model / f, big / f);
  nlohmann::json c = nlohmann::json::parse(slurp(w.model / "config.json"));
  c["hidden_size"] = 65536, c["intermediate_size"] = 1 << 20, c["num_hidden_layers"] = 1024;
  c["num_attention_heads"] = 64, c["num_key_value_heads"] = 64, c["head_dim"] = 1024;
  std::ofstream(big / "config.json") << c.dump();
  auto args = w.train_args(w.root / "r_big");
  *(std::find(args.begin(), args.end(), "--model") + 1) = big.string();
  const std::string err = attempt(args, w.root / "r_big");
  EXPECT_NE(err.find("has shape"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(w.root / "r_big"));
}
