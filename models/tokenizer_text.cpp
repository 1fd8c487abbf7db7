// Text helpers for the tokenizer: UTF-8, the GPT-2 byte<->unicode table, PCRE2 regexes that
// behave like the Oniguruma ones HF `tokenizers` uses, and added-token matching.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>

#include "core/error.h"
#include "models/tokenizer_impl.h"

namespace zo::tok {

// ---- UTF-8 ------------------------------------------------------------------------------------

namespace {

// Per Unicode table 3-7: the allowed range of the second byte after lead byte b, and the length.
// Returns 0 for a byte that cannot start a sequence.
int utf8_lead(unsigned char b, unsigned char& lo, unsigned char& hi) {
  lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b == 0xE0) {
    lo = 0xA0;
    return 3;
  }
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return 3;
  if (b == 0xED) {
    hi = 0x9F;
    return 3;
  }
  if (b == 0xF0) {
    lo = 0x90;
    return 4;
  }
  if (b >= 0xF1 && b <= 0xF3) return 4;
  if (b == 0xF4) {
    hi = 0x8F;
    return 4;
  }
  return 0;
}

// Length of the valid sequence at s[i], or -(bytes of its maximal invalid subpart) when invalid.
int utf8_seq(std::string_view s, size_t i) {
  unsigned char b = s[i];
  if (b < 0x80) return 1;
  unsigned char lo, hi;
  int len = utf8_lead(b, lo, hi);
  if (len == 0) return -1;
  int k = 1;
  for (; k < len && i + k < s.size(); k++) {
    unsigned char c = s[i + k];
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
  }
  return k == len ? len : -k;
}

}  // namespace

size_t utf8_invalid_at(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    int n = utf8_seq(s, i);
    if (n < 0) return i;
    i += size_t(n);
  }
  return std::string_view::npos;
}

uint32_t utf8_next(std::string_view s, size_t& i) {
  unsigned char b = s[i];
  size_t n = std::min(utf8_len(b), s.size() - i);
  uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = 1; k < n; k++) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

size_t utf8_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    int n = utf8_seq(s, i);
    if (n > 0) {
      out.append(s.substr(i, size_t(n)));
      i += size_t(n);
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD for the maximal invalid subpart
      i += size_t(-n);
    }
  }
  return out;
}

bool is_unicode_whitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// ---- GPT-2 byte <-> unicode -------------------------------------------------------------------
// Printable Latin-1 bytes stand for themselves; the other 68 bytes take the chars from U+0100 on,
// in byte order, so every byte is a visible, non-space char.

namespace {

struct ByteTable {
  std::array<std::string, 256> to_utf8;
  std::array<int16_t, 324> to_byte;  // index = code point (all of them are < 0x144)
  ByteTable() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? uint32_t(b) : next++;
      utf8_append(to_utf8[b], cp);
      to_byte[cp] = int16_t(b);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_table().to_utf8[b]; }

int unicode_to_byte(uint32_t cp) { return cp < 324 ? byte_table().to_byte[cp] : -1; }

// ---- Regex ------------------------------------------------------------------------------------

namespace {

// Code points Oniguruma puts in a general category and PCRE2 10.42 (Unicode 14) does not.
struct CategoryExtra {
  const char* name;
  const char* items;  // PCRE2 class items
};
const CategoryExtra kCategoryExtra[] = {
#include "models/tokenizer_unicode.inc"
};

const char* category_extra(std::string_view name) {
  for (auto& c : kCategoryExtra) {
    if (name == c.name) return c.items;
  }
  return nullptr;
}

// Oniguruma (Ruby syntax, as HF compiles patterns) and PCRE2 read a few escapes differently:
//  - Ruby's \h is a hex digit (PCRE2: horizontal space);
//  - PCRE2's \s also takes U+180E, which Oniguruma's does not;
//  - Oniguruma knows a newer Unicode, so \p{L}, \p{N}, \d, ... take more code points.
// Spell those out. Everything else the tokenizer patterns use ((?i:..), lookahead, {m,n}) means
// the same in both. (\P{..} inside a class keeps PCRE2's meaning: it cannot be widened in place.)
std::string onig_compatible(std::string_view p) {
  static const std::string kSpace =
      "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";
  static const std::string kHex = "0-9a-fA-F";
  if (p.find("\\Q") != std::string_view::npos) return std::string(p);  // literal runs: leave alone
  std::string out;
  bool in_class = false;
  // Emit a class body `items` for an escape: as items inside a class, else as [items] or [^items].
  auto emit = [&](const std::string& items, bool negated) {
    if (in_class && !negated) {
      out += items;
    } else if (!in_class) {
      out += negated ? "[^" : "[";
      out += items;
      out += "]";
    }
  };
  for (size_t i = 0; i < p.size(); i++) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      size_t esc = i;
      char d = p[++i];
      bool negated = d == 'S' || d == 'H' || d == 'D' || d == 'P';
      if (d == 's' || d == 'S') {
        if (in_class && negated)
          out += "\\S";
        else
          emit(kSpace, negated);
        continue;
      }
      if (d == 'h' || d == 'H') {
        if (in_class && negated)
          out += "[^0-9a-fA-F]";
        else
          emit(kHex, negated);
        continue;
      }
      if ((d == 'd' || d == 'D') && !(in_class && negated)) {
        emit(std::string("\\d") + category_extra("Nd"), negated);
        continue;
      }
      if ((d == 'p' || d == 'P') && i + 1 < p.size()) {
        // \p{Name}, \p{^Name} or \pN
        size_t name_at = i + 1, name_end = i + 2;
        if (p[i + 1] == '{') {
          name_at = i + 2;
          name_end = p.find('}', name_at);
          if (name_end == std::string_view::npos) name_end = p.size();
        }
        std::string_view name = p.substr(name_at, name_end - name_at);
        if (!name.empty() && name[0] == '^') name.remove_prefix(1), negated = !negated;
        const char* extra = category_extra(name);
        size_t next = p[i + 1] == '{' ? name_end + 1 : name_end;
        if (extra && next <= p.size() && !(in_class && negated)) {
          emit("\\p{" + std::string(name) + "}" + extra, negated);
          i = next - 1;
          continue;
        }
      }
      out.append(p.substr(esc, 2));
      continue;
    }
    out += c;
    if (!in_class && c == '[') {
      in_class = true;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ] is literal
    } else if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {
      size_t e = p.find(":]", i + 2);  // POSIX class [:alpha:] inside a class
      if (e != std::string_view::npos) {
        out.append(p.substr(i + 1, e + 1 - i));
        i = e + 1;
      }
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

struct MatchData {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* mc = pcre2_match_context_create(nullptr);
  MatchData() {
    // A pathological pattern from an untrusted file must fail, not hang.
    pcre2_set_match_limit(mc, 20'000'000);
    pcre2_set_depth_limit(mc, 100'000);
  }
  ~MatchData() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
  }
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, sizeof(buf));
  return n < 0 ? "unknown PCRE2 error" : std::string(reinterpret_cast<char*>(buf), size_t(n));
}

}  // namespace

