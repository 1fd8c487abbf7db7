// Tokenizers: byte-level BPE (GPT-2/OPT, LLaMA-3, SmolLM) and SentencePiece-style BPE with byte
// fallback (LLaMA-2), read from a Hugging Face tokenizer.json or from GGUF metadata. Encoding and
// decoding reproduce the Hugging Face `tokenizers` library id for id (tests/test_tokenizer.cpp
// compares against its outputs); the pipeline is the same as there:
//   added tokens -> normalizer -> pre-tokenizer -> BPE model -> post-processor (special ids)
//   ids -> tokens -> decoder -> text
// Only the pipeline parts these model families use are implemented; anything else in a
// tokenizer.json (another model type, an NFC normalizer, ...) is refused with a zo::Error naming it.
// Every byte read is untrusted: a malformed file gives a zo::Error naming the file, never a crash.
// A Tokenizer is immutable after construction and safe to use from several threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace zo {

// Tokenizer facts from GGUF metadata (llama.cpp's `tokenizer.ggml.*` keys), filled by the GGUF
// loader. Ids are -1 when the key is absent.
struct GgufTokenizerData {
  std::string model;                 // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
  std::string pre;                   // tokenizer.ggml.pre: which pre-tokenizer regex ("smollm", "llama-bpe", ...)
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens: id -> token
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user, 6 byte
  std::vector<float> scores;         // tokenizer.ggml.scores (SentencePiece merge priority)
  std::vector<std::string> merges;   // tokenizer.ggml.merges: "a b"
  int bos = -1, eos = -1, unk = -1, pad = -1;
  // The loader applies llama.cpp's defaults for absent keys (add_bos is true for "llama").
  bool add_bos = false, add_eos = false, add_space_prefix = false;
};

class Tokenizer {
 public:
  // dir/tokenizer.json plus, when present, dir/tokenizer_config.json. From the config, as
  // transformers 5 reads it: bos/eos/unk/pad_token (and additional/extra_special_tokens) name the
  // special tokens and are added as special tokens when the vocabulary lacks them.
  // add_bos_token / add_eos_token are ignored, as transformers ignores them when tokenizer.json
  // exists: its post-processor alone decides which ids encode() adds.
  static Tokenizer from_hf_dir(const std::string& dir);
  // The same from text; tokenizer_config_json may be empty. name_for_errors prefixes messages.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                             const std::string& name_for_errors);
  // The tokenizer transformers builds from GGUF metadata (AutoTokenizer with gguf_file=), except
  // that pre "smollm" (and llama.cpp's other digit-splitting pre-tokenizers) split digits one by
  // one first, as llama.cpp and SmolLM2's own tokenizer.json do; transformers skips that split.
  // Like transformers, "llama" vocabularies always get the leading "▁" (add_space_prefix unused).
  static Tokenizer from_gguf_metadata(const GgufTokenizerData& d, const std::string& name_for_errors);

  Tokenizer(const Tokenizer&);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(const Tokenizer&);
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // text must be valid UTF-8 (else zo::Error). add_special_tokens applies the post-processor
  // (e.g. BOS); special tokens written in the text are matched either way, as in HF.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Ids outside the vocabulary are skipped (as HF does). The result is valid UTF-8.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int vocab_size() const;  // one past the largest id (model vocabulary and added tokens)
  // Special ids, -1 when absent. GGUF: the metadata's ids. tokenizer.json: the token that
  // tokenizer_config.json names, else for BOS/EOS the first/last id the post-processor adds,
  // for UNK the model's unk_token, for PAD the "padding" section's pad_id.
  int bos_id() const;
  int eos_id() const;
  int pad_id() const;
  int unk_id() const;
  int token_to_id(std::string_view token) const;  // -1 when absent
  std::string id_to_token(int id) const;          // "" when absent
  bool is_special(int id) const;                  // an added token marked special
  const std::string& name() const;                // the name used in error messages

  struct Impl;  // defined in models/tokenizer_impl.h

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace zo
