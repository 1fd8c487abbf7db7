// Fuzz target: a JSONL data set as zo train and zo eval read it. Any bytes must give rows, then
// their encoding for the built-in sst2 and lm tasks and for a task the first row may describe
// (template, label words), and the packed batch that scores them; or a zo::Error. Encoded data must
// keep its invariants: labels in range, token ids in the vocabulary, lengths within max length.
#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/tokenizer.h"
#include "zo/data.h"
#include "zo/task.h"

namespace {

void check_ids(const std::vector<int32_t>& ids, int vocab) {
  for (int32_t id : ids)
    if (id < 0 || id >= vocab) __builtin_trap();
}

void encode(const zo::TaskSpec& t, const zo::Tokenizer& tok, const std::vector<nlohmann::json>& rows, int max_len) {
  const int vocab = tok.vocab_size();
  if (t.kind == zo::TaskSpec::Kind::LM) {
    for (const auto& s : zo::encode_lm(t, tok, rows, "fuzz.jsonl", max_len)) {
      if (s.size() < 2 || (max_len > 0 && s.size() > size_t(max_len))) __builtin_trap();
      check_ids(s, vocab);
    }
    return;
  }
  zo::ClassData d = zo::encode_classification(t, tok, rows, "fuzz.jsonl", max_len);
  if (d.candidates.size() != t.label_words.size()) __builtin_trap();
  size_t longest = 0;
  for (const auto& c : d.candidates) {
    if (c.empty()) __builtin_trap();
    check_ids(c, vocab);
    longest = std::max(longest, c.size());
  }
  std::vector<const std::vector<int32_t>*> prompts;
  for (const auto& ex : d.examples) {
    if (ex.label < 0 || size_t(ex.label) >= d.candidates.size() || ex.prompt.empty()) __builtin_trap();
    if (max_len > 0 && ex.prompt.size() + longest > size_t(max_len)) __builtin_trap();
    check_ids(ex.prompt, vocab);
    if (prompts.size() < 16) prompts.push_back(&ex.prompt);
  }
  if (prompts.empty()) return;
  // One row per candidate token after each prompt (one per candidate if every candidate is a token).
  const zo::CandidatePlan plan = zo::plan_candidates(prompts, d.candidates);
  size_t cand_tokens = 0;
  for (const auto& c : d.candidates) cand_tokens += c.size();
  if (plan.rows.size() != plan.ids.size() || plan.rows.size() != prompts.size() * cand_tokens) __builtin_trap();
  for (int32_t r : plan.rows)
    if (r < 0 || r >= plan.batch.n_tokens()) __builtin_trap();
  // Scoring reads exactly those rows.
  const std::vector<double> lp(plan.rows.size(), -1.0);
  for (const auto& s : zo::plan_scores(plan, lp))
    if (s.size() != d.candidates.size()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const zo::Tokenizer tok = zo::Tokenizer::from_hf_dir(ZO_TEST_DATA "/tokenizers/opt_bpe");
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  std::vector<nlohmann::json> rows;
  try {
    rows = zo::parse_jsonl(in, "fuzz.jsonl", 64);
  } catch (const zo::Error&) {
    return 0;
  }
  std::vector<zo::TaskSpec> tasks = {zo::task_from_name("sst2"), zo::task_from_name("lm")};
  try {
    if (rows[0].contains("template")) tasks.push_back(zo::task_from_json(rows[0], "fuzz task"));
  } catch (const zo::Error&) {
  }
  for (const zo::TaskSpec& t : tasks)
    for (int max_len : {0, 4, 64}) {
      try {
        encode(t, tok, rows, max_len);
      } catch (const zo::Error&) {
      }
    }
  return 0;
}
