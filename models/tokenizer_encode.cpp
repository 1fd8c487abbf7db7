// Encoding: text -> ids, stage by stage as HF tokenizers runs it (Tokenizer::encode_single_sequence):
//   1. cut out added tokens whose `normalized` is false, matched on the raw text;
//   2. normalize each remaining piece, then cut out the `normalized` added tokens;
//   3. pre-tokenize the remaining pieces (Split / Digits / ByteLevel / Metaspace, in order);
//   4. run BPE on every pre-token; 5. add the post-processor's special ids.
// Empty pieces vanish after every split, as they do in HF's PreTokenizedString.
#include <algorithm>

#include "core/error.h"
#include "models/tokenizer_impl.h"

namespace zo {

namespace {

using tok::SplitBehavior;

struct Piece {
  std::string text;
  int32_t id = -1;     // >= 0: an added token, final
  bool first = false;  // starts at offset 0 of the original text (Metaspace prepend_scheme "first")
};

using Ranges = std::vector<std::pair<size_t, size_t>>;

// The (range, is_match) list HF's Pattern::find_matches gives, covering all of s.
void find_matches(const tok::PreTokenizer& p, std::string_view s, std::vector<std::tuple<size_t, size_t, bool>>& out) {
  out.clear();
  thread_local Ranges m;
  m.clear();
  if (p.regex.valid()) {
    p.regex.find_all(s, m);
  } else if (!p.literal.empty()) {
    for (size_t at = s.find(p.literal); at != std::string_view::npos; at = s.find(p.literal, at + p.literal.size()))
      m.emplace_back(at, at + p.literal.size());
  }
  size_t prev = 0;
  for (auto [a, b] : m) {
    if (prev != a) out.emplace_back(prev, a, false);
    out.emplace_back(a, b, true);
    prev = b;
  }
  if (prev != s.size()) out.emplace_back(prev, s.size(), false);
}

// HF's NormalizedString::split: which ranges of s become pieces, given the matches and a behaviour.
void split_ranges(std::vector<std::tuple<size_t, size_t, bool>>& m, SplitBehavior how, bool invert, Ranges& out) {
  out.clear();
  if (invert) {
    for (auto& x : m) std::get<2>(x) = !std::get<2>(x);
  }
  bool prev_match = false;
  switch (how) {
    case SplitBehavior::Removed:
      for (auto& [a, b, is] : m) {
        if (!is) out.emplace_back(a, b);
      }
      break;
    case SplitBehavior::Isolated:
      for (auto& [a, b, is] : m) out.emplace_back(a, b);
      break;
    case SplitBehavior::MergedWithPrevious:
      for (auto& [a, b, is] : m) {
        if (is && !prev_match && !out.empty()) {
          out.back().second = b;
        } else {
          out.emplace_back(a, b);
        }
        prev_match = is;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        auto& [a, b, is] = *it;
        if (is && !prev_match && !out.empty()) {
          out.back().first = a;
        } else {
          out.emplace_back(a, b);
        }
        prev_match = is;
      }
      std::reverse(out.begin(), out.end());
      break;
    case SplitBehavior::Contiguous:
      for (auto& [a, b, is] : m) {
        if (is == prev_match && !out.empty()) {
          out.back().second = b;
        } else {
          out.emplace_back(a, b);
        }
        prev_match = is;
      }
      break;
  }
}

// Replaces every piece (not yet a token) by the pieces fn makes of it; drops empty ones.
template <typename F>
void split_each(std::vector<Piece>& pieces, F&& fn) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& p : pieces) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    size_t from = out.size();
    fn(p, out);
    out.erase(
        std::remove_if(out.begin() + long(from), out.end(), [](const Piece& q) { return q.id < 0 && q.text.empty(); }),
        out.end());
  }
  pieces.swap(out);
}

void push_ranges(const Piece& p, const std::string& s, const Ranges& r, std::vector<Piece>& out) {
  for (auto [a, b] : r) out.push_back({s.substr(a, b - a), -1, p.first && a == 0});
}

