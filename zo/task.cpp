#include "zo/task.h"

#include <chrono>
#include <cmath>
#include <fstream>

#include "core/error.h"
#include "zo/data.h"
#include "zo/progress.h"

namespace zo {

TaskSpec task_from_json(const nlohmann::json& j, const std::string& src) {
  ZO_CHECK(j.is_object(), "{}: a task must be a JSON object", src);
  TaskSpec t;
  if (j.contains("name")) ZO_CHECK(j["name"].is_string(), "{}: 'name' must be a string", src);
  t.name = j.value("name", std::string("custom"));
  if (j.contains("template")) {
    t.kind = TaskSpec::Kind::Classification;
    ZO_CHECK(j["template"].is_string(), "{}: 'template' must be a string", src);
    t.prompt_template = j["template"].get<std::string>();
    ZO_CHECK(j.contains("label_words") && j["label_words"].is_array() && j["label_words"].size() >= 2,
             "{}: 'label_words' must be an array of at least two strings", src);
    for (auto& w : j["label_words"]) {
      ZO_CHECK(w.is_string() && !w.get<std::string>().empty(), "{}: every label word must be a non-empty string", src);
      t.label_words.push_back(w.get<std::string>());
    }
    if (j.contains("label_field")) {
      ZO_CHECK(j["label_field"].is_string(), "{}: 'label_field' must be a string", src);
      t.label_field = j["label_field"].get<std::string>();
    }
  } else {
    t.kind = TaskSpec::Kind::LM;
    if (j.contains("text_field")) {
      ZO_CHECK(j["text_field"].is_string(), "{}: 'text_field' must be a string", src);
      t.text_field = j["text_field"].get<std::string>();
    }
  }
  return t;
}

TaskSpec task_from_name(const std::string& name) {
  if (name == "lm") {
    TaskSpec t;
    t.name = "lm";
    return t;
  }
  if (name == "sst2") {
    // MeZO's SST-2 prompt: "<sentence> It was terrible|great" (label 0 = terrible, 1 = great).
    TaskSpec t;
    t.kind = TaskSpec::Kind::Classification;
    t.name = "sst2";
    t.prompt_template = "{sentence} It was";
    t.label_words = {" terrible", " great"};
    return t;
  }
  std::ifstream f(name);
  if (!f) fail("unknown task '{}': use lm, sst2 or a task JSON file", name);
  auto j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded()) fail("{}: not valid JSON", name);
  return task_from_json(j, name);
}

std::string render_template(const std::string& tmpl, const nlohmann::json& row, const std::string& where) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); i++) {
    char ch = tmpl[i];
    if (ch == '{' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      out += '{';
      i++;
    } else if (ch == '}' && i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
      out += '}';
      i++;
    } else if (ch == '{') {
      size_t end = tmpl.find('}', i);
      ZO_CHECK(end != std::string::npos, "template '{}': unclosed '{{'", tmpl);
      out += json_string_field(row, tmpl.substr(i + 1, end - i - 1), where);
      i = end;
    } else {
      out += ch;
    }
  }
  return out;
}

namespace {
std::string where_of(const std::string& src, const nlohmann::json& row) {
  return row.contains("__line") ? fmt::format("{}:{}", src, row["__line"].get<long>()) : src;
}
}  // namespace

ClassData encode_classification(const TaskSpec& t, const Tokenizer& tok, const std::vector<nlohmann::json>& rows,
                                const std::string& src, int max_len) {
  ClassData d;
  for (auto& w : t.label_words) {
    d.candidates.push_back(tok.encode(w, /*add_special_tokens=*/false));
    ZO_CHECK(!d.candidates.back().empty(), "label word '{}' encodes to no tokens", w);
  }
  size_t longest = 0;
  for (auto& c : d.candidates) longest = std::max(longest, c.size());
  for (auto& row : rows) {
    std::string where = where_of(src, row);
    ClassExample ex;
    long label = json_int_field(row, t.label_field, where);
    ZO_CHECK(label >= 0 && label < long(t.label_words.size()), "{}: label {} out of range [0, {})", where, label,
             t.label_words.size());
    ex.label = int(label);
    ex.prompt = tok.encode(render_template(t.prompt_template, row, where), /*add_special_tokens=*/true);
    ZO_CHECK(!ex.prompt.empty(), "{}: the prompt encodes to no tokens", where);
    // Keep the end of an over-long prompt: the label word must follow the template's tail.
    if (max_len > 0 && ex.prompt.size() + longest > size_t(max_len)) {
      ZO_CHECK(size_t(max_len) > longest, "max length {} leaves no room for the prompt", max_len);
      ex.prompt.erase(ex.prompt.begin(), ex.prompt.end() - (long(max_len) - long(longest)));
    }
    d.examples.push_back(std::move(ex));
  }
  return d;
}

