// The BPE model: a word (one pre-token) -> ids. Starts from one symbol per char (or the unknown
// token, or <0xNN> byte tokens with byte_fallback), then applies merges lowest rank first, ties to
// the leftmost pair, as HF tokenizers' Word::merge_all does. A priority queue keeps this
// O(n log n) in the word length; results for short words are cached.
#include <queue>

#include "core/error.h"
#include "models/tokenizer_impl.h"

namespace zo::tok {

void Bpe::set_vocab(std::unordered_map<std::string, int32_t> v, const std::string& where) {
  int64_t max_id = -1;
  for (auto& [t, id] : v) {
    ZO_CHECK(id >= 0, "{}: token '{}' has negative id {}", where, t, id);
    max_id = std::max<int64_t>(max_id, id);
  }
  // Ids index tables downstream (embeddings): refuse a sparse vocabulary that would make them huge.
  ZO_CHECK(max_id < int64_t(v.size()) + (int64_t(1) << 20), "{}: token id {} is far beyond the {} tokens", where,
           max_id, v.size());
  id_to_token.assign(size_t(max_id + 1), std::string());
  has_id.assign(size_t(max_id + 1), 0);
  vocab = std::move(v);
  for (auto& [t, id] : vocab) {
    // Two tokens with one id: HF keeps one of them for decoding; keep the smaller string.
    if (!has_id[size_t(id)] || t < id_to_token[size_t(id)]) id_to_token[size_t(id)] = t;
    has_id[size_t(id)] = 1;
  }
}

void Bpe::add_merge(const std::string& a, const std::string& b, int32_t rank, const std::string& where) {
  auto ia = vocab.find(a);
  ZO_CHECK(ia != vocab.end(), "{}: merge {} '{} {}': '{}' is not in the vocabulary", where, rank, a, b, a);
  auto ib = vocab.find(b);
  ZO_CHECK(ib != vocab.end(), "{}: merge {} '{} {}': '{}' is not in the vocabulary", where, rank, a, b, b);
  // HF drops continuing_subword_prefix's length from the right part, whatever it starts with.
  ZO_CHECK(b.size() >= prefix.size(), "{}: merge {}: '{}' is shorter than the subword prefix", where, rank, b);
  std::string merged = a + b.substr(prefix.size());
  auto im = vocab.find(merged);
  ZO_CHECK(im != vocab.end(), "{}: merge {} '{} {}': '{}' is not in the vocabulary", where, rank, a, b, merged);
  merges[key(ia->second, ib->second)] = {rank, im->second};  // a repeated pair: the later rank wins
}

}  // namespace zo::tok

namespace zo {

namespace {

struct Symbol {
  int32_t id;
  int32_t prev, next;  // neighbours in the linked list of live symbols; -1 at the ends
  bool live;
};

struct Candidate {
  int32_t rank, pos, new_id;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

void Tokenizer::Impl::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (bpe.ignore_merges) {
    auto it = bpe.vocab.find(std::string(word));
    if (it != bpe.vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < 256;
  if (cacheable) {
    std::shared_lock lock(cache_mu);
    auto it = cache.find(std::string(word));
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }

  // One symbol per char, as HF's BPE::merge_word builds them.
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  int32_t unk_id = -1;  // a pending (possibly fused) unknown symbol
  auto push = [&](int32_t id) {
    int32_t n = int32_t(sym.size());
    sym.push_back({id, n - 1, -1, true});
  };
  std::string s;
  for (size_t i = 0; i < word.size();) {
    size_t n = std::min(tok::utf8_len(uint8_t(word[i])), word.size() - i);
    bool first = i == 0, last = i + n == word.size();
    s.assign(first ? "" : bpe.prefix);
    s.append(word.substr(i, n));
    if (last) s.append(bpe.suffix);
    i += n;
    auto it = bpe.vocab.find(s);
    if (it != bpe.vocab.end()) {
      if (unk_id >= 0) push(unk_id), unk_id = -1;
      push(it->second);
      continue;
    }
    if (bpe.byte_fallback) {
      std::vector<int32_t> bytes;
      for (unsigned char c : s) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", c);
        auto b = bpe.vocab.find(name);
        if (b == bpe.vocab.end()) break;
        bytes.push_back(b->second);
      }
      if (bytes.size() == s.size()) {
        // HF adds byte tokens without flushing a pending unknown first; keep that order.
        for (int32_t b : bytes) push(b);
        continue;
      }
    }
    if (bpe.has_unk) {
      auto u = bpe.vocab.find(bpe.unk_token);
      if (u == bpe.vocab.end()) fail("{}: unk_token '{}' is not in the vocabulary", name, bpe.unk_token);
      if (unk_id >= 0 && !bpe.fuse_unk) push(unk_id);
      unk_id = u->second;
    }
  }
  if (unk_id >= 0) push(unk_id);
  for (size_t k = 0; k + 1 < sym.size(); k++) sym[k].next = int32_t(k + 1);

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto merge_of = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
    auto it = bpe.merges.find(tok::Bpe::key(a, b));
    return it == bpe.merges.end() ? nullptr : &it->second;
  };
  for (size_t k = 0; k + 1 < sym.size(); k++) {
    if (auto m = merge_of(sym[k].id, sym[k + 1].id)) queue.push({m->first, int32_t(k), m->second});
  }
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& cur = sym[size_t(top.pos)];
    if (!cur.live || cur.next < 0) continue;
    Symbol& right = sym[size_t(cur.next)];
    // A stale entry: the pair at pos changed since it was queued.
    auto m = merge_of(cur.id, right.id);
    if (!m || m->second != top.new_id) continue;
    cur.id = top.new_id;
    right.live = false;
    cur.next = right.next;
    if (cur.next >= 0) sym[size_t(cur.next)].prev = top.pos;
    if (cur.prev >= 0) {
      if (auto p = merge_of(sym[size_t(cur.prev)].id, cur.id)) queue.push({p->first, cur.prev, p->second});
    }
    if (cur.next >= 0) {
      if (auto p = merge_of(cur.id, sym[size_t(cur.next)].id)) queue.push({p->first, top.pos, p->second});
    }
  }

  size_t start = out.size();
  for (auto& x : sym) {
    if (x.live) out.push_back(x.id);
  }
  if (cacheable) {
    std::unique_lock lock(cache_mu);
    if (cache.size() < 10000)
      cache.emplace(std::string(word), std::vector<int32_t>(out.begin() + long(start), out.end()));
  }
}

}  // namespace zo
