// Decoding: ids -> tokens -> the decoder chain -> text, as HF tokenizers' Tokenizer::decode:
// added tokens and model tokens alike go through the decoders (each step maps the token list to a
// new one), and the results are concatenated. Without a decoder, tokens are joined with spaces.
#include "core/error.h"
#include "models/tokenizer_impl.h"

namespace zo {

namespace {

// A "<0xNN>" token's byte, or -1. Rust's u8::from_str_radix takes an optional '+' sign too.
int byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
  };
  if (t[3] == '+') return hex(t[4]);
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t prev = 0;
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + from.size())) {
    out.append(s, prev, at - prev);
    out += to;
    prev = at + from.size();
  }
  if (prev == 0) return;
  out.append(s, prev, std::string::npos);
  s.swap(out);
}

void run_decoder(const tok::Decoder& d, std::vector<std::string>& tokens) {
  using K = tok::Decoder::Kind;
  switch (d.kind) {
    case K::ByteLevel: {
      // Every char back to its byte; a token with any other char stays as its UTF-8. Then the
      // whole byte string is read lossily (invalid UTF-8 -> U+FFFD).
      std::string bytes;
      for (auto& t : tokens) {
        size_t mark = bytes.size();
        bool ok = true;
        for (size_t i = 0; i < t.size() && ok;) {
          int b = tok::unicode_to_byte(tok::utf8_next(t, i));
          if (b < 0)
            ok = false;
          else
            bytes += char(b);
        }
        if (!ok) bytes.replace(mark, std::string::npos, t);
      }
      tokens.assign(1, tok::utf8_lossy(bytes));
      break;
    }
    case K::Replace:
      for (auto& t : tokens) replace_all(t, d.pattern, d.content);
      break;
    case K::ByteFallback: {
      // Runs of <0xNN> tokens become their bytes if those are valid UTF-8, else one U+FFFD each.
      std::vector<std::string> out;
      std::string run;
      size_t run_len = 0;
      auto flush = [&] {
        if (run_len == 0) return;
        if (tok::utf8_invalid_at(run) == std::string::npos) {
          out.push_back(run);
        } else {
          for (size_t k = 0; k < run_len; k++) out.emplace_back("\xEF\xBF\xBD");
        }
        run.clear();
        run_len = 0;
      };
      for (auto& t : tokens) {
        int b = byte_token(t);
        if (b >= 0) {
          run += char(b);
          run_len++;
        } else {
          flush();
          out.push_back(std::move(t));
        }
      }
      flush();
      tokens.swap(out);
      break;
    }
    case K::Fuse: {
      std::string all;
      for (auto& t : tokens) all += t;
      tokens.assign(1, std::move(all));
      break;
    }
    case K::Strip:
      // Up to `start` leading and `stop` trailing copies of the content char, per token.
      for (auto& t : tokens) {
        const std::string& c = d.content;
        size_t a = 0, b = t.size();
        for (size_t k = 0; k < d.start && !c.empty() && t.compare(a, c.size(), c) == 0; k++) a += c.size();
        for (size_t k = 0; k < d.stop && !c.empty() && b >= a + c.size() && t.compare(b - c.size(), c.size(), c) == 0;
             k++)
          b -= c.size();
        t = t.substr(a, b - a);
      }
      break;
    case K::Metaspace:
      // The replacement char becomes a space, except in the first token, where it goes (the
      // pre-tokenizer prepended it) unless prepend_scheme is "never".
      for (size_t i = 0; i < tokens.size(); i++) replace_all(tokens[i], d.pattern, i == 0 && d.prepend ? "" : " ");
      break;
  }
}

}  // namespace

const std::string* Tokenizer::Impl::token_of(int32_t id) const {
  auto a = added_by_id.find(id);
  if (a != added_by_id.end()) return &added[a->second].form;
  if (id >= 0 && size_t(id) < bpe.id_to_token.size() && bpe.has_id[size_t(id)]) return &bpe.id_to_token[size_t(id)];
  return nullptr;
}

std::string Tokenizer::Impl::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* t = token_of(id);
    if (!t) continue;
    if (skip_special_tokens) {
      // HF looks the spelled token up among special contents (so a normalized special token,
      // spelled differently, is kept).
      auto a = added_by_content.find(*t);
      if (a != added_by_content.end() && added[a->second].special) continue;
    }
    tokens.push_back(*t);
  }
  if (!has_decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); i++) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (auto& d : decoders) run_decoder(d, tokens);
  std::string out;
  for (auto& t : tokens) out += t;
  return out;
}

}  // namespace zo