Regex::Regex(std::string_view pattern, const std::string& what) : what_(what) {
  std::string p = onig_compatible(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  // MULTILINE: in Ruby syntax ^ and $ are line anchors.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &off, nullptr);
  if (!code) fail("{}: bad regex '{}': {} at offset {}", what, std::string(pattern), pcre2_message(err), off);
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // a failure leaves the interpreter, which is fine
  code_ = std::shared_ptr<void>(code, [](void* c) { pcre2_code_free(static_cast<pcre2_code*>(c)); });
}

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  out.clear();
  if (!code_) return;
  thread_local MatchData m;
  auto* code = static_cast<pcre2_code*>(code_.get());
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  bool have_last = false;
  size_t last_end = 0;
  uint32_t opts = 0;  // the first call checks the UTF-8 of the whole text; later calls need not
  while (pos <= text.size()) {
    int rc = pcre2_match(code, subject, text.size(), pos, opts, m.md, m.mc);
    opts = PCRE2_NO_UTF_CHECK;
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("{}: regex match failed: {}", what_, pcre2_message(rc));
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    size_t s = ov[0], e = ov[1];
    if (s == e && have_last && last_end == e) {
      // onig's iterator: no empty match right after the previous match; step one char on.
      if (pos >= text.size()) break;
      pos += std::min(utf8_len(uint8_t(text[pos])), text.size() - pos);
      continue;
    }
    out.emplace_back(s, e);
    pos = e;
    have_last = true;
    last_end = e;
  }
}

// ---- added-token matching ---------------------------------------------------------------------

void TokenMatcher::add(const std::string& s, int32_t value) {
  int32_t n = 0;
  for (unsigned char c : s) {
    int32_t child = -1;
    for (auto& [b, idx] : nodes_[size_t(n)].next) {
      if (b == c) child = idx;
    }
    if (child < 0) {
      child = int32_t(nodes_.size());
      nodes_[size_t(n)].next.emplace_back(c, child);
      nodes_.emplace_back();
    }
    n = child;
  }
  nodes_[size_t(n)].value = value;
  first_byte_[uint8_t(s[0])] = true;
}

bool TokenMatcher::find(std::string_view text, size_t from, size_t& start, size_t& end, int32_t& value) const {
  if (empty()) return false;
  for (size_t i = from; i < text.size(); i++) {
    if (!first_byte_[uint8_t(text[i])]) continue;
    int32_t n = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); j++) {
      int32_t child = -1;
      for (auto& [b, idx] : nodes_[size_t(n)].next) {
        if (b == uint8_t(text[j])) child = idx;
      }
      if (child < 0) break;
      n = child;
      if (nodes_[size_t(n)].value >= 0) best = nodes_[size_t(n)].value, best_end = j + 1;
    }
    if (best >= 0) {
      start = i, end = best_end, value = best;
      return true;
    }
  }
  return false;
}

}  // namespace zo::tok
