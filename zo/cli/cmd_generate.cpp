// zo generate --model M (--prompt TEXT | --prompt-ids 1,2,3) --max-new-tokens N
#include <cstdio>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "models/forward.h"
#include "models/load.h"
#include "models/tokenizer.h"
#include "zo/cli/cli.h"
#include "zo/defaults.h"

namespace zo::cli {

namespace {
struct GenArgs {
  std::string model = "default", prompt, prompt_ids, format = "text", dtype = "f32";
  int max_new = 32, top_k = 0;
  float temperature = 0.0f;
  uint64_t seed = 0;
  bool json = false, no_stop = false, raw = false;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    size_t a = tok.find_first_not_of(" \t"), b = tok.find_last_not_of(" \t");
    ZO_CHECK(a != std::string::npos, "--prompt-ids: empty entry in '{}'", s);
    tok = tok.substr(a, b - a + 1);
    size_t pos = 0;
    long v = -1;
    try {
      v = std::stol(tok, &pos);
    } catch (...) {
      pos = 0;
    }
    ZO_CHECK(pos == tok.size() && v >= 0 && v < (1L << 31), "--prompt-ids: '{}' is not a token id", tok);
    ids.push_back(int32_t(v));
  }
  ZO_CHECK(!ids.empty(), "--prompt-ids: no ids given");
  return ids;
}
}  // namespace

void add_generate(CLI::App& app, Runner& run) {
  auto a = std::make_shared<GenArgs>();
  auto* c = app.add_subcommand("generate", "Generate text: greedy (default) or sampled, with a KV cache");
  c->add_option("--model,-m", a->model, "Model folder, .gguf file, or 'default'")->capture_default_str();
  auto* p = c->add_option("--prompt,-p", a->prompt, "Prompt text (tokenized with the model's tokenizer)");
  auto* pi = c->add_option("--prompt-ids", a->prompt_ids, "Prompt as token ids, e.g. 1,2,3");
  p->excludes(pi);
  c->add_option("--max-new-tokens,-n", a->max_new, "Tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  c->add_option("--temperature", a->temperature, "0: greedy; > 0: sample from softmax(logits / T)")
      ->capture_default_str()->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-k", a->top_k, "Sample among the k most likely tokens (0: all)")->capture_default_str()->check(CLI::Range(0, 1 << 24));
  c->add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
  c->add_option("--format", a->format, "text, or ids (generated ids separated by spaces)")
      ->capture_default_str()->check(CLI::IsMember({"text", "ids"}));
  c->add_flag("--no-stop", a->no_stop, "Do not stop at the end-of-sequence token");
  c->add_flag("--raw", a->raw, "Do not add the tokenizer's special tokens (BOS) to a text prompt");
  c->add_option("--dtype", a->dtype, "Master weight storage: f32 or bf16")->capture_default_str();
  c->add_flag("--json", a->json, "Print the result as one JSON object on the last line");
  c->callback([&run, a] {
    run = [a] {
      ZO_CHECK(!a->prompt.empty() || !a->prompt_ids.empty(), "give --prompt TEXT or --prompt-ids 1,2,3");
      std::string path = resolve_model(a->model);
      Model m = load_model(path, LoadOptions{parse_storage(a->dtype)});
      // The tokenizer is needed for a text prompt or text output only: ids in, ids out works
      // with a bare checkpoint.
      bool need_tok = a->prompt_ids.empty() || a->format == "text" || a->json;
      std::optional<Tokenizer> tok;
      if (need_tok) tok.emplace(load_tokenizer(path));
      std::vector<int32_t> prompt = a->prompt_ids.empty() ? tok->encode(a->prompt, !a->raw) : parse_ids(a->prompt_ids);
      ZO_CHECK(!prompt.empty(), "the prompt encodes to no tokens");
      for (int32_t id : prompt)
        ZO_CHECK(id < m.cfg.vocab_size, "--prompt-ids: id {} out of range [0, {})", id, m.cfg.vocab_size);
      Engine e(m);
      GenerateOptions o;
      o.max_new_tokens = a->max_new;
      o.temperature = a->temperature;
      o.top_k = a->top_k;
      o.seed = a->seed;
      o.stop_id = a->no_stop ? -1 : (tok && tok->eos_id() >= 0 ? tok->eos_id() : m.cfg.eos_id);
      bool stream = !a->json && a->format == "text";
      std::string shown;
      std::vector<int32_t> so_far;
      auto out = generate(e, prompt, o, [&](int32_t id) {
        if (!stream) return;
        // Decode the whole continuation and print what is new: multi-byte characters split
        // across tokens come out whole.
        so_far.push_back(id);
        std::string text = tok->decode(so_far, /*skip_special_tokens=*/true);
        if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
          std::fputs(text.c_str() + shown.size(), stdout);
          std::fflush(stdout);
          shown = text;
        }
      });
      std::string text = tok ? tok->decode(out, true) : "";
      if (a->json) {
        nlohmann::json j;
        j["model"] = path;
        j["prompt_ids"] = prompt;
        j["ids"] = out;
        j["text"] = text;
        print_json(j);
      } else if (a->format == "ids") {
        for (size_t i = 0; i < out.size(); i++) std::printf("%s%d", i ? " " : "", out[i]);
        std::printf("\n");
      } else {
        if (text.size() > shown.size()) std::fputs(text.c_str() + std::min(shown.size(), text.size()), stdout);
        std::printf("\n");
      }
      return 0;
    };
  });
}

}  // namespace zo::cli
