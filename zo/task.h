// Tasks: what a data row means and how it is scored.
//   lm:             JSONL rows with "text"; loss = mean next-token NLL over all tokens.
//   classification: a prompt template over the row's fields plus one label word (or phrase) per
//                   class; prediction = the candidate continuation with the highest mean
//                   log-probability (MeZO's scoring). sst2 is the built-in instance:
//                   "{sentence} It was" + " terrible" | " great".
#pragma once
#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <vector>

#include "models/forward.h"
#include "models/tokenizer.h"

namespace zo {

struct TaskSpec {
  enum class Kind { LM, Classification };
  Kind kind = Kind::LM;
  std::string name;
  std::string text_field = "text";           // lm
  std::string prompt_template;               // classification: "{sentence} It was"
  std::vector<std::string> label_words;      // classification: index = label
  std::string label_field = "label";
  int max_length = 0;                        // truncate sequences (0: the model's context)
};

// "lm", "sst2", or a path to a task JSON file:
//   {"template": "{sentence} It was", "label_words": [" terrible", " great"], "label_field": "label"}
TaskSpec task_from_name(const std::string& name_or_path);
TaskSpec task_from_json(const nlohmann::json& j, const std::string& source);
// Fills "{field}" placeholders from a row; "{{" and "}}" are literal braces.
std::string render_template(const std::string& tmpl, const nlohmann::json& row, const std::string& where);

struct ClassExample {
  std::vector<int32_t> prompt;
  int label = 0;
};
struct ClassData {
  std::vector<std::vector<int32_t>> candidates;  // token ids of each label word (no specials)
  std::vector<ClassExample> examples;
};
ClassData encode_classification(const TaskSpec& t, const Tokenizer& tok, const std::vector<nlohmann::json>& rows,
                                const std::string& source, int max_len);
std::vector<std::vector<int32_t>> encode_lm(const TaskSpec& t, const Tokenizer& tok,
                                            const std::vector<nlohmann::json>& rows, const std::string& source,
                                            int max_len);

// The packed batch that scores candidates after prompts, and where each target is read.
struct CandidatePlan {
  Batch batch;
  std::vector<int32_t> keep;        // first row of each sequence that reaches a head (Engine keep_from)
  std::vector<int32_t> rows, ids;   // Engine::target_logprobs arguments
  size_t n_prompts = 0;
  std::vector<size_t> cand_len;     // tokens per candidate
};
CandidatePlan plan_candidates(const std::vector<const std::vector<int32_t>*>& prompts,
                              const std::vector<std::vector<int32_t>>& candidates);
// scores[p][c] = mean log-probability of candidate c after prompt p, from target_logprobs' output.
std::vector<std::vector<double>> plan_scores(const CandidatePlan& plan, const std::vector<double>& lp);
// -log softmax(scores)[label]: MeZO's classification loss over the candidates' scores.
double candidate_cross_entropy(const std::vector<double>& scores, int label);

// What scores a packed batch: log p(ids[i] | rows[i]) after a forward over it (keep: rows from
// which the last block's outputs are needed, or null). The CPU Engine (engine_scorer) or a device.
using Scorer = std::function<std::vector<double>(const Batch& b, const std::vector<int32_t>* keep,
                                                 const std::vector<int32_t>& rows, const std::vector<int32_t>& ids)>;
Scorer engine_scorer(Engine& e);

// Mean log-probability of each candidate after each prompt: scores[p][c]. Candidates that are
// single tokens share one sequence per prompt (the vocabulary is reached at one row); longer ones
// get prompt + candidate sequences.
std::vector<std::vector<double>> score_candidates(const Scorer& s, const std::vector<const std::vector<int32_t>*>& prompts,
                                                  const std::vector<std::vector<int32_t>>& candidates);
std::vector<std::vector<double>> score_candidates(Engine& e, const std::vector<const std::vector<int32_t>*>& prompts,
                                                  const std::vector<std::vector<int32_t>>& candidates);

struct EvalResult {
  std::string task;
  long examples = 0;
  long tokens = 0;        // tokens forwarded
  long targets = 0;       // scored target tokens
  double loss = 0;        // lm: mean token NLL; classification: mean NLL of the gold candidate
  double ce = 0;          // classification: mean cross-entropy over the candidates' scores (MeZO's loss)
  double perplexity = 0;  // exp(loss)
  double accuracy = -1;   // classification only
  double seconds = 0;
};
struct EvalOptions {
  int batch_size = 16;
  bool progress = true;
};
EvalResult evaluate_classification(const Scorer& s, const ClassData& d, const EvalOptions& o);
EvalResult evaluate_lm(const Scorer& s, const std::vector<std::vector<int32_t>>& seqs, const EvalOptions& o);
inline EvalResult evaluate_classification(Engine& e, const ClassData& d, const EvalOptions& o) {
  return evaluate_classification(engine_scorer(e), d, o);
}
inline EvalResult evaluate_lm(Engine& e, const std::vector<std::vector<int32_t>>& seqs, const EvalOptions& o) {
  return evaluate_lm(engine_scorer(e), seqs, o);
}

}  // namespace zo
