#include "models/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/ops.h"

namespace zo {

Batch Batch::from_sequences(const std::vector<std::vector<int32_t>>& seqs) {
  Batch b;
  b.seq_start.push_back(0);
  for (auto& s : seqs) {
    for (size_t i = 0; i < s.size(); i++) {
      b.ids.push_back(s[i]);
      b.pos.push_back(int32_t(i));
    }
    b.seq_start.push_back(int32_t(b.ids.size()));
  }
  return b;
}

Batch Batch::from_padded(const int64_t* ids, const int64_t* mask, int B, int T, std::vector<int32_t>* row_of) {
  Batch b;
  b.seq_start.push_back(0);
  if (row_of) row_of->assign(size_t(B) * T, -1);
  for (int r = 0; r < B; r++) {
    int first = -1, last = -1;
    for (int t = 0; t < T; t++)
      if (mask[size_t(r) * T + t]) {
        if (first < 0) first = t;
        ZO_CHECK(last < 0 || last == t - 1, "attention mask row {} is not one contiguous run of ones", r);
        last = t;
      }
    for (int t = first; first >= 0 && t <= last; t++) {
      if (row_of) (*row_of)[size_t(r) * T + t] = int32_t(b.ids.size());
      b.ids.push_back(int32_t(ids[size_t(r) * T + t]));
      b.pos.push_back(t - first);
    }
    b.seq_start.push_back(int32_t(b.ids.size()));
  }
  return b;
}

void KVCache::init(const ModelConfig& c, int seqs, int len_max) {
  n_layers = c.n_layers;
  n_seqs = seqs;
  max_len = len_max;
  kv_dim = c.kv_dim();
  size_t n = size_t(n_layers) * n_seqs * max_len * kv_dim;
  k.assign(n, 0.0f);
  v.assign(n, 0.0f);
  len.assign(size_t(seqs), 0);
}

void Workspace::reserve(const Model& m, int n) {
  const ModelConfig& c = m.cfg;
  if (wscratch.empty() && m.storage != DType::F32) wscratch.resize(m.max_block_numel());
  if (n <= capacity) return;
  int ffn_w = c.arch == Arch::OPT ? c.ffn_dim : 2 * c.ffn_dim;
  h.resize(size_t(n) * std::max(c.hidden, c.embed_dim));
  qkv.resize(size_t(n) * (c.q_dim() + 2 * c.kv_dim()));
  att.resize(size_t(n) * c.q_dim());
  ffn.resize(size_t(n) * ffn_w);
  if (c.arch == Arch::Llama) ffn2.resize(size_t(n) * c.ffn_dim);
  capacity = n;
}

Engine::Engine(const Model& m) : m_(m) {}

// RoPE's cos/sin rows are made as far as the batches reach, doubling, not for the whole context at
// construction: a config may claim 16M positions (64 GiB of rows at head_dim 1024, and minutes of
// cos and sin), while a run reads a few hundred. Row p depends on p alone, so growing the table
// gives the same bits as making it whole.
void Engine::ensure_rope(const Batch& b) {
  const ModelConfig& c = m_.cfg;
  int64_t need = 0;
  for (int32_t p : b.pos) need = std::max<int64_t>(need, int64_t(p) + 1);
  ZO_CHECK(need <= c.max_pos, "position {} is beyond the model's context of {} positions", need - 1, c.max_pos);
  if (need <= rope_len_) return;
  const int n = int(std::min<int64_t>(c.max_pos, std::max<int64_t>({need, 2 * int64_t(rope_len_), 256})));
  rope_cos_.resize(size_t(n) * size_t(c.head_dim / 2));
  rope_sin_.resize(rope_cos_.size());
  rope_tables(rope_cos_.data(), rope_sin_.data(), n, c.head_dim, c.rope_theta);
  rope_len_ = n;
}

const float* Engine::global_f32(GlobalRole r) {
  const Param* p = m_.global(r);
  if (!p) return nullptr;
  if (!fill_)
    if (const float* f = m_.f32_ptr(*p)) return f;
  auto& buf = gbuf_[r];
  buf.resize(p->numel);
  if (fill_)
    (*fill_)(*p, 0, p->numel, buf.data());
  else
    m_.get_param(*p, buf.data());  // widened per call: masters may have changed since the last one
  return buf.data();
}

void Engine::embed(const Batch& b, float* x) {
  const ModelConfig& c = m_.cfg;
  const int N = b.n_tokens(), Ce = c.embed_dim, C = c.hidden;
  ws_.reserve(m_, N);
  const Param& E = *m_.global(kEmbed);
  for (int i = 0; i < N; i++) {
    int32_t id = b.ids[size_t(i)];
    ZO_CHECK(id >= 0 && id < c.vocab_size, "token id {} out of range [0, {})", id, c.vocab_size);
    ZO_CHECK(b.pos[size_t(i)] >= 0 && b.pos[size_t(i)] < c.max_pos, "position {} outside max_position_embeddings {}",
             b.pos[size_t(i)], c.max_pos);
  }
  // Rows of the embedding table, widened to f32 into x (or into h when project_in follows).
  float* dst = c.has_projection() ? ws_.h.data() : x;
#pragma omp parallel for schedule(static) if (size_t(N) * Ce > (size_t(1) << 16))
  for (int i = 0; i < N; i++) {
    size_t off = E.offset + size_t(b.ids[size_t(i)]) * Ce;
    if (fill_)
      (*fill_)(E, off - E.offset, size_t(Ce), dst + size_t(i) * Ce);
    else if (m_.storage == DType::F32)
      std::memcpy(dst + size_t(i) * Ce, static_cast<const float*>(m_.arena()) + off, sizeof(float) * Ce);
    else
      convert_to_f32(m_.storage, static_cast<const uint16_t*>(m_.arena()) + off, dst + size_t(i) * Ce, size_t(Ce));
  }
  if (c.arch != Arch::OPT) return;
  if (c.has_projection()) linear(x, dst, global_f32(kProjIn), nullptr, N, C, Ce);
  // Learned positions, with HF's offset of 2 rows.
  const Param& P = *m_.global(kPosEmbed);
#pragma omp parallel for schedule(static) if (size_t(N) * C > (size_t(1) << 16))
  for (int i = 0; i < N; i++) {
    size_t off = P.offset + size_t(b.pos[size_t(i)] + 2) * C;
    float* xr = x + size_t(i) * C;
    if (fill_) {
      thread_local std::vector<float> pr;
      pr.resize(size_t(C));
      (*fill_)(P, off - P.offset, size_t(C), pr.data());
      for (int j = 0; j < C; j++) xr[j] += pr[size_t(j)];
    } else if (m_.storage == DType::F32) {
      const float* pr = static_cast<const float*>(m_.arena()) + off;
      for (int j = 0; j < C; j++) xr[j] += pr[j];
    } else {
      const uint16_t* pr = static_cast<const uint16_t*>(m_.arena()) + off;
      for (int j = 0; j < C; j++) xr[j] += bf16_to_f32(pr[j]);
    }
  }
}

void Engine::block(int layer, const BlockView& w, const Batch& b, float* x, KVCache* cache) {
  const ModelConfig& c = m_.cfg;
  const int N = b.n_tokens(), Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim;
  const int ld = Q + 2 * KV;
  ws_.reserve(m_, N);
  float* qkv = ws_.qkv.data();
  float* att = ws_.att.data();

  qkv_project(w, b, x);
  const int S = b.n_seqs();
  std::vector<AttnArgs>& args = args_;  // reused: no allocation per block once sized
  args.resize(static_cast<size_t>(S));
  for (int s = 0; s < S; s++) {
    const int r0 = b.seq_start[size_t(s)], n = b.seq_len(s);
    AttnArgs& a = args[size_t(s)];
    a.out = att + size_t(r0) * Q;
    a.ldo = Q;
    a.q = qkv + size_t(r0) * ld;
    a.ldq = ld;
    a.n_q = n;
    a.n_heads = c.n_heads;
    a.n_kv_heads = c.n_kv_heads;
    a.head_dim = D;
    // HF OPT scales q after the bias; LLaMA scales the scores: both are 1/sqrt(D) on q.k.
    a.scale = 1.0f / std::sqrt(float(D));
    if (cache) {
      ZO_CHECK(s < cache->n_seqs, "batch has more sequences than the KV cache");
      const int past = cache->len[size_t(s)];
      ZO_CHECK(past + n <= cache->max_len, "KV cache full: {} + {} tokens > {}", past, n, cache->max_len);
      float* kc = cache->k_at(layer, s);
      float* vc = cache->v_at(layer, s);
      for (int i = 0; i < n; i++) {
        std::memcpy(kc + size_t(past + i) * KV, qkv + size_t(r0 + i) * ld + Q, sizeof(float) * KV);
        std::memcpy(vc + size_t(past + i) * KV, qkv + size_t(r0 + i) * ld + Q + KV, sizeof(float) * KV);
      }
      a.k = kc;
      a.v = vc;
      a.ldk = a.ldv = KV;
      a.n_kv = past + n;
      a.q_off = past;
    } else {
      a.k = qkv + size_t(r0) * ld + Q;
      a.v = qkv + size_t(r0) * ld + Q + KV;
      a.ldk = a.ldv = ld;
      a.n_kv = n;
      a.q_off = 0;
    }
  }
  attention(args.data(), S);
  attn_output_and_ffn(w, x, att, N);
}

// Norm (pre-LN OPT, LLaMA), the fused q|k|v projection and RoPE, for every row: ws_.qkv.
void Engine::qkv_project(const BlockView& w, const Batch& b, const float* x) {
  const ModelConfig& c = m_.cfg;
  const int N = b.n_tokens(), C = c.hidden, Q = c.q_dim(), D = c.head_dim;
  const int ld = Q + 2 * c.kv_dim();
  const bool opt = c.arch == Arch::OPT;
  float* h = ws_.h.data();
  const float* a_in = x;  // post-LN OPT feeds the raw residual stream
  if (opt && c.pre_ln) {
    layernorm(h, x, w[kLn1W], w[kLn1B], N, C, c.norm_eps);
    a_in = h;
  } else if (!opt) {
    rmsnorm(h, x, w[kLn1W], N, C, c.norm_eps);
    a_in = h;
  }
  // q, k, v weights (and biases) are adjacent in the arena: one GEMM, N = Q + 2 KV.
  linear(ws_.qkv.data(), a_in, w[kQW], w[kQB], N, ld, C);
  if (!opt) {
    ensure_rope(b);
    rope_apply(ws_.qkv.data(), N, ld, c.n_heads, D, b.pos.data(), rope_cos_.data(), rope_sin_.data());
    rope_apply(ws_.qkv.data() + Q, N, ld, c.n_kv_heads, D, b.pos.data(), rope_cos_.data(), rope_sin_.data());
  }
}

// x[M, C] += attn[M, Q] @ Wo^T (+ post-LN), then the feed-forward with its residual (+ post-LN).
void Engine::attn_output_and_ffn(const BlockView& w, float* x, const float* att, int M) {
  const ModelConfig& c = m_.cfg;
  const int C = c.hidden, Q = c.q_dim(), F = c.ffn_dim;
  const bool opt = c.arch == Arch::OPT;
  float* h = ws_.h.data();
  linear(x, att, w[kOW], w[kOB], M, C, Q, /*accumulate=*/true);
  if (opt && !c.pre_ln) layernorm(x, x, w[kLn1W], w[kLn1B], M, C, c.norm_eps);
  const float* f_in = x;
  if (opt && c.pre_ln) {
    layernorm(h, x, w[kLn2W], w[kLn2B], M, C, c.norm_eps);
    f_in = h;
  } else if (!opt) {
    rmsnorm(h, x, w[kLn2W], M, C, c.norm_eps);
    f_in = h;
  }
  if (opt) {
    linear(ws_.ffn.data(), f_in, w[kInW], w[kInB], M, F, C);
    relu_inplace(ws_.ffn.data(), size_t(M) * F);
    linear(x, ws_.ffn.data(), w[kOutW], w[kOutB], M, C, F, /*accumulate=*/true);
    if (!c.pre_ln) layernorm(x, x, w[kLn2W], w[kLn2B], M, C, c.norm_eps);
  } else {
    // gate and up weights (and biases) are adjacent: one GEMM gives [gate | up] per row.
    linear(ws_.ffn.data(), f_in, w[kInW], w[kInB], M, 2 * F, C);
    swiglu(ws_.ffn2.data(), ws_.ffn.data(), M, F);
    linear(x, ws_.ffn2.data(), w[kOutW], w[kOutB], M, C, F, /*accumulate=*/true);
  }
}

void Engine::block_rows(const BlockView& w, const Batch& b, float* x, const std::vector<int32_t>& keep_from) {
  const ModelConfig& c = m_.cfg;
  const int N = b.n_tokens(), C = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim;
  const int ld = Q + 2 * KV, S = b.n_seqs();
  ZO_CHECK(int(keep_from.size()) == S, "block_rows: {} keep_from entries for {} sequences", keep_from.size(), S);
  ws_.reserve(m_, N);
  // Kept rows, compacted: row r of xk is packed row rows[r] of x.
  std::vector<int32_t> rows, first(static_cast<size_t>(S) + 1);
  for (int s = 0; s < S; s++) {
    first[size_t(s)] = int32_t(rows.size());
    ZO_CHECK(keep_from[size_t(s)] >= 0 && keep_from[size_t(s)] <= b.seq_len(s), "block_rows: keep_from {} outside sequence {}",
             keep_from[size_t(s)], s);
    for (int t = keep_from[size_t(s)]; t < b.seq_len(s); t++) rows.push_back(b.seq_start[size_t(s)] + t);
  }
  first[size_t(S)] = int32_t(rows.size());
  const int R = int(rows.size());
  ws_.xk.resize(size_t(R) * C);
  float* qkv = ws_.qkv.data();
  float* att = ws_.att.data();  // [R, Q] used
  float* xk = ws_.xk.data();
  // Keys and values need every row: the same normalisation and fused projection as block().
  qkv_project(w, b, x);
  // Queries of the kept rows (a suffix of each sequence) attend to the whole causal prefix.
  std::vector<AttnArgs>& args = args_;
  args.clear();
  for (int s = 0; s < S; s++) {
    const int n = first[size_t(s) + 1] - first[size_t(s)];
    if (n == 0) continue;
    const int r0 = b.seq_start[size_t(s)];
    AttnArgs a;
    a.out = att + size_t(first[size_t(s)]) * Q;
    a.ldo = Q;
    a.q = qkv + size_t(r0 + keep_from[size_t(s)]) * ld;
    a.ldq = ld;
    a.k = qkv + size_t(r0) * ld + Q;
    a.v = qkv + size_t(r0) * ld + Q + KV;
    a.ldk = a.ldv = ld;
    a.n_q = n;
    a.n_kv = b.seq_len(s);
    a.q_off = keep_from[size_t(s)];
    a.n_heads = c.n_heads;
    a.n_kv_heads = c.n_kv_heads;
    a.head_dim = D;
    a.scale = 1.0f / std::sqrt(float(D));
    args.push_back(a);
  }
  attention(args.data(), int(args.size()));
  for (int r = 0; r < R; r++) std::memcpy(xk + size_t(r) * C, x + size_t(rows[size_t(r)]) * C, sizeof(float) * C);
  attn_output_and_ffn(w, xk, att, R);
  for (int r = 0; r < R; r++) std::memcpy(x + size_t(rows[size_t(r)]) * C, xk + size_t(r) * C, sizeof(float) * C);
}

void Engine::forward(const Batch& b, KVCache* cache, const std::vector<int32_t>* keep_from) {
  const ModelConfig& c = m_.cfg;
  ZO_CHECK(!(cache && keep_from), "forward: keep_from cannot be combined with a KV cache");
  x_.resize(std::max(x_.size(), size_t(b.n_tokens()) * c.hidden));
  embed(b, x_.data());
  for (int l = 0; l < c.n_layers; l++) {
    m_.prefetch_block(l + 1);  // disk tier: read ahead (no-op in RAM)
    BlockView w = m_.block_view(l, ws_.wscratch.data());
    if (keep_from && l == c.n_layers - 1)
      block_rows(w, b, x_.data(), *keep_from);
    else
      block(l, w, b, x_.data(), cache);
    m_.release_block(l, false);
  }
  if (cache)
    for (int s = 0; s < b.n_seqs(); s++) cache->len[size_t(s)] += b.seq_len(s);
}

void Engine::final_hidden(const float* x, const int32_t* rows, int R, float* out) {
  const ModelConfig& c = m_.cfg;
  const int C = c.hidden;
  float* g = c.has_projection() ? ws_.head_h.data() + size_t(R) * c.embed_dim : out;
  for (int i = 0; i < R; i++) std::memcpy(g + size_t(i) * C, x + size_t(rows[i]) * C, sizeof(float) * C);
  if (c.final_norm) {
    if (c.arch == Arch::OPT)
      layernorm(g, g, global_f32(kFinalNormW), global_f32(kFinalNormB), R, C, c.norm_eps);
    else
      rmsnorm(g, g, global_f32(kFinalNormW), R, C, c.norm_eps);
  }
  if (c.has_projection()) linear(out, g, global_f32(kProjOut), nullptr, R, c.embed_dim, C);
}

const Param& Engine::head_weight() const {
  return m_.global(kLmHead) ? *m_.global(kLmHead) : *m_.global(kEmbed);  // tied: the embeddings
}

void Engine::head_rows(size_t v0, size_t nv, float* dst) {
  const Param& W = head_weight();
  const size_t Ce = size_t(m_.cfg.embed_dim), at = v0 * Ce;
  if (fill_)
    (*fill_)(W, at, nv * Ce, dst);
  else if (const float* f = m_.f32_ptr(W))
    std::memcpy(dst, f + at, sizeof(float) * nv * Ce);
  else
    convert_to_f32(m_.storage, static_cast<const uint16_t*>(m_.arena()) + W.offset + at, dst, nv * Ce);
}

void Engine::head_chunk(const float* hf, int R, float* logits) {
  const ModelConfig& c = m_.cfg;
  const int V = c.vocab_size, Ce = c.embed_dim;
  const float* f = fill_ ? nullptr : m_.f32_ptr(head_weight());
  if (f) {
    // logits[R, V] = hf[R, Ce] @ W[V, Ce]^T
    linear(logits, hf, f, nullptr, R, V, Ce);
    return;
  }
  // bf16 masters or a fill: widen (or perturb) the head a slab of vocabulary rows at a time, never all of it.
  constexpr int kSlab = 4096;
  ws_.gscratch.resize(size_t(kSlab) * Ce);
  std::vector<float>& tmp = head_tmp_;
  tmp.resize(size_t(R) * kSlab);
  for (int v0 = 0; v0 < V; v0 += kSlab) {
    int nv = std::min(kSlab, V - v0);
    head_rows(size_t(v0), size_t(nv), ws_.gscratch.data());
    linear(tmp.data(), hf, ws_.gscratch.data(), nullptr, R, nv, Ce);
    for (int r = 0; r < R; r++)
      std::memcpy(logits + size_t(r) * V + v0, tmp.data() + size_t(r) * nv, sizeof(float) * nv);
  }
}

std::vector<double> Engine::target_logprobs(const float* x, const std::vector<int32_t>& rows,
                                            const std::vector<int32_t>& ids) {
  ZO_CHECK(rows.size() == ids.size(), "target_logprobs: {} rows but {} ids", rows.size(), ids.size());
  const ModelConfig& c = m_.cfg;
  const int V = c.vocab_size;
  // Unique rows: the distribution at a row is computed once for all targets that share it.
  std::vector<int32_t> uniq(rows);
  std::sort(uniq.begin(), uniq.end());
  uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
  std::vector<double> out(rows.size());
  constexpr int kChunk = 128;  // rows per head GEMM: bounds the logits buffer to kChunk x V
  const int n_uniq = int(uniq.size());
  std::vector<double> lse(kChunk);
  for (int r0 = 0; r0 < n_uniq; r0 += kChunk) {
    int R = std::min(kChunk, n_uniq - r0);
    ws_.head_h.resize(size_t(R) * (c.hidden + c.embed_dim));
    ws_.head_logits.resize(size_t(R) * V);
    final_hidden(x, uniq.data() + r0, R, ws_.head_h.data());
    head_chunk(ws_.head_h.data(), R, ws_.head_logits.data());
    logsumexp_rows(lse.data(), ws_.head_logits.data(), R, V);
    for (size_t i = 0; i < rows.size(); i++) {
      auto it = std::lower_bound(uniq.begin() + r0, uniq.begin() + r0 + R, rows[i]);
      if (it == uniq.begin() + r0 + R || *it != rows[i]) continue;
      int r = int(it - (uniq.begin() + r0));
      ZO_CHECK(ids[i] >= 0 && ids[i] < V, "target id {} out of range [0, {})", ids[i], V);
      out[i] = double(ws_.head_logits[size_t(r) * V + size_t(ids[i])]) - lse[size_t(r)];
    }
  }
  return out;
}

std::vector<double> Engine::target_logits(const float* x, const std::vector<int32_t>& rows,
                                          const std::vector<int32_t>& ids) {
  ZO_CHECK(rows.size() == ids.size(), "target_logits: {} rows but {} ids", rows.size(), ids.size());
  const ModelConfig& c = m_.cfg;
  const int V = c.vocab_size, Ce = c.embed_dim;
  for (int32_t id : ids) ZO_CHECK(id >= 0 && id < V, "target id {} out of range [0, {})", id, V);
  std::vector<int32_t> urow(rows), uid(ids);
  std::sort(urow.begin(), urow.end());
  urow.erase(std::unique(urow.begin(), urow.end()), urow.end());
  std::sort(uid.begin(), uid.end());
  uid.erase(std::unique(uid.begin(), uid.end()), uid.end());
  // The head rows of the ids, once each: [uid.size(), Ce].
  std::vector<float>& hw = ws_.gscratch;
  hw.resize(uid.size() * size_t(Ce));
  for (size_t u = 0; u < uid.size(); u++) head_rows(size_t(uid[u]), 1, hw.data() + u * Ce);
  std::vector<double> out(rows.size());
  constexpr int kChunk = 128;
  const int n = int(urow.size());
  for (int r0 = 0; r0 < n; r0 += kChunk) {
    const int R = std::min(kChunk, n - r0);
    ws_.head_h.resize(size_t(R) * (c.hidden + c.embed_dim));
    final_hidden(x, urow.data() + r0, R, ws_.head_h.data());
    for (size_t i = 0; i < rows.size(); i++) {
      auto it = std::lower_bound(urow.begin() + r0, urow.begin() + r0 + R, rows[i]);
      if (it == urow.begin() + r0 + R || *it != rows[i]) continue;
      const float* h = ws_.head_h.data() + size_t(it - (urow.begin() + r0)) * Ce;
      const float* w = hw.data() + size_t(std::lower_bound(uid.begin(), uid.end(), ids[i]) - uid.begin()) * Ce;
      double acc = 0;  // in double: one dot product per target, so its cost does not matter
      for (int k = 0; k < Ce; k++) acc += double(h[k]) * double(w[k]);
      out[i] = acc;
    }
  }
  return out;
}

void Engine::logits(const float* x, const std::vector<int32_t>& rows, float* out) {
  const ModelConfig& c = m_.cfg;
  constexpr int kChunk = 256;
  const int n = int(rows.size());
  for (int r0 = 0; r0 < n; r0 += kChunk) {
    int R = std::min(kChunk, n - r0);
    ws_.head_h.resize(size_t(R) * (c.hidden + c.embed_dim));
    final_hidden(x, rows.data() + r0, R, ws_.head_h.data());
    head_chunk(ws_.head_h.data(), R, out + size_t(r0) * c.vocab_size);
  }
}

std::vector<int32_t> generate(Engine& e, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                              const std::function<void(int32_t)>& on_token) {
  const ModelConfig& c = e.model().cfg;
  ZO_CHECK(!prompt.empty(), "generate: empty prompt");
  ZO_CHECK(o.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  int total = int(prompt.size()) + o.max_new_tokens;
  ZO_CHECK(total <= c.max_pos, "prompt ({} tokens) + max_new_tokens ({}) exceeds the context of {} positions",
           prompt.size(), o.max_new_tokens, c.max_pos);
  KVCache cache;
  cache.init(c, 1, total);
  std::vector<int32_t> out;
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  std::mt19937_64 rng(o.seed);
  Batch b = Batch::from_sequences({prompt});
  for (int step = 0; step < o.max_new_tokens; step++) {
    e.forward(b, &cache);
    e.logits(e.hidden(), {b.n_tokens() - 1}, logits.data());
    int32_t next;
    if (o.temperature <= 0.0f) {
      next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    } else {
      // Softmax(logits / T) over the top_k (or all) candidates, sampled by inverse CDF.
      std::vector<int32_t> idx(static_cast<size_t>(c.vocab_size));
      for (int i = 0; i < c.vocab_size; i++) idx[size_t(i)] = i;
      int k = o.top_k > 0 ? std::min(o.top_k, c.vocab_size) : c.vocab_size;
      if (k < c.vocab_size)
        std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                          [&](int a, int bb) { return logits[size_t(a)] > logits[size_t(bb)]; });
      float mx = -INFINITY;
      for (int i = 0; i < k; i++) mx = std::max(mx, logits[size_t(idx[size_t(i)])]);
      std::vector<double> p(static_cast<size_t>(k));
      double sum = 0;
      for (int i = 0; i < k; i++) sum += p[size_t(i)] = std::exp(double(logits[size_t(idx[size_t(i)])] - mx) / o.temperature);
      double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
      int pick = k - 1;
      for (int i = 0; i < k; i++) {
        u -= p[size_t(i)];
        if (u <= 0) {
          pick = i;
          break;
        }
      }
      next = idx[size_t(pick)];
    }
    out.push_back(next);
    if (on_token) on_token(next);
    if (next == o.stop_id) break;
    b.ids = {next};
    b.pos = {cache.len[0]};
    b.seq_start = {0, 1};
  }
  return out;
}

}  // namespace zo
