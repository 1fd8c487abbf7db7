// The tokenizer that belongs to a model path: tokenizer.json in a folder, or a GGUF's metadata.
#include "core/error.h"
#include "models/gguf.h"
#include "models/load.h"
#include "models/tokenizer.h"

namespace zo {

namespace {

GgufTokenizerData tokenizer_data_from_gguf(const GgufFile& g) {
  GgufTokenizerData d;
  d.model = g.get_string("tokenizer.ggml.model");
  d.pre = g.has("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "default";
  d.tokens = g.get_string_array("tokenizer.ggml.tokens");
  if (g.has("tokenizer.ggml.token_type")) {
    for (int64_t v : g.get_int_array("tokenizer.ggml.token_type")) {
      ZO_CHECK(v >= INT32_MIN && v <= INT32_MAX, "{}: tokenizer.ggml.token_type holds {}, out of range", g.name(), v);
      d.token_types.push_back(int32_t(v));
    }
  }
  if (g.has("tokenizer.ggml.scores")) d.scores = g.get_float_array("tokenizer.ggml.scores");
  if (g.has("tokenizer.ggml.merges")) d.merges = g.get_string_array("tokenizer.ggml.merges");
  auto id = [&](const char* k) { return gguf_int(g, k, -1); };
  d.bos = id("tokenizer.ggml.bos_token_id");
  d.eos = id("tokenizer.ggml.eos_token_id");
  d.unk = id("tokenizer.ggml.unknown_token_id");
  d.pad = id("tokenizer.ggml.padding_token_id");
  d.add_bos = g.has("tokenizer.ggml.add_bos_token") ? g.get_bool("tokenizer.ggml.add_bos_token") : d.model == "llama";
  d.add_eos = g.has("tokenizer.ggml.add_eos_token") ? g.get_bool("tokenizer.ggml.add_eos_token") : false;
  d.add_space_prefix =
      g.has("tokenizer.ggml.add_space_prefix") ? g.get_bool("tokenizer.ggml.add_space_prefix") : d.model == "llama";
  return d;
}

}  // namespace

Tokenizer tokenizer_from_gguf(const GgufFile& g) { return Tokenizer::from_gguf_metadata(tokenizer_data_from_gguf(g), g.name()); }

Tokenizer load_tokenizer(const std::string& path) {
  if (is_gguf_path(path)) return tokenizer_from_gguf(GgufFile::open(path));
  return Tokenizer::from_hf_dir(path);
}

}  // namespace zo
