// tokenizer.json (the HF `tokenizers` serialization) and tokenizer_config.json -> Tokenizer::Impl.
// Only the components the supported families use are accepted; any other "type" is an error that
// names it, so a tokenizer is never silently half-understood.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/tokenizer_impl.h"

namespace zo {

namespace {

using json = nlohmann::json;

struct Reader {
  std::string name;  // for messages

  [[noreturn]] void bad(const std::string& where, const std::string& what) const {
    fail("{}: {}: {}", name, where, what);
  }
  const json* opt(const json& o, const char* key) const {  // absent or null -> nullptr
    auto it = o.find(key);
    return it == o.end() || it->is_null() ? nullptr : &*it;
  }
  const json& req(const json& o, const char* key, const std::string& where) const {
    const json* v = opt(o, key);
    if (!v) bad(where, fmt::format("'{}' is missing", key));
    return *v;
  }
  std::string str(const json& v, const std::string& where) const {
    if (!v.is_string()) bad(where, fmt::format("expected a string, got {}", v.type_name()));
    return v.get<std::string>();
  }
  std::string str(const json& o, const char* key, const std::string& where) const {
    return str(req(o, key, where), where + "." + key);
  }
  std::string str_or(const json& o, const char* key, const std::string& dflt, const std::string& where) const {
    const json* v = opt(o, key);
    return v ? str(*v, where + "." + key) : dflt;
  }
  bool flag(const json& o, const char* key, bool dflt, const std::string& where) const {
    const json* v = opt(o, key);
    if (!v) return dflt;
    if (!v->is_boolean()) bad(where + "." + key, fmt::format("expected true/false, got {}", v->type_name()));
    return v->get<bool>();
  }
  int64_t integer(const json& v, int64_t lo, int64_t hi, const std::string& where) const {
    if (!v.is_number_integer()) bad(where, fmt::format("expected an integer, got {}", v.type_name()));
    int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
    if (x < lo || x > hi) bad(where, fmt::format("{} is out of range [{}, {}]", x, lo, hi));
    return x;
  }
  std::string type_of(const json& o, const std::string& where) const {
    if (!o.is_object()) bad(where, fmt::format("expected an object, got {}", o.type_name()));
    return str(o, "type", where);
  }
  // {"String": "..."} or {"Regex": "..."}: a literal, or a compiled regex.
  void pattern(const json& o, std::string& literal, tok::Regex& regex, const std::string& where) const {
    const json& p = req(o, "pattern", where);
    if (!p.is_object()) bad(where + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
    if (const json* s = opt(p, "String")) {
      literal = str(*s, where + ".pattern.String");
    } else if (const json* r = opt(p, "Regex")) {
      regex = tok::Regex(str(*r, where + ".pattern.Regex"), name + ": " + where);
    } else {
      bad(where + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
    }
  }
  std::string one_char(const json& o, const char* key, const std::string& dflt, const std::string& where) const {
    std::string c = str_or(o, key, dflt, where);
    if (c.empty() || tok::utf8_count(c) != 1) bad(where + "." + key, fmt::format("'{}' is not one character", c));
    return c;
  }
};

void read_normalizer(const Reader& r, const json& o, std::vector<tok::Normalizer>& out, int depth) {
  std::string where = "normalizer";
  if (depth > 16) r.bad(where, "Sequence nested too deeply");
  std::string type = r.type_of(o, where);
  tok::Normalizer n;
  if (type == "Sequence") {
    const json& list = r.req(o, "normalizers", where);
    if (!list.is_array()) r.bad(where, "'normalizers' is not a list");
    for (auto& x : list) read_normalizer(r, x, out, depth + 1);
    return;
  } else if (type == "Prepend") {
    n.kind = tok::Normalizer::Kind::Prepend;
    n.text = r.str(o, "prepend", where);
  } else if (type == "Replace") {
    n.kind = tok::Normalizer::Kind::Replace;
    r.pattern(o, n.text, n.regex, "normalizer Replace");
    n.content = r.str(o, "content", where);
  } else if (type == "Strip") {
    n.kind = tok::Normalizer::Kind::Strip;
    n.left = r.flag(o, "strip_left", false, where);
    n.right = r.flag(o, "strip_right", false, where);
  } else {
    r.bad(where, fmt::format("normalizer type '{}' is not supported (Sequence, Prepend, Replace, Strip are)", type));
  }
  out.push_back(std::move(n));
}

tok::SplitBehavior behavior(const Reader& r, const std::string& s, const std::string& where) {
  if (s == "Removed") return tok::SplitBehavior::Removed;
  if (s == "Isolated") return tok::SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return tok::SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return tok::SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return tok::SplitBehavior::Contiguous;
  r.bad(where, fmt::format("unknown split behavior '{}'", s));
}

tok::PrependScheme prepend_scheme(const Reader& r, const json& o, const std::string& where) {
  if (const json* v = r.opt(o, "prepend_scheme")) {
    std::string s = r.str(*v, where + ".prepend_scheme");
    if (s == "always") return tok::PrependScheme::Always;
    if (s == "first") return tok::PrependScheme::First;
    if (s == "never") return tok::PrependScheme::Never;
    r.bad(where, fmt::format("unknown prepend_scheme '{}'", s));
  }
  // Files from before prepend_scheme existed say add_prefix_space.
  return r.flag(o, "add_prefix_space", true, where) ? tok::PrependScheme::Always : tok::PrependScheme::Never;
}

void read_pre_tokenizer(const Reader& r, const json& o, std::vector<tok::PreTokenizer>& out, int depth) {
  std::string where = "pre_tokenizer";
  if (depth > 16) r.bad(where, "Sequence nested too deeply");
  std::string type = r.type_of(o, where);
  tok::PreTokenizer p;
  if (type == "Sequence") {
    const json& list = r.req(o, "pretokenizers", where);
    if (!list.is_array()) r.bad(where, "'pretokenizers' is not a list");
    for (auto& x : list) read_pre_tokenizer(r, x, out, depth + 1);
    return;
  } else if (type == "Split") {
    p.kind = tok::PreTokenizer::Kind::Split;
    r.pattern(o, p.literal, p.regex, "pre_tokenizer Split");
    p.behavior = behavior(r, r.str(o, "behavior", where), where + ".behavior");
    p.invert = r.flag(o, "invert", false, where);
  } else if (type == "Digits") {
    // HF splits on char::is_numeric (general category N), each digit alone or runs together.
    p.kind = tok::PreTokenizer::Kind::Split;
    p.regex = tok::Regex("\\p{N}", r.name + ": pre_tokenizer Digits");
    p.behavior =
        r.flag(o, "individual_digits", false, where) ? tok::SplitBehavior::Isolated : tok::SplitBehavior::Contiguous;
  } else if (type == "ByteLevel") {
    p.kind = tok::PreTokenizer::Kind::ByteLevel;
    p.add_prefix_space = r.flag(o, "add_prefix_space", true, where);
    p.use_regex = r.flag(o, "use_regex", true, where);
  } else if (type == "Metaspace") {
    p.kind = tok::PreTokenizer::Kind::Metaspace;
    p.replacement = r.one_char(o, "replacement", "\xE2\x96\x81", where);
    p.prepend = prepend_scheme(r, o, where);
    p.split = r.flag(o, "split", true, where);
  } else {
    r.bad(where, fmt::format("pre_tokenizer type '{}' is not supported (Sequence, Split, Digits, ByteLevel, "
                             "Metaspace are)",
                             type));
  }
  out.push_back(std::move(p));
}

void read_decoder(const Reader& r, const json& o, std::vector<tok::Decoder>& out, int depth) {
  std::string where = "decoder";
  if (depth > 16) r.bad(where, "Sequence nested too deeply");
  std::string type = r.type_of(o, where);
  tok::Decoder d;
  using K = tok::Decoder::Kind;
  if (type == "Sequence") {
    const json& list = r.req(o, "decoders", where);
    if (!list.is_array()) r.bad(where, "'decoders' is not a list");
    for (auto& x : list) read_decoder(r, x, out, depth + 1);
    return;
  } else if (type == "ByteLevel") {
    d.kind = K::ByteLevel;
  } else if (type == "Replace") {
    d.kind = K::Replace;
    tok::Regex re;
    r.pattern(o, d.pattern, re, "decoder Replace");
    if (re.valid()) r.bad(where, "a Replace decoder with a Regex pattern is not supported");
    d.content = r.str(o, "content", where);
  } else if (type == "ByteFallback") {
    d.kind = K::ByteFallback;
  } else if (type == "Fuse") {
    d.kind = K::Fuse;
  } else if (type == "Strip") {
    d.kind = K::Strip;
    d.content = r.one_char(o, "content", " ", where);
    d.start = size_t(r.integer(r.req(o, "start", where), 0, 1 << 20, where + ".start"));
    d.stop = size_t(r.integer(r.req(o, "stop", where), 0, 1 << 20, where + ".stop"));
  } else if (type == "Metaspace") {
    d.kind = K::Metaspace;
    d.pattern = r.one_char(o, "replacement", "\xE2\x96\x81", where);
    d.prepend = prepend_scheme(r, o, where) != tok::PrependScheme::Never;
  } else {
    r.bad(where, fmt::format("decoder type '{}' is not supported (Sequence, ByteLevel, Replace, ByteFallback, "
                             "Fuse, Strip, Metaspace are)",
                             type));
  }
  out.push_back(std::move(d));
}

// One processor applied to the ids of a single sequence: before + ids + after.
void read_post(const Reader& r, const json& o, const Tokenizer::Impl& t, tok::PostProcessor& post, int depth) {
  std::string where = "post_processor";
  if (depth > 16) r.bad(where, "Sequence nested too deeply");
  std::string type = r.type_of(o, where);
  auto check_id = [&](int64_t id, const std::string& w) {
    if (id >= t.vocab_size) r.bad(w, fmt::format("id {} is outside the vocabulary ({} tokens)", id, t.vocab_size));
    post.seq_ids.push_back(int32_t(id));
    return int32_t(id);
  };
  std::vector<int32_t> before, after;
  if (type == "Sequence") {
    const json& list = r.req(o, "processors", where);
    if (!list.is_array()) r.bad(where, "'processors' is not a list");
    for (auto& x : list) read_post(r, x, t, post, depth + 1);
    return;
  } else if (type == "ByteLevel") {
    return;  // offsets only
  } else if (type == "TemplateProcessing") {
    const json& single = r.req(o, "single", where);
    const json& specials = r.req(o, "special_tokens", where);
    if (!single.is_array() || !specials.is_object())
      r.bad(where, "'single' must be a list, 'special_tokens' an object");
    bool seen_seq = false;
    for (auto& piece : single) {
      if (!piece.is_object()) r.bad(where + ".single", "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      if (const json* s = r.opt(piece, "Sequence")) {
        std::string id = r.str(*s, "id", where + ".single.Sequence");
        if (id != "A") r.bad(where + ".single", fmt::format("sequence '{}' in a single-sequence template", id));
        if (seen_seq) r.bad(where + ".single", "sequence A appears twice");
        seen_seq = true;
      } else if (const json* s = r.opt(piece, "SpecialToken")) {
        std::string id = r.str(*s, "id", where + ".single.SpecialToken");
        const json& tok = r.req(specials, id.c_str(), where + ".special_tokens");
        const json& ids = r.req(tok, "ids", where + ".special_tokens." + id);
        if (!ids.is_array()) r.bad(where + ".special_tokens." + id, "'ids' is not a list");
        for (auto& x : ids) {
          int32_t v = check_id(r.integer(x, 0, INT32_MAX, where + ".special_tokens." + id), where);
          (seen_seq ? after : before).push_back(v);
        }
      } else {
        r.bad(where + ".single", "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      }
    }
    if (!seen_seq) r.bad(where + ".single", "the template has no $A");
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    // "cls": ["<s>", 0], "sep": ["</s>", 2]: cls + A + sep.
    for (const char* key : {"cls", "sep"}) {
      const json& v = r.req(o, key, where);
      if (!v.is_array() || v.size() != 2) r.bad(where + "." + key, "expected [token, id]");
      int32_t id = check_id(r.integer(v[1], 0, INT32_MAX, where + "." + key), where);
      (std::string(key) == "cls" ? before : after).push_back(id);
    }
  } else {
    r.bad(where, fmt::format("post_processor type '{}' is not supported (Sequence, TemplateProcessing, ByteLevel, "
                             "RobertaProcessing, BertProcessing are)",
                             type));
  }
  // Composing: this processor wraps what the earlier ones produced.
  post.present = true;
  before.insert(before.end(), post.before.begin(), post.before.end());
  post.before.swap(before);
  post.after.insert(post.after.end(), after.begin(), after.end());
}

void read_model(const Reader& r, const json& m, tok::Bpe& bpe) {
  std::string where = "model";
  if (!m.is_object()) r.bad(where, "expected an object");
  // Old files leave out "type"; HF then recognises BPE by its merges.
  std::string type = r.opt(m, "type") ? r.str(m, "type", where) : (r.opt(m, "merges") ? "BPE" : "?");
  if (type != "BPE") r.bad(where, fmt::format("model type '{}' is not supported (only BPE)", type));
  if (const json* d = r.opt(m, "dropout")) {
    if (!d->is_number()) r.bad(where + ".dropout", "expected a number or null");
    if (d->get<double>() != 0.0) r.bad(where + ".dropout", "BPE dropout (random merges) is not supported");
  }
  bpe.prefix = r.str_or(m, "continuing_subword_prefix", "", where);
  bpe.suffix = r.str_or(m, "end_of_word_suffix", "", where);
  bpe.fuse_unk = r.flag(m, "fuse_unk", false, where);
  bpe.byte_fallback = r.flag(m, "byte_fallback", false, where);
  bpe.ignore_merges = r.flag(m, "ignore_merges", false, where);
  if (const json* u = r.opt(m, "unk_token")) {
    bpe.has_unk = true;
    bpe.unk_token = r.str(*u, where + ".unk_token");
  }
  const json& vocab = r.req(m, "vocab", where);
  if (!vocab.is_object()) r.bad(where + ".vocab", "expected an object of token: id");
  std::unordered_map<std::string, int32_t> v;
  v.reserve(vocab.size());
  for (auto& [token, id] : vocab.items()) {
    v[token] = int32_t(r.integer(id, 0, INT32_MAX - 1, where + ".vocab['" + token + "']"));
  }
  bpe.set_vocab(std::move(v), r.name + ": " + where + ".vocab");
  const json& merges = r.req(m, "merges", where);
  if (!merges.is_array()) r.bad(where + ".merges", "expected a list");
  bpe.merges.reserve(merges.size());
  int32_t rank = 0;
  for (auto& x : merges) {
    std::string a, b;
    if (x.is_string()) {
      // "a b": exactly one space, as HF requires.
      const std::string& s = x.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        r.bad(where + ".merges", fmt::format("merge {} '{}' is not two tokens separated by one space", rank, s));
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else if (x.is_array() && x.size() == 2 && x[0].is_string() && x[1].is_string()) {
      a = x[0].get<std::string>(), b = x[1].get<std::string>();
    } else {
      r.bad(where + ".merges", fmt::format("merge {} is neither \"a b\" nor [\"a\", \"b\"]", rank));
    }
    bpe.add_merge(a, b, rank++, r.name + ": " + where + ".merges");
  }
}

// A special token named in tokenizer_config.json: "<s>" or {"content": "<s>", ...}.
std::string config_token(const Reader& r, const json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) return r.str(v, "content", where);
  r.bad(where, "expected a token string or {\"content\": ...}");
}

}  // namespace

std::shared_ptr<Tokenizer::Impl> tokenizer_from_json(std::string_view text, std::string_view config,
                                                     const std::string& name) {
  auto t = std::make_shared<Tokenizer::Impl>();
  t->name = name;
  Reader r{name};
  try {
    json j = json::parse(text.begin(), text.end());
    if (!j.is_object()) r.bad("tokenizer.json", "expected a JSON object");
    read_model(r, r.req(j, "model", "tokenizer.json"), t->bpe);
    if (const json* n = r.opt(j, "normalizer")) read_normalizer(r, *n, t->normalizers, 0);
    if (const json* p = r.opt(j, "pre_tokenizer")) read_pre_tokenizer(r, *p, t->pre, 0);
    if (const json* d = r.opt(j, "decoder")) {
      t->has_decoder = true;
      read_decoder(r, *d, t->decoders, 0);
    }
    if (const json* added = r.opt(j, "added_tokens")) {
      if (!added->is_array()) r.bad("added_tokens", "expected a list");
      for (auto& a : *added) {
        std::string where = "added_tokens";
        if (!a.is_object()) r.bad(where, "expected objects");
        tok::AddedToken at;
        at.content = r.str(a, "content", where);
        if (at.content.empty()) r.bad(where, "empty token content");
        int64_t want = r.integer(r.req(a, "id", where), 0, INT32_MAX - 1, where + ".id");
        at.special = r.flag(a, "special", false, where);
        at.lstrip = r.flag(a, "lstrip", false, where);
        at.rstrip = r.flag(a, "rstrip", false, where);
        at.single_word = r.flag(a, "single_word", false, where);
        at.normalized = r.flag(a, "normalized", !at.special, where);
        int32_t got = t->add_token(at);
        // HF recomputes the id (the model's, else the next free one) and only warns on a mismatch;
        // a file whose ids disagree with its vocabulary is malformed, so refuse it.
        if (got != want)
          r.bad(where, fmt::format("token '{}' says id {} but the vocabulary gives it {}", at.content, want, got));
      }
    }
    if (const json* pad = r.opt(j, "padding")) {
      if (const json* id = pad->is_object() ? r.opt(*pad, "pad_id") : nullptr)
        t->pad = int(r.integer(*id, 0, INT32_MAX, "padding.pad_id"));
    }

    // tokenizer_config.json: the named special tokens. transformers 5 drops add_bos_token /
    // add_eos_token when tokenizer.json exists, so the post-processor below stays as it is.
    std::string bos, eos, unk, pad;
    if (!config.empty()) {
      Reader rc{name + " (tokenizer_config.json)"};
      json c = json::parse(config.begin(), config.end(), nullptr, false);
      if (c.is_discarded()) rc.bad("tokenizer_config.json", "not valid JSON");
      if (!c.is_object()) rc.bad("tokenizer_config.json", "expected a JSON object");
      auto named = [&](const char* key) -> std::string {
        const json* v = rc.opt(c, key);
        if (!v) return "";
        std::string s = config_token(rc, *v, key);
        tok::AddedToken at{s, -1, true, false, false, false, false, {}};
        if (auto it = t->added_by_content.find(s); it != t->added_by_content.end()) at = t->added[it->second];
        at.special = true;
        if (!s.empty()) t->add_token(at);
        return s;
      };
      // In transformers' order of special-token attributes (it decides the ids of new ones).
      bos = named("bos_token"), eos = named("eos_token"), unk = named("unk_token");
      named("sep_token");
      pad = named("pad_token");
      named("cls_token"), named("mask_token");
      for (const char* key : {"additional_special_tokens", "extra_special_tokens"}) {
        const json* list = rc.opt(c, key);
        if (!list || !list->is_array()) continue;
        for (auto& v : *list) {
          std::string s = config_token(rc, v, key);
          tok::AddedToken at{s, -1, true, false, false, false, false, {}};
          if (auto it = t->added_by_content.find(s); it != t->added_by_content.end()) at = t->added[it->second];
          at.special = true;
          if (!s.empty()) t->add_token(at);
        }
      }
    }
    t->finish();
    if (const json* p = r.opt(j, "post_processor")) read_post(r, *p, *t, t->post, 0);

    // Which ids are BOS/EOS/...: the config's names, else what the post-processor adds, else
    // the model's unknown token and the padding id.
    auto id_of = [&](const std::string& s, int dflt) { return s.empty() ? dflt : t->token_to_id(s); };
    t->bos = id_of(bos, t->post.before.empty() ? -1 : t->post.before.front());
    t->eos = id_of(eos, t->post.after.empty() ? -1 : t->post.after.back());
    t->unk = id_of(unk, t->bpe.has_unk ? t->token_to_id(t->bpe.unk_token) : -1);
    t->pad = id_of(pad, t->pad < t->vocab_size ? t->pad : -1);
  } catch (const json::exception& e) {
    fail("{}: not a valid tokenizer file: {}", name, e.what());
  }
  return t;
}

}  // namespace zo