std::vector<std::vector<int32_t>> encode_lm(const TaskSpec& t, const Tokenizer& tok, const std::vector<nlohmann::json>& rows,
                                            const std::string& src, int max_len) {
  std::vector<std::vector<int32_t>> seqs;
  for (auto& row : rows) {
    auto ids = tok.encode(json_string_field(row, t.text_field, where_of(src, row)), true);
    if (max_len > 0 && ids.size() > size_t(max_len)) ids.resize(size_t(max_len));
    if (ids.size() >= 2) seqs.push_back(std::move(ids));  // a single token has nothing to predict
  }
  ZO_CHECK(!seqs.empty(), "{}: no row has at least two tokens", src);
  return seqs;
}

CandidatePlan plan_candidates(const std::vector<const std::vector<int32_t>*>& prompts,
                              const std::vector<std::vector<int32_t>>& cands) {
  bool single = true;
  for (auto& c : cands) single = single && c.size() == 1;
  CandidatePlan plan;
  plan.n_prompts = prompts.size();
  for (auto& c : cands) plan.cand_len.push_back(c.size());
  std::vector<std::vector<int32_t>> seqs;
  if (single) {
    // One sequence per prompt: every candidate is read at its last row (the vocabulary is reached once).
    for (auto* p : prompts) seqs.push_back(*p);
    plan.batch = Batch::from_sequences(seqs);
    for (size_t i = 0; i < prompts.size(); i++) {
      plan.keep.push_back(plan.batch.seq_len(int(i)) - 1);
      for (auto& c : cands) {
        plan.rows.push_back(plan.batch.seq_start[i + 1] - 1);
        plan.ids.push_back(c[0]);
      }
    }
    return plan;
  }
  for (auto* p : prompts)
    for (auto& c : cands) {
      std::vector<int32_t> s(*p);
      s.insert(s.end(), c.begin(), c.end());
      seqs.push_back(std::move(s));
    }
  plan.batch = Batch::from_sequences(seqs);
  for (size_t i = 0, s = 0; i < prompts.size(); i++)
    for (auto& c : cands) {
      plan.keep.push_back(int32_t(prompts[i]->size()) - 1);  // rows from the last prompt token on
      int32_t r0 = plan.batch.seq_start[s++] + int32_t(prompts[i]->size()) - 1;
      for (size_t k = 0; k < c.size(); k++) {
        plan.rows.push_back(r0 + int32_t(k));
        plan.ids.push_back(c[k]);
      }
    }
  return plan;
}

std::vector<std::vector<double>> plan_scores(const CandidatePlan& plan, const std::vector<double>& lp) {
  const size_t nc = plan.cand_len.size();
  std::vector<std::vector<double>> scores(plan.n_prompts, std::vector<double>(nc, 0.0));
  size_t k = 0;
  for (size_t i = 0; i < plan.n_prompts; i++)
    for (size_t c = 0; c < nc; c++) {
      double s = 0;
      for (size_t t = 0; t < plan.cand_len[c]; t++) s += lp[k++];
      scores[i][c] = s / double(plan.cand_len[c]);
    }
  return scores;
}

double candidate_cross_entropy(const std::vector<double>& s, int label) {
  double mx = *std::max_element(s.begin(), s.end()), sum = 0;
  for (double v : s) sum += std::exp(v - mx);
  return mx + std::log(sum) - s[size_t(label)];
}

