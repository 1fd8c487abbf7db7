// The Tokenizer facade (models/tokenizer.h) and the added-token vocabulary shared by both builders.
#include "models/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "models/tokenizer_impl.h"

namespace zo {

namespace fs = std::filesystem;

// HF's AddedVocabulary::add_tokens for one token: content the model knows keeps the model's id;
// new content takes the next id after both the model vocabulary (its count, as HF uses) and the
// added tokens so far. Adding known content again replaces its flags.
int32_t Tokenizer::Impl::add_token(tok::AddedToken t) {
  if (t.content.empty()) return -1;
  if (auto it = added_by_content.find(t.content); it != added_by_content.end()) {
    t.id = added[it->second].id;
    added[it->second] = t;
    return t.id;
  }
  if (auto it = bpe.vocab.find(t.content); it != bpe.vocab.end()) {
    t.id = it->second;
  } else {
    int64_t model = int64_t(bpe.vocab.size());
    int64_t id = max_added_id < 0 ? model : (max_added_id >= model || model == 0) ? max_added_id + 1 : model;
    ZO_CHECK(id < INT32_MAX, "{}: too many added tokens", name);
    t.id = int32_t(id);
  }
  added_by_content[t.content] = added.size();
  added_by_id[t.id] = added.size();
  max_added_id = std::max<int64_t>(max_added_id, t.id);
  added.push_back(std::move(t));
  return added.back().id;
}

void Tokenizer::Impl::finish() {
  raw_matcher = {};
  norm_matcher = {};
  for (size_t i = 0; i < added.size(); i++) {
    auto& a = added[i];
    if (!a.normalized) {
      a.form = a.content;
      raw_matcher.add(a.content, int32_t(i));
    } else {
      // Normalized tokens are looked for in normalized text, so their content is normalized too;
      // HF decodes them in that form as well.
      a.form = normalize(a.content);
      if (!a.form.empty()) norm_matcher.add(a.form, int32_t(i));
    }
  }
  // The id map of added tokens: later additions of the same id win, as in HF's reverse map.
  added_by_id.clear();
  for (size_t i = 0; i < added.size(); i++) added_by_id[added[i].id] = i;
  int64_t n = int64_t(bpe.id_to_token.size());
  for (auto& a : added) n = std::max<int64_t>(n, int64_t(a.id) + 1);
  vocab_size = int(n);
}

int Tokenizer::Impl::token_to_id(std::string_view token) const {
  std::string s(token);
  if (auto it = added_by_content.find(s); it != added_by_content.end()) return added[it->second].id;
  if (auto it = bpe.vocab.find(s); it != bpe.vocab.end()) return it->second;
  return -1;
}

// ---- Tokenizer ---------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(const Tokenizer&) = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(const Tokenizer&) = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("{}: cannot open", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail("{}: read error", p.string());
  return ss.str();
}

}  // namespace

Tokenizer Tokenizer::from_hf_dir(const std::string& dir) {
  fs::path json = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(json)) fail("{}: no tokenizer.json in this folder", dir);
  fs::path config = fs::path(dir) / "tokenizer_config.json";
  std::string config_text = fs::exists(config) ? read_file(config) : std::string();
  return Tokenizer(tokenizer_from_json(read_file(json), config_text, json.string()));
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                               const std::string& name_for_errors) {
  return Tokenizer(tokenizer_from_json(tokenizer_json, tokenizer_config_json, name_for_errors));
}

Tokenizer Tokenizer::from_gguf_metadata(const GgufTokenizerData& d, const std::string& name_for_errors) {
  return Tokenizer(tokenizer_from_gguf(d, name_for_errors));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return impl_->encode(text, add_special_tokens);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

int Tokenizer::vocab_size() const { return impl_->vocab_size; }
int Tokenizer::bos_id() const { return impl_->bos; }
int Tokenizer::eos_id() const { return impl_->eos; }
int Tokenizer::pad_id() const { return impl_->pad; }
int Tokenizer::unk_id() const { return impl_->unk; }
int Tokenizer::token_to_id(std::string_view token) const { return impl_->token_to_id(token); }

std::string Tokenizer::id_to_token(int id) const {
  const std::string* t = impl_->token_of(id);
  return t ? *t : std::string();
}

bool Tokenizer::is_special(int id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

const std::string& Tokenizer::name() const { return impl_->name; }

}  // namespace zo
