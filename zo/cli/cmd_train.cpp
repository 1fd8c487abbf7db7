// zo train | replay | export: zeroth-order fine-tuning, and weights rebuilt from a run's step log.
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "core/json_num.h"
#include "models/load.h"
#include "zo/cli/cli.h"
#include "zo/train.h"

namespace zo::cli {

namespace {
struct TrainArgs {
  TrainConfig cfg;
  std::string config_file, out;
  bool resume = false, json = false, quiet = false, no_progress = false;
  long stop_after = -1;
  std::vector<std::pair<std::string, CLI::Option*>> given;  // config key -> its option
};

// Resolves the step a user names: "last", "best" (from best.json), or a count of steps.
long steps_of(const std::string& dir, const std::string& which) {
  if (which == "last") return -1;
  if (which == "best") {
    const nlohmann::json best = read_best(dir);
    ZO_CHECK(!best.is_null(), "{}: no best.json (the run has no dev evaluation yet)", dir);
    return best["steps"].get<long>();
  }
  try {
    size_t used = 0;
    long n = std::stol(which, &used);
    if (used == which.size() && n >= 0) return n;
  } catch (const std::exception&) {
  }
  fail("--step '{}': expected last, best, or a number of steps", which);
}

Model rebuild(const std::string& dir, const std::string& which, nlohmann::json* info, bool progress) {
  return rebuild_from_run(dir, steps_of(dir, which), info, progress);
}
}  // namespace

void add_train(CLI::App& app, Runner& run) {
  auto a = std::make_shared<TrainArgs>();
  TrainConfig& c = a->cfg;
  auto* s = app.add_subcommand(
      "train",
      "Fine-tune with zeroth-order SPSA (MeZO): forward passes only, memory at inference level.\n"
      "Every step is appended to DIR/steps.zolog; kill it at any moment and --resume continues exactly.\n"
      "Example: zo train --task sst2 --data train.jsonl --steps 1000 --lr 1e-6 --eps 1e-3 --out runs/sst2");
  auto opt = [&](const char* key, CLI::Option* o) {
    a->given.emplace_back(key, o);
    if (std::string(key) != "label-words") o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // the last flag wins
    return o;
  };
  opt("model", s->add_option("--model,-m", c.model, "Model folder, .gguf file, or 'default'")->capture_default_str());
  s->add_option("--out,-o", a->out, "Run folder: step log, metrics, best.json, summary.json")->required();
  s->add_flag("--resume", a->resume,
              "Continue the run in --out: its weights are rebuilt from base + log, its logged config wins "
              "(--steps may extend it)");
  s->add_option("--config", a->config_file,
                "JSON file with any of these flags as keys (\"lr\": 1e-6, \"n-train\": 1000, ...); "
                "flags given on the command line win");
  opt("task", s->add_option("--task,-t", c.task, "lm, sst2 (MeZO's prompt '<sentence> It was terrible|great'), or a task JSON file")
                  ->capture_default_str());
  opt("template", s->add_option("--template", c.tmpl, "Classification prompt over the row's fields (overrides --task)"));
  opt("label-words", s->add_option("--label-words", c.label_words, "One continuation per class, in label order")
                         ->expected(2, 1 << 16));
  opt("label-field", s->add_option("--label-field", c.label_field, "JSONL field holding the class index")->capture_default_str());
  opt("data", s->add_option("--data,-d", c.data, "JSONL file; train/dev/test are carved from it by --data-seed, disjoint"));
  opt("n-train", s->add_option("--n-train", c.n_train, "Training examples (MeZO: 1000)")->capture_default_str());
  opt("n-dev", s->add_option("--n-dev", c.n_dev, "Dev examples: periodic evaluation and the best step (MeZO: 500)")->capture_default_str());
  opt("n-test", s->add_option("--n-test", c.n_test, "Test examples: evaluated at the start and the end")->capture_default_str());
  opt("data-seed", s->add_option("--data-seed", c.data_seed, "Seed of the split and of the batch order")->capture_default_str());
  opt("max-length", s->add_option("--max-length", c.max_length, "Truncate prompts to this many tokens (0: model context)")
                        ->capture_default_str());
  opt("steps", s->add_option("--steps,-n", c.steps, "Optimizer steps")->capture_default_str());
  opt("batch", s->add_option("--batch,-b", c.batch, "Examples per step")->capture_default_str());
  opt("lr", s->add_option("--lr", c.lr, "Learning rate")->capture_default_str());
  opt("eps", s->add_option("--eps", c.eps, "Perturbation scale: W +- eps z")->capture_default_str());
  opt("wd", s->add_option("--wd", c.wd, "Weight decay (not applied to biases and norms)")->capture_default_str());
  opt("seed", s->add_option("--seed", c.seed, "Seed of the perturbation directions")->capture_default_str());
  opt("directions", s->add_option("--directions", c.directions,
                                  "Directions per step (n-SPSA); all 2q forward streams share one pass over each block")
                        ->capture_default_str());
  opt("one-sided", s->add_flag("--one-sided", c.one_sided, "g = (L(W+eps z) - L(W)) / eps instead of the central difference"));
  opt("dist", s->add_option("--dist", c.dist, "Direction distribution: gaussian or rademacher")->capture_default_str());
  opt("optimizer", s->add_option("--optimizer", c.optimizer,
                                 "sgd, sign (ZO-SGD-Sign: the sign of g z), or momentum (keeps one f32 per trained "
                                 "weight: +4 bytes/parameter of memory)")
                       ->capture_default_str());
  opt("momentum", s->add_option("--momentum", c.momentum, "Momentum coefficient (--optimizer momentum)")->capture_default_str());
  opt("schedule", s->add_option("--schedule", c.schedule, "Learning-rate schedule: constant, linear or cosine (to 0 at --steps)")
                      ->capture_default_str());
  opt("warmup", s->add_option("--warmup", c.warmup, "Linear warm-up steps")->capture_default_str());
  opt("params", s->add_option("--params", c.params, "Regex: only parameters whose name matches move (default: all)"));
  opt("freeze", s->add_option("--freeze", c.freeze, "Regex: parameters whose name matches never move, e.g. 'embed'"));
  opt("objective", s->add_option("--objective", c.objective,
                                 "ce (cross-entropy over the label words, MeZO), nll (of the gold label word), "
                                 "accuracy (minus batch accuracy: a non-differentiable objective)")
                       ->capture_default_str());
  opt("eval-every", s->add_option("--eval-every", c.eval_every, "Evaluate dev every K steps (0: only at start and end)")
                        ->capture_default_str());
  opt("eval-batch", s->add_option("--eval-batch", c.eval_batch, "Examples per evaluation forward")->capture_default_str());
  opt("fsync", s->add_option("--fsync", c.fsync, "When the step log reaches the disk: every (step), end, or never")
                   ->capture_default_str());
  opt("offload", s->add_option("--offload", c.offload,
                               "none, or disk: the masters live in a file (--offload-file, default <out>/masters.f32) "
                               "and RAM holds only the embeddings, head, norms and the blocks in flight: a model "
                               "larger than RAM trains on a CPU (slower; not with momentum)")
                     ->capture_default_str());
  opt("offload-file", s->add_option("--offload-file", c.offload_file, "The disk tier's master weights file"));
  opt("ram-budget", byte_size(s->add_option("--ram-budget", c.ram_budget,
                                  "Disk tier: bytes (suffixes K, M, G) the resident masters may use; checked at "
                                  "start, the measured peak is in the summary")));
  opt("device", s->add_option("--device", c.device,
                              "cpu, or cuda: the steps' forwards and updates run on the GPU (needs a zo built with "
                              "the CUDA toolkit); evaluation too")
                    ->capture_default_str());
  opt("gpu-mem", byte_size(s->add_option("--gpu-mem", c.gpu_mem,
                               "cuda: device bytes (K, M, G) for weights and buffers; blocks that do not fit stay "
                               "in pinned RAM and stream to the GPU once per step (ZO2), updated on the host. "
                               "0: all resident")));
  opt("gpu-reserve", byte_size(s->add_option("--gpu-reserve", c.gpu_reserve,
                                   "cuda with --gpu-mem: bytes of it kept for activations (default 1G)")));
  opt("wire-dtype", s->add_option("--wire-dtype", c.wire_dtype,
                                  "cuda, streamed blocks: f32 (exact), bf16 or f16 (half the PCIe bytes), or fp8 "
                                  "(E4M3 with a scale per 16384 weights: a quarter). Masters stay f32 on the host")
                        ->capture_default_str());
  opt("device-updates", s->add_option("--device-updates", c.device_updates,
                                      "cuda with --gpu-mem: this many streamed blocks are updated on the GPU and "
                                      "sent back as f32 (ZO2's two-way traffic) instead of on the host; helps where "
                                      "the host's cores cannot regenerate every streamed weight's z within a step. "
                                      "Same losses and weights bit for bit whatever the split (a two-way block's forward still sees the "
                                      "wire's rounding). 0: all on the host (one-way); auto: chosen again at "
                                      "each step, the split whose step is the shortest by a timing model of the pass "
                                      "fed with the last step's measured compute, host and link times (needs the f32 "
                                      "ring slots' device memory)")
                            ->transform(CLI::Transformer(std::map<std::string, int>{{"auto", -1}}))
                            ->capture_default_str());
  opt("gemm", s->add_option("--gemm", c.gemm, "cuda: GEMM compute mode, f32, tf32 or bf16 (tensor cores)")
                  ->capture_default_str());
  s->add_option("--stop-after", a->stop_after, "Stop cleanly after this many steps in this process (testing)");
  s->add_flag("--json", a->json, "Print the summary as one JSON object on the last line");
  s->add_flag("--quiet,-q", a->quiet, "No progress bar and no evaluation lines");
  s->callback([&run, a] {
    run = [a] {
      TrainConfig cfg;
      if (!a->config_file.empty()) {
        std::ifstream f(a->config_file);
        ZO_CHECK(f.good(), "{}: cannot open config file", a->config_file);
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(f);
        } catch (const nlohmann::json::exception& e) {
          fail("{}: not valid JSON: {}", a->config_file, e.what());
        }
        cfg = TrainConfig::from_json(j, a->config_file);
      }
      nlohmann::json from_cli = a->cfg.to_json(), given = nlohmann::json::object();
      for (auto& [key, o] : a->given)
        if (o->count() > 0) given[key] = from_cli[key];
      cfg = TrainConfig::from_json(given, "command line", cfg);
      RunOptions ro;
      ro.out = a->out;
      ro.resume = a->resume;
      ro.progress = !a->quiet;
      ro.quiet = a->quiet;
      ro.stop_after = a->stop_after;
      nlohmann::json sum = run_train(cfg, ro);
      if (a->json) {
        print_json(sum);
      } else {
        fmt::print("{} steps in {:.1f} s ({:.3f} steps/s){}\n", sum["steps_this_process"].get<long>(),
                   sum["train_seconds"].get<double>(), sum["steps_per_second"].get<double>(),
                   sum["stopped"].get<bool>() ? ", stopped: resume with --resume" : "");
        for (const char* k : {"test_at_start", "test_final", "test_at_best"})
          if (sum.contains(k) && sum[k].is_object() && sum[k].contains("accuracy"))
            fmt::print("{}: accuracy {:.4f} loss {:.4f}\n", k, sum[k]["accuracy"].get<double>(), sum[k]["loss"].get<double>());
      }
      return sum["stopped"].get<bool>() ? 130 : 0;
    };
  });