Scorer engine_scorer(Engine& e) {
  return [&e](const Batch& b, const std::vector<int32_t>* keep, const std::vector<int32_t>& rows,
              const std::vector<int32_t>& ids) {
    e.forward(b, nullptr, keep);
    return e.target_logprobs(e.hidden(), rows, ids);
  };
}

std::vector<std::vector<double>> score_candidates(const Scorer& s, const std::vector<const std::vector<int32_t>*>& prompts,
                                                  const std::vector<std::vector<int32_t>>& cands) {
  CandidatePlan plan = plan_candidates(prompts, cands);
  return plan_scores(plan, s(plan.batch, &plan.keep, plan.rows, plan.ids));
}
std::vector<std::vector<double>> score_candidates(Engine& e, const std::vector<const std::vector<int32_t>*>& prompts,
                                                  const std::vector<std::vector<int32_t>>& cands) {
  return score_candidates(engine_scorer(e), prompts, cands);
}

EvalResult evaluate_classification(const Scorer& e, const ClassData& d, const EvalOptions& o) {
  ZO_CHECK(o.batch_size > 0, "batch size must be positive");
  auto t0 = std::chrono::steady_clock::now();
  EvalResult r;
  long n = long(d.examples.size()), correct = 0;
  double nll = 0, ce = 0;
  Progress bar("eval", n, o.progress);
  for (long i = 0; i < n; i += o.batch_size) {
    std::vector<const std::vector<int32_t>*> prompts;
    long end = std::min(n, i + o.batch_size);
    for (long j = i; j < end; j++) {
      prompts.push_back(&d.examples[size_t(j)].prompt);
      r.tokens += long(d.examples[size_t(j)].prompt.size());
    }
    auto sc = score_candidates(e, prompts, d.candidates);
    for (long j = i; j < end; j++) {
      auto& s = sc[size_t(j - i)];
      int pred = int(std::max_element(s.begin(), s.end()) - s.begin());
      int label = d.examples[size_t(j)].label;
      correct += pred == label;
      nll -= s[size_t(label)];
      ce += candidate_cross_entropy(s, label);
      r.targets += long(d.candidates[size_t(label)].size());
    }
    bar.update(end, fmt::format("acc {:.3f}", double(correct) / double(end)));
  }
  bar.finish(fmt::format("acc {:.3f}", n ? double(correct) / double(n) : 0.0));
  r.examples = n;
  r.loss = n ? nll / double(n) : 0;
  r.ce = n ? ce / double(n) : 0;
  r.perplexity = std::exp(r.loss);
  r.accuracy = n ? double(correct) / double(n) : 0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

EvalResult evaluate_lm(const Scorer& e, const std::vector<std::vector<int32_t>>& seqs, const EvalOptions& o) {
  ZO_CHECK(o.batch_size > 0, "batch size must be positive");
  auto t0 = std::chrono::steady_clock::now();
  EvalResult r;
  long n = long(seqs.size());
  double nll = 0;
  Progress bar("eval", n, o.progress);
  for (long i = 0; i < n; i += o.batch_size) {
    long end = std::min(n, i + o.batch_size);
    std::vector<std::vector<int32_t>> chunk(seqs.begin() + i, seqs.begin() + end);
    Batch b = Batch::from_sequences(chunk);
    std::vector<int32_t> rows, ids;
    for (int s = 0; s < b.n_seqs(); s++)
      for (int t = b.seq_start[size_t(s)]; t + 1 < b.seq_start[size_t(s) + 1]; t++) {
        rows.push_back(t);
        ids.push_back(b.ids[size_t(t) + 1]);
      }
    for (double lp : e(b, nullptr, rows, ids)) nll -= lp;
    r.targets += long(rows.size());
    r.tokens += b.n_tokens();
    bar.update(end, fmt::format("loss {:.4f}", nll / double(r.targets)));
  }
  bar.finish(fmt::format("loss {:.4f}", r.targets ? nll / double(r.targets) : 0.0));
  r.examples = n;
  r.loss = r.targets ? nll / double(r.targets) : 0;
  r.perplexity = std::exp(r.loss);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace zo
