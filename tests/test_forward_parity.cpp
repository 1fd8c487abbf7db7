// Forward-pass parity with Hugging Face transformers. The oracle is transformers itself:
// tools/gen_model_fixtures.py saved, for tiny random checkpoints of every supported variant, the
// logits at all positions, the loss, candidate scores and greedy generations (ref.safetensors,
// ref.json). Targets: logits within 1e-4 absolute, loss and scores within 1e-5 relative, greedy
// generations identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/forward.h"
#include "models/load.h"
#include "models/safetensors.h"
#include "zo/task.h"

namespace zo {
namespace {

std::string dir_of(const std::string& v) { return std::string(ZO_TEST_DATA) + "/models/" + v; }

template <typename T>
std::vector<T> values(const StTensor& t) {
  std::vector<T> v(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

struct Param_ {
  std::string variant;
  DType storage;
};

class Parity : public ::testing::TestWithParam<Param_> {};

TEST_P(Parity, LogitsLossScoresGreedy) {
  const auto [variant, storage] = GetParam();
  const std::string dir = dir_of(variant);
  Model m = load_model(dir, LoadOptions{storage});
  Engine e(m);
  SafetensorsFile ref = SafetensorsFile::open(dir + "/ref.safetensors");
  const StTensor& ids_t = *ref.find("input_ids");
  const int B = int(ids_t.shape[0]), T = int(ids_t.shape[1]), V = m.cfg.vocab_size;
  auto ids = values<int64_t>(ids_t);
  auto mask = values<int64_t>(*ref.find("attention_mask"));
  auto want = values<float>(*ref.find("logits"));
  auto labels = values<int64_t>(*ref.find("labels"));
  ASSERT_EQ(ref.find("logits")->shape, (std::vector<int64_t>{B, T, V}));

  // 1. logits at every real position
  std::vector<int32_t> row_of;
  Batch b = Batch::from_padded(ids.data(), mask.data(), B, T, &row_of);
  e.forward(b);
  std::vector<int32_t> rows;
  for (int r = 0; r < b.n_tokens(); r++) rows.push_back(r);
  std::vector<float> got(size_t(b.n_tokens()) * V);
  e.logits(e.hidden(), rows, got.data());
  double max_err = 0;
  for (int i = 0; i < B * T; i++) {
    if (row_of[size_t(i)] < 0) continue;
    for (int v = 0; v < V; v++)
      max_err = std::max(max_err, double(std::fabs(got[size_t(row_of[size_t(i)]) * V + v] - want[size_t(i) * V + v])));
  }
  EXPECT_LT(max_err, 1e-4) << variant << ": max |logit - transformers| = " << max_err;
  // 1b. the same logits one at a time (target_logits: the head rows of the ids only), at every real
  // position for its label and for a few ids spread over the vocabulary
  {
    std::vector<int32_t> trow, tid;
    std::vector<float> tw;
    for (int i = 0; i < B * T; i++) {
      if (row_of[size_t(i)] < 0) continue;
      for (int v : {int(labels[size_t(i)] < 0 ? 0 : labels[size_t(i)]), 1, V / 2, V - 1, (i * 37) % V}) {
        trow.push_back(row_of[size_t(i)]);
        tid.push_back(v);
        tw.push_back(want[size_t(i) * V + size_t(v)]);
      }
    }
    auto lg = e.target_logits(e.hidden(), trow, tid);
    double err = 0;
    for (size_t k = 0; k < lg.size(); k++) err = std::max(err, std::fabs(lg[k] - double(tw[k])));
    EXPECT_LT(err, 1e-4) << variant << ": max |target logit - transformers| = " << err;
  }

  // 2. loss over the labelled targets (HF shifts: position t predicts label t+1)
  std::vector<int32_t> trow, tid;
  for (int r = 0; r < B; r++)
    for (int t = 0; t + 1 < T; t++) {
      int64_t lab = labels[size_t(r) * T + t + 1];
      if (lab == -100) continue;
      trow.push_back(row_of[size_t(r) * T + t]);
      tid.push_back(int32_t(lab));
    }
  auto lp = e.target_logprobs(e.hidden(), trow, tid);
  double loss = 0;
  for (double x : lp) loss -= x;
  loss /= double(lp.size());
  double want_loss = values<double>(*ref.find("loss_f64"))[0];
  EXPECT_NEAR(loss, want_loss, 1e-5 * std::fabs(want_loss)) << variant;

  // 3. candidate scores (mean log-prob of the continuation) and 4. greedy generations
  std::ifstream jf(dir + "/ref.json");
  auto j = nlohmann::json::parse(jf);
  for (auto& c : j["candidates"]) {
    auto prompt = c["prompt"].get<std::vector<int32_t>>();
    auto cands = c["candidates"].get<std::vector<std::vector<int32_t>>>();
    auto want_s = c["scores"].get<std::vector<double>>();
    auto s = score_candidates(e, {&prompt}, cands);
    for (size_t k = 0; k < cands.size(); k++)
      EXPECT_NEAR(s[0][k], want_s[k], 1e-5 * std::fabs(want_s[k])) << variant << " candidate " << k;
  }
  for (auto& g : j["greedy"]) {
    auto prompt = g["prompt"].get<std::vector<int32_t>>();
    GenerateOptions o;
    o.max_new_tokens = g["max_new_tokens"].get<int>();
    auto out = generate(e, prompt, o);
    EXPECT_EQ(out, g["output"].get<std::vector<int32_t>>()) << variant;
  }
}

INSTANTIATE_TEST_SUITE_P(Transformers, Parity,
                         ::testing::Values(Param_{"opt_pre_ln", DType::F32}, Param_{"opt_post_ln", DType::F32},
                                           Param_{"llama_gqa", DType::F32}, Param_{"llama_tied_bf16", DType::F32},
                                           Param_{"llama_tied_bf16", DType::BF16}, Param_{"llama_sharded", DType::F32},
                                           Param_{"qwen2_bias", DType::F32}),
                         [](const auto& info) {
                           return info.param.variant + (info.param.storage == DType::BF16 ? "_bf16" : "_f32");
                         });

// Scoring a batch of prompts together (packed, with mixed lengths) gives the same scores as one
// prompt at a time: packing must not leak attention across sequences.
TEST(Packing, BatchEqualsSingle) {
  Model m = load_model(dir_of("llama_gqa"));
  Engine e(m);
  std::vector<std::vector<int32_t>> ps = {{5, 6, 7}, {9, 10, 11, 12, 13, 14, 15}, {3}};
  std::vector<std::vector<int32_t>> cands = {{20}, {30}};
  std::vector<const std::vector<int32_t>*> all;
  for (auto& p : ps) all.push_back(&p);
  auto together = score_candidates(e, all, cands);
  for (size_t i = 0; i < ps.size(); i++) {
    auto one = score_candidates(e, {&ps[i]}, cands);
    for (size_t c = 0; c < cands.size(); c++) EXPECT_NEAR(together[i][c], one[0][c], 1e-5);
  }
}

// RoPE's rows are made as far as the batches reach (Engine::ensure_rope), growing. Oracle: under
// RoPE attention sees relative positions only, so a LLaMA gives the same logits for a sequence at
// positions 0.. as at 700.. or 3000.. (to the f32 rounding of the larger angles). The engine makes
// its first rows for the short positions and must then grow them twice; a position past the
// context is an error, not a read past the table.
TEST(Rope, RowsGrowWithThePositionsAndOnlyRelativePositionsCount) {
  Model m = load_model(dir_of("llama_gqa"));
  m.cfg.max_pos = 4096;  // (a LLaMA's weights do not depend on it)
  Engine e(m);
  const std::vector<int32_t> ids = {5, 6, 7, 9, 10, 11, 12, 13};
  std::vector<int32_t> rows(ids.size());
  for (size_t i = 0; i < rows.size(); i++) rows[i] = int32_t(i);
  auto logits_at = [&](int p0) {
    Batch b = Batch::from_sequences({ids});
    for (int32_t& p : b.pos) p += p0;
    e.forward(b);
    std::vector<float> out(size_t(m.cfg.vocab_size) * ids.size());
    e.logits(e.hidden(), rows, out.data());
    return out;
  };
  const std::vector<float> at0 = logits_at(0), at700 = logits_at(700), at3000 = logits_at(3000);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < at0.size(); i++) {
    worst = std::max({worst, std::fabs(double(at700[i]) - at0[i]), std::fabs(double(at3000[i]) - at0[i])});
    scale = std::max(scale, std::fabs(double(at0[i])));
  }
  EXPECT_LT(worst, 1e-3 * scale) << "scale " << scale;
  Batch past = Batch::from_sequences({ids});
  for (int32_t& p : past.pos) p += 4096 - 4;
  EXPECT_THROW(e.forward(past), zo::Error);
}

}  // namespace
}  // namespace zo