// Whether the first (or last) char of s is a word char as Rust regex's \w sees it (HF checks
// single_word tokens with it): alphabetic, marks, decimal digits, connector punctuation, joiners.
bool word_char_at(std::string_view s, bool last) {
  static const tok::Regex word("^[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", "word-boundary check");
  if (s.empty()) return false;
  size_t at = 0;
  if (last) {
    at = s.size() - 1;
    while (at > 0 && (uint8_t(s[at]) & 0xC0) == 0x80) at--;
  }
  size_t end = at;
  tok::utf8_next(s, end);
  thread_local Ranges m;
  word.find_all(s.substr(at, end - at), m);
  return !m.empty();
}

}  // namespace

namespace {

// Real pipelines grow text a few times at most (a byte becomes a 2-byte char, a space a 3-byte
// "▁"); a file chaining doubling steps must not exhaust memory.
size_t growth_limit(size_t n) { return 16 * n + 4096; }

}  // namespace

std::string Tokenizer::Impl::normalize(std::string_view in) const {
  std::string s(in);
  thread_local Ranges m;
  for (auto& n : normalizers) {
    if (s.size() > growth_limit(in.size())) fail("{}: the normalizer grows the text more than 16-fold", name);
    switch (n.kind) {
      case tok::Normalizer::Kind::Prepend:
        if (!s.empty()) s.insert(0, n.text);
        break;
      case tok::Normalizer::Kind::Replace: {
        m.clear();
        if (n.regex.valid()) {
          n.regex.find_all(s, m);
        } else if (!n.text.empty()) {
          for (size_t at = s.find(n.text); at != std::string::npos; at = s.find(n.text, at + n.text.size()))
            m.emplace_back(at, at + n.text.size());
        }
        if (m.empty()) break;
        size_t removed = 0;
        for (auto [a, b] : m) removed += b - a;
        if (s.size() - removed + m.size() * n.content.size() > growth_limit(in.size()))
          fail("{}: the normalizer grows the text more than 16-fold", name);
        std::string out;
        size_t prev = 0;
        for (auto [a, b] : m) {
          out.append(s, prev, a - prev);
          out += n.content;
          prev = b;
        }
        out.append(s, prev, std::string::npos);
        s.swap(out);
        break;
      }
      case tok::Normalizer::Kind::Strip: {
        size_t a = 0, b = s.size();
        if (n.left) {
          for (size_t i = 0; i < s.size();) {
            size_t j = i;
            if (!tok::is_unicode_whitespace(tok::utf8_next(s, j))) break;
            a = i = j;
          }
        }
        if (n.right) {
          size_t i = a, last_non_space_end = a;
          while (i < s.size()) {
            uint32_t c = tok::utf8_next(s, i);
            if (!tok::is_unicode_whitespace(c)) last_non_space_end = i;
          }
          b = last_non_space_end;
        }
        s = s.substr(a, b - a);
        break;
      }
    }
  }
  return s;
}

