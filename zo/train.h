// A training run: configuration, data splits, the loop, and rebuilding weights from a run folder.
//
// A run folder holds
//   config.json    every hyper-parameter (the flags of `zo train`, resolved)
//   steps.zolog    the step log (zo/steplog.h): header naming the base checkpoint by path and hash
//   metrics.jsonl  one JSON object per step and per evaluation
//   best.json      the step with the best dev loss so far (written atomically)
//   summary.json   the final summary (also printed with --json)
// The weights of any step are base + log prefix (`zo replay`, `zo export`): nothing else is needed.
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "zo/device.h"

namespace zo {

struct TrainConfig {
  std::string model = "default", dtype = "f32";
  std::string task = "sst2", data, tmpl, label_field = "label";
  std::vector<std::string> label_words;
  long n_train = 1000, n_dev = 500, n_test = 1000;
  uint64_t data_seed = 0;
  int max_length = 0;
  long steps = 1000;
  int batch = 16;
  double lr = 1e-6, eps = 1e-3, wd = 0, momentum = 0.9;
  uint64_t seed = 0;
  int directions = 1;
  bool one_sided = false;
  std::string dist = "gaussian", optimizer = "sgd", schedule = "constant";
  long warmup = 0;
  std::string params, freeze;
  std::string objective = "ce";
  long eval_every = 0;
  int eval_batch = 32;
  bool eval_at_start = true, test_at_best = true;
  std::string fsync = "every";
  std::string offload = "none";  // none | disk: masters in a file, RAM holds globals + blocks in flight
  std::string offload_file;      // disk tier file (default: <run>/masters.f32)
  double ram_budget = 0;         // disk tier: bytes the resident masters may use (0: no check)
  std::string device = "cpu";    // cpu | cuda
  double gpu_mem = 0;            // cuda: bytes for weights and buffers (0: all resident); blocks beyond stream
  double gpu_reserve = double(1u << 30);  // cuda with gpu_mem: bytes of gpu_mem kept for activations
  std::string wire_dtype = "f32";         // cuda, streamed blocks: f32 | bf16 | f16 | fp8
  int device_updates = 0;                 // cuda, streamed blocks updated on the device (two-way); -1: auto
  std::string gemm = "tf32";              // cuda: f32 | tf32 | bf16 GEMMs

  nlohmann::json to_json() const;
  // Every key must be known; values are type-checked. `base` supplies what j leaves out.
  static TrainConfig from_json(const nlohmann::json& j, const std::string& where, const TrainConfig& base);
  static TrainConfig from_json(const nlohmann::json& j, const std::string& where);
  void validate() const;
};

// The learning rate of step t (warm-up, then constant, linear or cosine decay to 0 at `steps`).
double lr_at(const TrainConfig& c, long t);

struct RunOptions {
  std::string out;           // run folder (created; must not hold a run already)
  bool resume = false;       // continue the run in `out`
  bool progress = true;
  bool quiet = false;        // no per-evaluation lines
  long stop_after = -1;      // testing: stop (cleanly) after this many steps in this process
  // testing: with --device cuda, the device is made by this instead (the CPU tests drive the
  // trainer's device path with a reference device).
  std::function<std::unique_ptr<StepDevice>(const Model&)> device_factory;
};

// Runs (or resumes) training; returns the summary object (also written to out/summary.json).
// Ctrl-C (SIGINT) or SIGTERM stops after the current step, with the log intact: summary.stopped.
nlohmann::json run_train(TrainConfig cfg, const RunOptions& o);

// A run folder's best.json, checked ({"steps": N >= 0, "dev_loss": X, ...}; a one-line error
// otherwise), or null when the run has none yet.
nlohmann::json read_best(const std::string& dir);

// Weights after the first n_steps logged steps of the run in `dir` (n_steps < 0: all; 0: the base).
// Verifies the base checkpoint's hash. *info receives the log header plus replayed/logged counts.
Model rebuild_from_run(const std::string& dir, long n_steps, nlohmann::json* info = nullptr, bool progress = true);

// A 64-bit hash of a model's parameter names, shapes and f32 values (the step log names its base by it).
uint64_t weights_hash(const Model& m);

}  // namespace zo
