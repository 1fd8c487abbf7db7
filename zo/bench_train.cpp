// zo bench train: MeZO steps on SST-2 batches, timed, with peak RSS, next to zo's own inference
// peak on the same batches (--mode inference). tools/mezo_torch.py runs the PyTorch reference on
// the same rows; bench/run_train_bench.sh runs both and prints the ratios.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/philox.h"
#include "models/load.h"
#include "models/tokenizer.h"
#include "zo/bench.h"
#include "zo/data.h"
#include "zo/defaults.h"
#include "zo/spsa.h"
#include "zo/task.h"

namespace zo {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

int bench_train(const BenchTrainArgs& a) {
  ZO_CHECK(!a.data.empty(), "bench train: give --data (SST-2 JSONL)");
  ZO_CHECK(a.mode == "train" || a.mode == "inference", "--mode '{}': expected train or inference", a.mode);
  ZO_CHECK(a.steps >= 1 && a.warmup >= 0 && a.batch >= 1, "bench train: --steps >= 1, --warmup >= 0, --batch >= 1");
  const bool real = !a.model.empty();
  const std::string path = real ? resolve_model(a.model) : "";
  Model m = real ? load_model(path, LoadOptions{DType::F32}) : Model::allocate(shape_config(a.shape), DType::F32);
  if (!real) fill_random(m, 1234);
  // The default model's tokenizer for random-weight shapes (as tools/mezo_torch.py does).
  Tokenizer tok = load_tokenizer(real ? path : default_model_path());
  const long total = long(a.warmup + a.steps) * a.batch;
  auto all = read_jsonl(a.data, -1);
  ZO_CHECK(!all.empty(), "{}: no rows", a.data);
  std::vector<nlohmann::json> rows;
  for (long i = 0; i < total; i++) rows.push_back(all[size_t(i % long(all.size()))]);
  all.clear();
  all.shrink_to_fit();
  ClassData d = encode_classification(task_from_name("sst2"), tok, rows, a.data, m.cfg.max_pos);
  if (!real && a.shape == "opt-125m")  // OPT's tokenizer starts every prompt with </s> (id 2)
    for (auto& ex : d.examples) ex.prompt.insert(ex.prompt.begin(), 2);

  Engine e(m);
  SpsaOptions so;
  so.eps = float(a.eps);
  std::unique_ptr<Spsa> spsa;
  if (a.mode == "train") spsa = std::make_unique<Spsa>(m, e, so);
  size_t rss_loaded = current_rss_bytes();
  reset_peak_rss();
  double timed = 0, tokens = 0, real_tokens = 0;
  StepTimes before{};
  for (int t = 0; t < a.warmup + a.steps; t++) {
    std::vector<const std::vector<int32_t>*> prompts;
    std::vector<int> labels;
    double tok_step = 0;
    for (int i = 0; i < a.batch; i++) {
      const ClassExample& ex = d.examples[size_t(t) * size_t(a.batch) + size_t(i)];
      prompts.push_back(&ex.prompt);
      labels.push_back(ex.label);
      tok_step += double(ex.prompt.size() + 1) * 2;  // tools/mezo_torch.py's definition
    }
    auto cp = std::make_shared<CandidatePlan>(plan_candidates(prompts, d.candidates));
    LossPlan plan;
    plan.batch = cp->batch;
    plan.keep = cp->keep;
    plan.rows = cp->rows;
    plan.ids = cp->ids;
    plan.loss = [cp, labels](const std::vector<double>& lp) {
      auto sc = plan_scores(*cp, lp);
      double s = 0;
      for (size_t i = 0; i < sc.size(); i++) s += candidate_cross_entropy(sc[i], labels[i]);
      return s / double(sc.size());
    };
    if (t == a.warmup && spsa) before = spsa->times();
    auto t0 = Clock::now();
    if (spsa) {
      StepRecord r = spsa->step(uint64_t(t), {rng::direction_seed(0, uint64_t(t), 0)}, float(a.lr), plan);
      spsa->set_pending(r);
    } else {
      e.forward(plan.batch, nullptr, &plan.keep);
      volatile double l = plan.loss(e.target_logprobs(e.hidden(), plan.rows, plan.ids));
      (void)l;
    }
    if (t >= a.warmup) {
      timed += since(t0);
      tokens += tok_step;
      real_tokens += plan.batch.n_tokens();
    }
  }
  if (spsa) spsa->flush();
  nlohmann::json j;
  j["tool"] = "zo";
  j["shape"] = real ? path : a.shape;
  j["mode"] = a.mode;
  j["steps"] = a.steps;
  j["batch"] = a.batch;
  j["threads"] = omp_get_max_threads();
  j["seconds_per_step"] = timed / a.steps;
  j["steps_per_second"] = a.steps / timed;
  j["tokens_per_second"] = tokens / timed;
  j["packed_tokens_per_step"] = real_tokens / a.steps;
  j["weights_bytes"] = m.bytes();
  j["rss_after_load_bytes"] = rss_loaded;
  j["peak_rss_bytes"] = peak_rss_bytes();
  if (spsa) {
    const StepTimes& s = spsa->times();
    j["split_seconds_per_step"] = {{"forward", (s.forward - before.forward) / a.steps},
                                   {"head", (s.head - before.head) / a.steps},
                                   {"perturb", (s.perturb - before.perturb) / a.steps},
                                   {"update", (s.update - before.update) / a.steps}};
  }
  if (a.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s %s: %.3f steps/s, %.0f tokens/s, peak RSS %.0f MiB (weights %.0f MiB)\n", j["shape"].get<std::string>().c_str(),
                a.mode.c_str(), a.steps / timed, tokens / timed, double(peak_rss_bytes()) / 1048576.0,
                double(m.bytes()) / 1048576.0);
  }
  return 0;
}

}  // namespace zo
