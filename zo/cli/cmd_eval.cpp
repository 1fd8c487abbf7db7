// zo eval --model M --task T --data F: loss, perplexity and (classification) accuracy.
#include "core/error.h"
#include "models/load.h"
#include "models/tokenizer.h"
#include "zo/cli/cli.h"
#include "zo/data.h"
#include "zo/defaults.h"
#include "zo/task.h"

namespace zo::cli {

namespace {
struct EvalArgs {
  std::string model = "default", task = "sst2", data, dtype = "f32", tmpl, label_field = "label";
  std::vector<std::string> label_words;
  long limit = -1;
  int batch = 16, max_length = 0;
  bool json = false, quiet = false;
};
}  // namespace

void add_eval(CLI::App& app, Runner& run) {
  auto a = std::make_shared<EvalArgs>();
  auto* c = app.add_subcommand("eval", "Evaluate a model on a JSONL data set: loss, perplexity, accuracy");
  c->add_option("--model,-m", a->model, "Model folder, .gguf file, or 'default'")->capture_default_str();
  c->add_option("--task,-t", a->task,
                "lm (rows with \"text\"), sst2 (rows with \"sentence\", \"label\"; MeZO's prompt "
                "'<sentence> It was terrible|great'), or a task JSON file "
                "{\"template\": \"{field} ...\", \"label_words\": [...], \"label_field\": \"label\"}")
      ->capture_default_str();
  c->add_option("--template", a->tmpl,
                "Classification prompt over the row's fields, e.g. '{sentence} It was' (overrides --task)");
  c->add_option("--label-words", a->label_words, "One continuation per class, in label order, e.g. ' terrible' ' great'")
      ->expected(2, 1 << 16);
  c->add_option("--label-field", a->label_field, "JSONL field holding the class index")->capture_default_str();
  c->add_option("--data,-d", a->data, "JSONL file")->required();
  c->add_option("--limit,-n", a->limit, "Evaluate the first N rows only (default: all)");
  c->add_option("--batch,-b", a->batch, "Sequences per forward pass")->capture_default_str()->check(CLI::Range(1, 4096));
  c->add_option("--max-length", a->max_length, "Truncate sequences to this many tokens (0: model context)")
      ->capture_default_str()->check(CLI::Range(0, 1 << 24));
  c->add_option("--dtype", a->dtype, "Master weight storage: f32 or bf16 (compute is f32)")->capture_default_str();
  c->add_flag("--json", a->json, "Print the result as one JSON object on the last line");
  c->add_flag("--quiet,-q", a->quiet, "No progress bar");
  c->callback([&run, a] {
    run = [a] {
      std::string path = resolve_model(a->model);
      TaskSpec task;
      if (!a->tmpl.empty() || !a->label_words.empty()) {
        ZO_CHECK(!a->tmpl.empty() && a->label_words.size() >= 2, "--template and at least two --label-words go together");
        task = task_from_json({{"name", "custom"}, {"template", a->tmpl}, {"label_words", a->label_words},
                               {"label_field", a->label_field}},
                              "command line");
      } else {
        task = task_from_name(a->task);
      }
      auto rows = read_jsonl(a->data, a->limit);
      Model m = load_model(path, LoadOptions{parse_storage(a->dtype)});
      Tokenizer tok = load_tokenizer(path);
      int max_len = a->max_length > 0 ? std::min(a->max_length, m.cfg.max_pos) : m.cfg.max_pos;
      Engine e(m);
      EvalOptions o;
      o.batch_size = a->batch;
      o.progress = !a->quiet;
      EvalResult r;
      if (task.kind == TaskSpec::Kind::Classification)
        r = evaluate_classification(e, encode_classification(task, tok, rows, a->data, max_len), o);
      else
        r = evaluate_lm(e, encode_lm(task, tok, rows, a->data, max_len), o);
      nlohmann::json j;
      j["model"] = path;
      j["task"] = task.name;
      j["data"] = a->data;
      j["examples"] = r.examples;
      j["loss"] = r.loss;
      j["perplexity"] = r.perplexity;
      if (r.accuracy >= 0) j["accuracy"] = r.accuracy;
      j["tokens"] = r.tokens;
      j["seconds"] = r.seconds;
      j["tokens_per_second"] = r.seconds > 0 ? double(r.tokens) / r.seconds : 0.0;
      if (a->json) {
        print_json(j);
      } else {
        fmt::print("task {}  examples {}  loss {:.5f}  perplexity {:.3f}", task.name, r.examples, r.loss, r.perplexity);
        if (r.accuracy >= 0) fmt::print("  accuracy {:.4f}", r.accuracy);
        fmt::print("  ({:.1f} s, {:.0f} tokens/s)\n", r.seconds, r.seconds > 0 ? double(r.tokens) / r.seconds : 0.0);
      }
      return 0;
    };
  });
}

}  // namespace zo::cli
