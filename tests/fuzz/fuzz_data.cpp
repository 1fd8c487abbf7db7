// Fuzz target: a JSONL data set as zo train and zo eval read it. Any bytes must give rows, then
// their encoding for the built-in sst2 and lm tasks and for a task the first row may describe
// (template, label words), and the packed batches that score and train on them; or a zo::Error.
// Encoded data must keep its invariants: labels in range, token ids in the vocabulary, lengths
// within max length, every scored row inside its batch. The file is read whole (as zo does: one
// bad line rejects it), then line by line and row by row, so that most inputs reach the encoders.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/tokenizer.h"
#include "zo/data.h"
#include "zo/objective.h"
#include "zo/task.h"

namespace {

void check_ids(const std::vector<int32_t>& ids, int vocab) {
  for (int32_t id : ids)
    if (id < 0 || id >= vocab) __builtin_trap();
}

void check_plan(const zo::LossPlan& plan) {
  if (plan.rows.size() != plan.ids.size()) __builtin_trap();
  for (int32_t r : plan.rows)
    if (r < 0 || r >= plan.batch.n_tokens()) __builtin_trap();
  if (!std::isfinite(plan.loss(std::vector<double>(plan.rows.size(), -1.0)))) __builtin_trap();
}

// Row by row (a bad row is skipped here, where zo rejects the file), then the batches.
void encode(const zo::TaskSpec& t, const zo::Tokenizer& tok, const std::vector<nlohmann::json>& rows, int max_len) {
  const int vocab = tok.vocab_size();
  if (t.kind == zo::TaskSpec::Kind::LM) {
    std::vector<std::vector<int32_t>> seqs;
    for (const auto& row : rows) {
      try {
        for (auto& s : zo::encode_lm(t, tok, {row}, "fuzz.jsonl", max_len)) {
          if (s.size() < 2 || (max_len > 0 && s.size() > size_t(max_len))) __builtin_trap();
          check_ids(s, vocab);
          if (seqs.size() < 16) seqs.push_back(std::move(s));
        }
      } catch (const zo::Error&) {
      }
    }
    if (!seqs.empty()) check_plan(zo::lm_loss_plan(seqs));
    return;
  }
  std::vector<zo::ClassExample> examples;
  std::vector<std::vector<int32_t>> candidates;
  for (const auto& row : rows) {
    try {
      zo::ClassData d = zo::encode_classification(t, tok, {row}, "fuzz.jsonl", max_len);
      candidates = d.candidates;
      for (auto& ex : d.examples) examples.push_back(std::move(ex));
    } catch (const zo::Error&) {
    }
  }
  if (examples.empty()) return;
  if (candidates.size() != t.label_words.size()) __builtin_trap();
  size_t longest = 0;
  for (const auto& c : candidates) {
    if (c.empty()) __builtin_trap();
    check_ids(c, vocab);
    longest = std::max(longest, c.size());
  }
  std::vector<const std::vector<int32_t>*> prompts;
  std::vector<int> labels;
  for (const auto& ex : examples) {
    if (ex.label < 0 || size_t(ex.label) >= candidates.size() || ex.prompt.empty()) __builtin_trap();
    if (max_len > 0 && ex.prompt.size() + longest > size_t(max_len)) __builtin_trap();
    check_ids(ex.prompt, vocab);
    if (prompts.size() < 16) prompts.push_back(&ex.prompt), labels.push_back(ex.label);
  }
  // One row per candidate token after each prompt (one per candidate if every candidate is a token).
  const zo::CandidatePlan plan = zo::plan_candidates(prompts, candidates);
  size_t cand_tokens = 0;
  for (const auto& c : candidates) cand_tokens += c.size();
  if (plan.rows.size() != plan.ids.size() || plan.rows.size() != prompts.size() * cand_tokens) __builtin_trap();
  for (int32_t r : plan.rows)
    if (r < 0 || r >= plan.batch.n_tokens()) __builtin_trap();
  // Scoring reads exactly those rows; training's loss plans are built on the same batch.
  const std::vector<double> lp(plan.rows.size(), -1.0);
  for (const auto& s : zo::plan_scores(plan, lp))
    if (s.size() != candidates.size()) __builtin_trap();
  for (const char* objective : {"ce", "nll", "accuracy"})
    check_plan(zo::classification_loss_plan(prompts, labels, candidates, objective));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const zo::Tokenizer tok = zo::Tokenizer::from_hf_dir(ZO_TEST_DATA "/tokenizers/opt_bpe");
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<nlohmann::json> rows;
  try {  // the whole file, as zo reads it
    std::istringstream in(text);
    rows = zo::parse_jsonl(in, "fuzz.jsonl", 64);
  } catch (const zo::Error&) {
    rows.clear();
    std::istringstream lines(text);
    std::string line;
    while (rows.size() < 64 && std::getline(lines, line)) {
      std::istringstream one(line);
      try {
        rows.push_back(zo::parse_jsonl(one, "fuzz.jsonl", 1).at(0));
      } catch (const zo::Error&) {
      }
    }
  }
  if (rows.empty()) return 0;
  std::vector<zo::TaskSpec> tasks = {zo::task_from_name("sst2"), zo::task_from_name("lm")};
  try {
    if (rows[0].contains("template")) tasks.push_back(zo::task_from_json(rows[0], "fuzz task"));
  } catch (const zo::Error&) {
  }
  for (const zo::TaskSpec& t : tasks)
    for (int max_len : {0, 4, 64}) encode(t, tok, rows, max_len);
  return 0;
}