namespace {

// Splits p.text on the added tokens `matcher` finds, with HF's single_word / lstrip / rstrip rules
// (AddedVocabulary::find_matches). Matches are searched from the end of the previous match,
// whatever the strip rules then took.
void split_added(const Tokenizer::Impl& t, const tok::TokenMatcher& matcher, const Piece& p, std::vector<Piece>& out) {
  const std::string& s = p.text;
  size_t from = 0, done = 0;
  size_t ms, me;
  int32_t slot;
  while (matcher.find(s, from, ms, me, slot)) {
    from = me;
    const tok::AddedToken& a = t.added[size_t(slot)];
    size_t start = ms, stop = me;
    if (a.single_word) {
      bool start_ok = start == 0 || !word_char_at(std::string_view(s).substr(0, start), true);
      bool stop_ok = stop == s.size() || !word_char_at(std::string_view(s).substr(stop), false);
      if (!start_ok || !stop_ok) continue;
    }
    if (a.lstrip) {
      // Back over the whitespace before the token, but not into what the previous match took.
      size_t ws_start = start;
      while (ws_start > 0) {
        size_t k = ws_start - 1, j;
        while (k > 0 && (uint8_t(s[k]) & 0xC0) == 0x80) k--;  // to the start of the previous char
        if (!tok::is_unicode_whitespace(tok::utf8_next(s, j = k))) break;
        ws_start = k;
      }
      start = std::max(ws_start, done);
    }
    if (a.rstrip) {
      while (stop < s.size()) {
        size_t j = stop;
        if (!tok::is_unicode_whitespace(tok::utf8_next(s, j))) break;
        stop = j;
      }
    }
    if (done < start) out.push_back({s.substr(done, start - done), -1, p.first && done == 0});
    out.push_back({std::string(), a.id, false});
    done = stop;
  }
  if (done < s.size()) out.push_back({s.substr(done), -1, p.first && done == 0});
}

void pre_tokenize(const tok::PreTokenizer& pt, std::vector<Piece>& pieces) {
  thread_local std::vector<std::tuple<size_t, size_t, bool>> m;
  thread_local Ranges r;
  switch (pt.kind) {
    case tok::PreTokenizer::Kind::Split:
      split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
        find_matches(pt, p.text, m);
        split_ranges(m, pt.behavior, pt.invert, r);
        push_ranges(p, p.text, r, out);
      });
      break;
    case tok::PreTokenizer::Kind::ByteLevel: {
      static const tok::Regex gpt2("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                                   "ByteLevel regex");
      split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
        if (pt.add_prefix_space && (p.text.empty() || p.text[0] != ' ')) p.text = " " + p.text;
        if (!pt.use_regex) {
          out.push_back(std::move(p));
          return;
        }
        gpt2.find_all(p.text, r);
        m.clear();
        size_t prev = 0;
        for (auto [a, b] : r) {
          if (prev != a) m.emplace_back(prev, a, false);
          m.emplace_back(a, b, true);
          prev = b;
        }
        if (prev != p.text.size()) m.emplace_back(prev, p.text.size(), false);
        split_ranges(m, SplitBehavior::Isolated, false, r);
        push_ranges(p, p.text, r, out);
      });
      // Then every byte becomes its printable stand-in.
      for (auto& p : pieces) {
        if (p.id >= 0) continue;
        std::string mapped;
        mapped.reserve(p.text.size() * 2);
        for (unsigned char c : p.text) mapped += tok::byte_to_unicode(c);
        p.text.swap(mapped);
      }
      break;
    }
    case tok::PreTokenizer::Kind::Metaspace:
      split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
        std::string s;
        for (char c : p.text) {
          if (c == ' ') {
            s += pt.replacement;
          } else {
            s += c;
          }
        }
        bool starts = s.compare(0, pt.replacement.size(), pt.replacement) == 0;
        if (!starts &&
            (pt.prepend == tok::PrependScheme::Always || (pt.prepend == tok::PrependScheme::First && p.first)))
          s.insert(0, pt.replacement);
        if (!pt.split) {
          out.push_back({std::move(s), -1, p.first});
          return;
        }
        // Each replacement char is a match, merged into the piece that follows it.
        m.clear();
        size_t prev = 0;
        for (size_t at = s.find(pt.replacement); at != std::string::npos;
             at = s.find(pt.replacement, at + pt.replacement.size())) {
          if (prev != at) m.emplace_back(prev, at, false);
          m.emplace_back(at, at + pt.replacement.size(), true);
          prev = at + pt.replacement.size();
        }
        if (prev != s.size()) m.emplace_back(prev, s.size(), false);
        split_ranges(m, SplitBehavior::MergedWithNext, false, r);
        push_ranges(p, s, r, out);
      });
      break;
  }
}

}  // namespace

std::vector<int32_t> Tokenizer::Impl::encode(std::string_view text, bool add_special_tokens) const {
  size_t bad = tok::utf8_invalid_at(text);
  if (bad != std::string_view::npos) fail("{}: encode: text is not valid UTF-8 (byte {})", name, bad);

  std::vector<Piece> pieces;
  pieces.push_back({std::string(text), -1, true});
  split_each(pieces, [&](Piece& p, std::vector<Piece>& out) { split_added(*this, raw_matcher, p, out); });
  split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
    Piece q{normalizers.empty() ? std::move(p.text) : normalize(p.text), -1, p.first};
    split_added(*this, norm_matcher, q, out);
  });
  for (auto& pt : pre) {
    size_t total = 0;
    for (auto& p : pieces) total += p.text.size();
    if (total > growth_limit(text.size())) fail("{}: the pre-tokenizer grows the text more than 16-fold", name);
    pre_tokenize(pt, pieces);
  }

  std::vector<int32_t> ids;
  if (add_special_tokens) ids = post.before;
  for (auto& p : pieces) {
    if (p.id >= 0) {
      ids.push_back(p.id);
    } else {
      bpe_word(p.text, ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), post.after.begin(), post.after.end());
  return ids;
}

}  // namespace zo
