// GGUF metadata -> Tokenizer::Impl, building what transformers builds for the file
// (integrations/gguf/gguf_tokenizer_mapping.py: GPT2Tokenizer / LlamaTokenizer from the vocabulary):
//   "gpt2":  byte-level BPE from tokens + merges; the pre-tokenizer regex chosen by `pre`.
//   "llama": SentencePiece-style BPE with byte fallback; merges from the file or, as usual for
//            these files, rebuilt from the scores (transformers' generate_merges).
// Tokens of type CONTROL become special added tokens, USER_DEFINED plain added tokens.
#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/error.h"
#include "models/tokenizer_impl.h"

namespace zo {

namespace {

constexpr int kControl = 3, kUserDefined = 4;

const char* kLlama3Split =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* kQwen2Split =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* kQwen35Split =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kTekkenSplit =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?"
    "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kGpt4oSplit =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// The pre-tokenizer for a byte-level GGUF vocabulary, by `pre`. The regex table is transformers';
// the digit-splitting group is llama.cpp's (its regex "\p{N}" before the GPT-2 one), which is what
// SmolLM2 and StarCoder-family tokenizer.json files do (Digits + ByteLevel). transformers has no
// entry for these and falls back to plain ByteLevel, which merges a space into a following digit.
void byte_level_pre(const std::string& pre, const std::string& name, std::vector<tok::PreTokenizer>& out) {
  static const std::unordered_set<std::string> kDigitsFirst = {"smollm",    "starcoder", "refact", "command-r",
                                                               "codeshell", "exaone",    "minerva"};
  static const std::unordered_set<std::string> kLlama3 = {"llama3",       "llama-v3", "llama-bpe", "falcon3",
                                                          "falcon-h1",    "pixtral",  "midm-2.0",  "lfm2",
                                                          "jina-v5-nano", "dbrx",     "smaug-bpe"};
  static const std::unordered_set<std::string> kQwen2 = {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"};
  static const std::unordered_set<std::string> kGpt4o = {"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"};
  const char* split = kLlama3.count(pre)  ? kLlama3Split
                      : kQwen2.count(pre) ? kQwen2Split
                      : pre == "qwen35"   ? kQwen35Split
                      : pre == "tekken"   ? kTekkenSplit
                      : kGpt4o.count(pre) ? kGpt4oSplit
                                          : nullptr;
  tok::PreTokenizer bl;
  bl.kind = tok::PreTokenizer::Kind::ByteLevel;
  bl.add_prefix_space = false;
  if (split) {
    tok::PreTokenizer s;
    s.kind = tok::PreTokenizer::Kind::Split;
    s.regex = tok::Regex(split, name + ": pre-tokenizer for '" + pre + "'");
    s.behavior = tok::SplitBehavior::Isolated;
    out.push_back(std::move(s));
    bl.use_regex = false;
  } else if (kDigitsFirst.count(pre)) {
    tok::PreTokenizer d;
    d.kind = tok::PreTokenizer::Kind::Split;
    d.regex = tok::Regex("\\p{N}", name + ": digit split");
    d.behavior = tok::SplitBehavior::Isolated;
    out.push_back(std::move(d));
  }
  out.push_back(std::move(bl));
}

bool in_byte_alphabet(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    if (tok::unicode_to_byte(tok::utf8_next(s, i)) < 0) return false;
  }
  return true;
}

std::pair<std::string, std::string> split_merge(const std::string& m, size_t i, const std::string& name) {
  size_t sp = m.find(' ');
  ZO_CHECK(sp != std::string::npos && m.find(' ', sp + 1) == std::string::npos,
           "{}: tokenizer.ggml.merges[{}] '{}' is not two tokens separated by one space", name, i, m);
  return {m.substr(0, sp), m.substr(sp + 1)};
}

// transformers' generate_merges(vocab, scores): every split of every token into two vocabulary
// tokens, ordered by the token's score (high first), then longer left part, then longer right part;
// ties keep vocabulary order, and within one token the pairs go by (id of left, id of right).
void merges_from_scores(const GgufTokenizerData& d, tok::Bpe& bpe, const std::string& name) {
  struct Pair {
    std::string l, r;
    double score;
    size_t len_l, len_r;
  };
  std::vector<std::string> order;  // distinct tokens, first occurrence first; score of the last
  std::unordered_map<std::string, double> score;
  for (size_t i = 0; i < d.tokens.size(); i++) {
    double s = std::isnan(d.scores[i]) ? -INFINITY : double(d.scores[i]);  // keeps the sort well defined
    if (score.emplace(d.tokens[i], s).second) {
      order.push_back(d.tokens[i]);
    } else {
      score[d.tokens[i]] = s;
    }
  }
  std::vector<Pair> all, local;
  for (const std::string& t : order) {
    local.clear();
    size_t chars = 0;
    for (size_t i = 0; i < t.size();) {
      tok::utf8_next(t, i);
      chars++;
      if (i >= t.size()) break;
      std::string l = t.substr(0, i), r = t.substr(i);
      if (bpe.vocab.count(l) && bpe.vocab.count(r)) local.push_back({l, r, score[t], chars, tok::utf8_count(r)});
    }
    std::stable_sort(local.begin(), local.end(), [&](const Pair& a, const Pair& b) {
      int32_t al = bpe.vocab.at(a.l), bl = bpe.vocab.at(b.l);
      return al != bl ? al < bl : bpe.vocab.at(a.r) < bpe.vocab.at(b.r);
    });
    for (auto& p : local) all.push_back(std::move(p));
  }
  std::stable_sort(all.begin(), all.end(), [](const Pair& a, const Pair& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.len_l != b.len_l) return a.len_l > b.len_l;
    return a.len_r > b.len_r;
  });
  bpe.merges.reserve(all.size());
  for (size_t i = 0; i < all.size(); i++) bpe.add_merge(all[i].l, all[i].r, int32_t(i), name + ": merges from scores");
}

}  // namespace

