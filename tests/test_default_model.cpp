// The built-in default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against transformers on the same
// dequantized weights: tools/gen_model_fixtures.py loaded the GGUF with transformers' own GGUF
// loader (which dequantizes to f32 and undoes llama.cpp's q/k permutation by itself) and recorded
// logits, log-probs, candidate scores, greedy generations and the tokenizer's ids for 4 prompts.
// Skips when the model is not installed (tools/setup.sh installs it).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/forward.h"
#include "models/load.h"
#include "models/tokenizer.h"
#include "zo/defaults.h"
#include "zo/task.h"

namespace zo {
namespace {

std::string model_path() {
  if (const char* p = std::getenv("ZO_DEFAULT_GGUF")) return p;
  return default_model_path();
}

class DefaultModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(model_path())) return;
    model_ = new Model(load_model(model_path()));
    tok_ = new Tokenizer(load_tokenizer(model_path()));
    std::ifstream f(std::string(ZO_TEST_DATA) + "/default_model_ref.json");
    ref_ = new nlohmann::json(nlohmann::json::parse(f));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tok_;
    delete ref_;
  }
  void SetUp() override {
    if (!model_) GTEST_SKIP() << "default model not installed at " << model_path() << " (run tools/setup.sh)";
  }
  static Model* model_;
  static Tokenizer* tok_;
  static nlohmann::json* ref_;
};
Model* DefaultModel::model_ = nullptr;
Tokenizer* DefaultModel::tok_ = nullptr;
nlohmann::json* DefaultModel::ref_ = nullptr;

TEST_F(DefaultModel, TokenizerMatchesTransformers) {
  for (auto& p : (*ref_)["prompts"])
    EXPECT_EQ(tok_->encode(p["text"].get<std::string>(), /*add_special_tokens=*/false),
              p["prompt_ids"].get<std::vector<int32_t>>())
        << p["name"];
}

TEST_F(DefaultModel, LastPositionLogitsAndLogProbs) {
  Engine e(*model_);
  const int V = model_->cfg.vocab_size;
  for (auto& p : (*ref_)["prompts"]) {
    auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
    Batch b = Batch::from_sequences({ids});
    e.forward(b);
    std::vector<float> lg(static_cast<size_t>(V));
    e.logits(e.hidden(), {b.n_tokens() - 1}, lg.data());
    auto fid = p["fixed_ids"].get<std::vector<int>>();
    auto fl = p["logits_at_fixed_ids"].get<std::vector<double>>();
    for (size_t i = 0; i < fid.size(); i++) EXPECT_NEAR(lg[size_t(fid[i])], fl[i], 1e-4) << p["name"] << " id " << fid[i];
    EXPECT_EQ(int(std::max_element(lg.begin(), lg.end()) - lg.begin()), p["argmax"].get<int>());
    // log-probs of the top 20 through the loss head (logsumexp over the whole vocabulary)
    auto top = p["top20"]["ids"].get<std::vector<int32_t>>();
    auto want = p["top20"]["logprobs"].get<std::vector<double>>();
    std::vector<int32_t> rows(top.size(), b.n_tokens() - 1);
    auto lp = e.target_logprobs(e.hidden(), rows, top);
    for (size_t i = 0; i < top.size(); i++) EXPECT_NEAR(lp[i], want[i], 1e-4) << p["name"];
  }
}

TEST_F(DefaultModel, Sst2CandidateScores) {
  Engine e(*model_);
  for (auto& p : (*ref_)["prompts"]) {
    if (!p.contains("candidate_scores")) continue;
    auto prompt = p["prompt_ids"].get<std::vector<int32_t>>();
    std::vector<std::vector<int32_t>> cands;
    std::vector<double> want;
    for (auto& [word, c] : p["candidate_scores"].items()) {
      cands.push_back(c["ids"].get<std::vector<int32_t>>());
      want.push_back(c["score"].get<double>());
      EXPECT_EQ(tok_->encode(word, false), cands.back()) << word;
    }
    auto s = score_candidates(e, {&prompt}, cands);
    for (size_t k = 0; k < cands.size(); k++) EXPECT_NEAR(s[0][k], want[k], 1e-5 * std::fabs(want[k]));
  }
}

TEST_F(DefaultModel, GreedyGenerationIdentical) {
  Engine e(*model_);
  for (auto& p : (*ref_)["prompts"]) {
    GenerateOptions o;
    o.max_new_tokens = 16;
    auto out = generate(e, p["prompt_ids"].get<std::vector<int32_t>>(), o);
    EXPECT_EQ(out, p["greedy_16"].get<std::vector<int32_t>>()) << p["name"];
    EXPECT_EQ(tok_->decode(out), p["greedy_16_text"].get<std::string>()) << p["name"];
  }
}

TEST_F(DefaultModel, Bf16MastersStayClose) {
  // bf16 masters round every weight to 8 bits of mantissa: logits move, but only a little.
  Model bf = load_model(model_path(), LoadOptions{DType::BF16});
  Engine e32(*model_), e16(bf);
  auto ids = (*ref_)["prompts"][0]["prompt_ids"].get<std::vector<int32_t>>();
  Batch b = Batch::from_sequences({ids});
  const int V = model_->cfg.vocab_size;
  std::vector<float> a(static_cast<size_t>(V)), c(static_cast<size_t>(V));
  e32.forward(b);
  e32.logits(e32.hidden(), {b.n_tokens() - 1}, a.data());
  e16.forward(b);
  e16.logits(e16.hidden(), {b.n_tokens() - 1}, c.data());
  double mx = 0;
  for (int i = 0; i < V; i++) mx = std::max(mx, double(std::fabs(a[size_t(i)] - c[size_t(i)])));
  EXPECT_LT(mx, 0.5);
  EXPECT_GT(mx, 0.0);  // bf16 storage really is in use
}

}  // namespace
}  // namespace zo
