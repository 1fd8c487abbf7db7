// Internals of the tokenizer (models/tokenizer.h): the pipeline stages as plain data, built by
// tokenizer_json.cpp (tokenizer.json) or tokenizer_gguf.cpp (GGUF metadata) and run by
// tokenizer_encode.cpp / tokenizer_decode.cpp. Behaviour follows Hugging Face `tokenizers`.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "models/tokenizer.h"

namespace zo::tok {

// ---- UTF-8 ---------------------------------------------------------------------------------
// Length of the UTF-8 sequence that starts with byte b (1 for a stray continuation byte).
inline size_t utf8_len(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }
// Offset of the first invalid byte, or npos when s is valid UTF-8 (no overlongs, no surrogates).
size_t utf8_invalid_at(std::string_view s);
// Decodes the code point at s[i] (s valid UTF-8) and advances i.
uint32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, uint32_t cp);
size_t utf8_count(std::string_view s);  // code points
// Bytes to text the way Rust's String::from_utf8_lossy does: each maximal invalid subpart -> U+FFFD.
std::string utf8_lossy(std::string_view bytes);
bool is_unicode_whitespace(uint32_t cp);  // Rust char::is_whitespace (White_Space property)

// ---- GPT-2 byte <-> unicode mapping (the ByteLevel pre-tokenizer and decoder) ---------------
const std::string& byte_to_unicode(uint8_t b);  // the UTF-8 of the char standing for byte b
int unicode_to_byte(uint32_t cp);               // -1 when cp stands for no byte

// ---- Regex: PCRE2 in UTF + UCP mode, matching the way the Oniguruma crate HF uses iterates --------
class Regex {
 public:
  Regex() = default;
  // `what` names the regex in errors ("tok.json: pre_tokenizer Split"); throws zo::Error.
  Regex(std::string_view pattern, const std::string& what);
  bool valid() const { return code_ != nullptr; }
  // All non-overlapping matches [start, end) in text (valid UTF-8), in order. Like onig's
  // find_iter: an empty match right where the previous match ended is skipped.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  std::shared_ptr<void> code_;  // pcre2_code_8*
  std::string what_;
};

// ---- pipeline stages ---------------------------------------------------------------------------
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
enum class PrependScheme { Always, First, Never };

struct Normalizer {  // one step (Sequence is flattened)
  enum class Kind { Prepend, Replace, Strip } kind = Kind::Prepend;
  std::string text;                  // Prepend: what to prepend; Replace: literal pattern (when !regex.valid())
  Regex regex;                       // Replace with a Regex pattern
  std::string content;               // Replace: the replacement
  bool left = false, right = false;  // Strip
};

struct PreTokenizer {  // one step (Sequence is flattened); Digits is a Split on \p{N}
  enum class Kind { Split, ByteLevel, Metaspace } kind = Kind::Split;
  Regex regex;          // Split: regex pattern, or
  std::string literal;  // Split: literal string pattern (when !regex.valid())
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false, use_regex = true;  // ByteLevel
  std::string replacement;                          // Metaspace (one char, UTF-8)
  PrependScheme prepend = PrependScheme::Always;
  bool split = true;
};

struct Decoder {  // one step (Sequence is flattened)
  enum class Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace } kind = Kind::ByteLevel;
  std::string pattern, content;  // Replace (literal); Strip: content (one char); Metaspace: replacement
  size_t start = 0, stop = 0;    // Strip
  bool prepend = true;           // Metaspace: prepend_scheme != never
};

// Post-processor for a single sequence: ids before and after it (TemplateProcessing, Roberta,
// Bert; a Sequence of processors composes them).
struct PostProcessor {
  bool present = false;
  std::vector<int32_t> before, after;
  std::vector<int32_t> seq_ids;  // special token ids it names, for bos/eos guesses
};

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
  std::string form;  // how decode and id_to_token spell it: the content, normalized if `normalized`
};

// Leftmost-longest matching of a set of strings (HF uses aho-corasick with LeftmostLongest).
class TokenMatcher {
 public:
  void add(const std::string& s, int32_t value);  // s non-empty
  bool empty() const { return nodes_.size() <= 1; }
  // The leftmost match at or after `from`, longest among those: (start, end, value) or false.
  bool find(std::string_view text, size_t from, size_t& start, size_t& end, int32_t& value) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // byte -> node
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

struct Bpe {
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> id_to_token;                              // by id; "" where no token has that id
  std::vector<uint8_t> has_id;                                       // id_to_token[id] is a real token
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) -> (rank, merged id)
  bool has_unk = false;
  std::string unk_token;
  std::string prefix, suffix;  // continuing_subword_prefix, end_of_word_suffix
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;

  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  // Adds merge (a, b) with the next rank; throws naming `where` when a token is not in the vocabulary.
  void add_merge(const std::string& a, const std::string& b, int32_t rank, const std::string& where);
  void set_vocab(std::unordered_map<std::string, int32_t> v, const std::string& where);
};

}  // namespace zo::tok

namespace zo {

struct Tokenizer::Impl {
  std::string name;
  std::vector<tok::Normalizer> normalizers;
  std::vector<tok::PreTokenizer> pre;
  tok::Bpe bpe;
  std::vector<tok::AddedToken> added;  // by insertion order
  std::unordered_map<std::string, size_t> added_by_content;
  std::unordered_map<int32_t, size_t> added_by_id;
  tok::TokenMatcher raw_matcher, norm_matcher;  // added tokens with normalized false / true
  tok::PostProcessor post;
  bool has_decoder = false;
  std::vector<tok::Decoder> decoders;
  int bos = -1, eos = -1, unk = -1, pad = -1;
  int vocab_size = 0;
  int64_t max_added_id = -1;

  // Cache of BPE results by word (HF keeps one too); guarded, since encode() is const and shared.
  mutable std::shared_mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  // Building (tokenizer_json.cpp / tokenizer_gguf.cpp).
  // Adds (or updates) an added token the way HF's AddedVocabulary does: the id is the model's id
  // for that content, else the next free id. Returns the id.
  int32_t add_token(tok::AddedToken t);
  void finish();  // builds the matchers and vocab_size; call once all tokens are added

  // Running (tokenizer_encode.cpp / tokenizer_bpe.cpp / tokenizer_decode.cpp).
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  std::string normalize(std::string_view s) const;
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;
  int token_to_id(std::string_view token) const;
  const std::string* token_of(int32_t id) const;  // added first, then the model; nullptr if none
};

// Entry points of the builders.
std::shared_ptr<Tokenizer::Impl> tokenizer_from_json(std::string_view json, std::string_view config,
                                                     const std::string& name);
std::shared_ptr<Tokenizer::Impl> tokenizer_from_gguf(const GgufTokenizerData& d, const std::string& name);

}  // namespace zo