  struct RebuildArgs {
    std::string run, step = "last", out, dtype = "f32";
    bool json = false, quiet = false;
  };
  auto r = std::make_shared<RebuildArgs>();
  auto* rp = app.add_subcommand("replay", "Rebuild a run's weights from its base checkpoint and step log; print their hash");
  rp->add_option("run", r->run, "Run folder (holds steps.zolog)")->required();
  rp->add_option("--step", r->step, "Weights after: last, best, or N steps")->capture_default_str();
  rp->add_option("--out,-o", r->out, "Also write them as a Hugging Face folder");
  rp->add_flag("--json", r->json, "Print the result as one JSON object on the last line");
  rp->add_flag("--quiet,-q", r->quiet, "No progress bar");
  rp->callback([&run, r] {
    run = [r] {
      nlohmann::json info;
      Model m = rebuild(r->run, r->step, &info, !r->quiet);
      if (!r->out.empty()) save_hf(m, r->out, DType::F32);
      nlohmann::json j = {{"run", r->run}, {"steps", info["replayed_steps"]}, {"logged_steps", info["logged_steps"]},
                          {"hash", fmt::format("{:016x}", weights_hash(m))}, {"base_hash", info["base_hash"]}};
      if (!r->out.empty()) j["out"] = r->out;
      if (r->json)
        print_json(j);
      else
        fmt::print("{} after {} of {} steps: weights hash {}\n", r->run, j["steps"].dump(), j["logged_steps"].dump(),
                   j["hash"].get<std::string>());
      return 0;
    };
  });

  auto x = std::make_shared<RebuildArgs>();
  auto* ex = app.add_subcommand("export", "Write a run's weights (base + step log) as Hugging Face safetensors + config.json");
  ex->add_option("run", x->run, "Run folder (holds steps.zolog)")->required();
  ex->add_option("--step", x->step, "Weights after: last, best, or N steps")->capture_default_str();
  ex->add_option("--out,-o", x->out, "Output folder")->required();
  ex->add_option("--dtype", x->dtype, "Stored dtype: f32 or bf16")->capture_default_str();
  ex->add_flag("--json", x->json, "Print the result as one JSON object on the last line");
  ex->add_flag("--quiet,-q", x->quiet, "No progress bar");
  ex->callback([&run, x] {
    run = [x] {
      nlohmann::json info;
      Model m = rebuild(x->run, x->step, &info, !x->quiet);
      save_hf(m, x->out, parse_storage(x->dtype));
      nlohmann::json j = {{"run", x->run}, {"steps", info["replayed_steps"]}, {"out", x->out}, {"dtype", x->dtype}};
      if (x->json)
        print_json(j);
      else
        fmt::print("wrote {} (weights after {} steps)\n", x->out, j["steps"].dump());
      return 0;
    };
  });
}

}  // namespace zo::cli