std::shared_ptr<Tokenizer::Impl> tokenizer_from_gguf(const GgufTokenizerData& d, const std::string& name) {
  auto t = std::make_shared<Tokenizer::Impl>();
  t->name = name;
  const size_t n = d.tokens.size();
  ZO_CHECK(n > 0, "{}: tokenizer.ggml.tokens is empty", name);
  ZO_CHECK(n < (size_t(1) << 28), "{}: {} tokens is too many", name, n);
  ZO_CHECK(d.token_types.empty() || d.token_types.size() == n, "{}: {} token types for {} tokens", name,
           d.token_types.size(), n);
  for (size_t i = 0; i < n; i++) {
    ZO_CHECK(tok::utf8_invalid_at(d.tokens[i]) == std::string::npos, "{}: token {} is not valid UTF-8", name, i);
  }
  for (auto [id, what] : {std::pair{d.bos, "bos"}, {d.eos, "eos"}, {d.unk, "unknown"}, {d.pad, "padding"}}) {
    ZO_CHECK(id >= -1 && id < int64_t(n), "{}: {} token id {} is outside the {} tokens", name, what, id, n);
  }

  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(n);
  if (d.model == "gpt2") {
    // The vocabulary is spelled in the byte alphabet; a token that is not gets respelled.
    for (size_t i = 0; i < n; i++) {
      const std::string& s = d.tokens[i];
      if (in_byte_alphabet(s)) {
        vocab[s] = int32_t(i);
      } else {
        std::string r;
        for (unsigned char c : s) r += tok::byte_to_unicode(c);
        vocab[r] = int32_t(i);
      }
    }
    t->bpe.set_vocab(std::move(vocab), name + ": tokenizer.ggml.tokens");
    t->bpe.merges.reserve(d.merges.size());
    for (size_t i = 0; i < d.merges.size(); i++) {
      auto [a, b] = split_merge(d.merges[i], i, name);
      t->bpe.add_merge(a, b, int32_t(i), name + ": tokenizer.ggml.merges");
    }
    byte_level_pre(d.pre, name, t->pre);
    t->has_decoder = true;
    t->decoders.push_back({tok::Decoder::Kind::ByteLevel, "", "", 0, 0, true});
  } else if (d.model == "llama") {
    for (size_t i = 0; i < n; i++) vocab[d.tokens[i]] = int32_t(i);
    t->bpe.set_vocab(std::move(vocab), name + ": tokenizer.ggml.tokens");
    t->bpe.fuse_unk = true;
    t->bpe.byte_fallback = true;
    if (!d.merges.empty()) {
      for (size_t i = 0; i < d.merges.size(); i++) {
        auto [a, b] = split_merge(d.merges[i], i, name);
        t->bpe.add_merge(a, b, int32_t(i), name + ": tokenizer.ggml.merges");
      }
    } else {
      ZO_CHECK(d.scores.size() == n, "{}: {} scores for {} tokens (needed to rebuild the merges)", name,
               d.scores.size(), n);
      merges_from_scores(d, t->bpe, name);
    }
    // transformers' LlamaTokenizer: "▁" for spaces and before the text, no normalizer. It does
    // not read add_space_prefix, and neither do we.
    tok::PreTokenizer m;
    m.kind = tok::PreTokenizer::Kind::Metaspace;
    m.replacement = "\xE2\x96\x81";
    m.prepend = tok::PrependScheme::First;
    m.split = false;
    t->pre.push_back(std::move(m));
    t->has_decoder = true;
    using K = tok::Decoder::Kind;
    t->decoders.push_back({K::Replace, "\xE2\x96\x81", " ", 0, 0, true});
    t->decoders.push_back({K::ByteFallback, "", "", 0, 0, true});
    t->decoders.push_back({K::Fuse, "", "", 0, 0, true});
    t->decoders.push_back({K::Strip, "", " ", 1, 0, true});
  } else {
    fail("{}: tokenizer model '{}' is not supported (gpt2 and llama are)", name, d.model);
  }

  // Control tokens -> special; in a byte-level vocabulary one spelled outside the byte alphabet is
  // a llama.cpp mislabel and is skipped (as transformers does). User-defined -> plain added tokens.
  const bool byte_level = d.model == "gpt2";
  for (size_t i = 0; i < d.token_types.size(); i++) {
    if (d.token_types[i] == kControl && (!byte_level || in_byte_alphabet(d.tokens[i])))
      t->add_token({d.tokens[i], -1, true, false, false, false, false, {}});
  }
  for (size_t i = 0; i < d.token_types.size(); i++) {
    if (d.token_types[i] == kUserDefined && t->bpe.vocab.count(d.tokens[i]))
      t->add_token({d.tokens[i], -1, false, false, false, false, false, {}});
  }
  // The named special tokens (transformers passes them as bos_token=... and adds them as special).
  int* ids[] = {&t->bos, &t->eos, &t->unk, &t->pad};
  int src[] = {d.bos, d.eos, d.unk, d.pad};
  for (int k = 0; k < 4; k++) {
    if (src[k] < 0) continue;
    const std::string& s = d.tokens[size_t(src[k])];
    tok::AddedToken at{s, -1, true, false, false, false, false, {}};
    if (auto it = t->added_by_content.find(s); it != t->added_by_content.end()) at = t->added[it->second];
    at.special = true;
    *ids[k] = t->add_token(at);
  }
  t->finish();

  t->post.present = true;
  if (d.add_bos && t->bos >= 0) t->post.before.push_back(t->bos);
  if (d.add_eos && t->eos >= 0) t->post.after.push_back(t->eos);
  return t;
}

}  // namespace zo
