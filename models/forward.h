// The forward pass, block by block.
//
//   x = embed(ids)                        [N, C]   N = all tokens of the batch, packed
//   for l in blocks: x = block(W_l, x)    each block is a function of (its weights, x): a caller may
//                                         push several weight versions (W + eps z, W - eps z) or
//                                         stream blocks from elsewhere
//   head(x[rows]) -> log-probs of targets, candidate scores, or full logits, ONLY at the rows asked
//
// Sequences are packed without padding (cu_seqlens style): padding costs no FLOPs. A padded batch
// with an attention mask converts to this form with Batch::from_padded.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "models/model.h"

namespace zo {

struct Batch {
  std::vector<int32_t> ids;        // [N] tokens, sequences back to back
  std::vector<int32_t> pos;        // [N] position of each token in its sequence
  std::vector<int32_t> seq_start;  // [S+1] first packed row of each sequence; seq_start[S] == N

  int n_tokens() const { return int(ids.size()); }
  int n_seqs() const { return int(seq_start.size()) - 1; }
  int seq_len(int s) const { return seq_start[size_t(s) + 1] - seq_start[size_t(s)]; }
  static Batch from_sequences(const std::vector<std::vector<int32_t>>& seqs);
  // ids/mask [B, T] row-major; each row's mask must be one contiguous run of ones (left or right
  // padding). Positions count from 0 at the first real token, as HF OPT derives them from the mask.
  // row_of[b*T + t] receives the packed row of (b, t), or -1 for padding (optional).
  static Batch from_padded(const int64_t* ids, const int64_t* mask, int B, int T, std::vector<int32_t>* row_of);
};

// Keys and values of past tokens for incremental decoding. [layer][seq][max_len][kv_dim]
struct KVCache {
  int n_layers = 0, n_seqs = 0, max_len = 0, kv_dim = 0;
  std::vector<float> k, v;
  std::vector<int32_t> len;  // tokens cached per sequence (advanced after the last layer)
  void init(const ModelConfig& c, int n_seqs, int max_len);
  float* k_at(int layer, int s) { return k.data() + (size_t(layer) * n_seqs + size_t(s)) * max_len * kv_dim; }
  float* v_at(int layer, int s) { return v.data() + (size_t(layer) * n_seqs + size_t(s)) * max_len * kv_dim; }
};

// Activations and scratch, sized up front for a number of tokens (grown, never per block).
struct Workspace {
  std::vector<float> h, qkv, att, ffn, ffn2;  // [N, C], [N, Q+2KV], [N, Q], [N, F or 2F], [N, F]
  std::vector<float> wscratch;                // one block's weights in f32 (bf16 storage)
  std::vector<float> head_h, head_logits;     // final hidden / logits of a chunk of head rows
  std::vector<float> gscratch;                // a global weight in f32 (bf16 storage)
  std::vector<float> xk;                      // kept rows of the last block: [R, C]
  int capacity = 0;
  void reserve(const Model& m, int n_tokens);
};

// Fills dst[0, n) with elements begin .. begin + n - 1 of global parameter p as f32: the way a
// trainer hands the engine a perturbed version of the globals (W + eps z made on the fly, row by
// row for embeddings, slab by slab for the head) without a copy of the whole table.
using GlobalFill = std::function<void(const Param& p, size_t begin, size_t n, float* dst)>;

class Engine {
 public:
  explicit Engine(const Model& m);
  const Model& model() const { return m_; }

  // x[N, C] = token (and, for OPT, position) embeddings, after project_in.
  void embed(const Batch& b, float* x);
  // x[N, C] <- block(w, x), in place. With a cache, new keys/values are appended for `layer` and
  // queries attend to the cached prefix (cache->len is advanced by the caller after the last layer).
  void block(int layer, const BlockView& w, const Batch& b, float* x, KVCache* cache = nullptr);
  // The last block when only the rows keep_from[s].. of each sequence s feed a head: keys and
  // values are computed for every row, queries, the attention output projection and the
  // feed-forward only for the kept rows (other rows of x are left stale). Scoring one row per
  // sequence skips ~2/3 of the last block's work. No KV cache.
  void block_rows(const BlockView& w, const Batch& b, float* x, const std::vector<int32_t>& keep_from);
  // Runs embed and every block with the master weights. Leaves the result in hidden(). With
  // keep_from (first needed row of each sequence, relative to its start), only those rows of
  // hidden() are valid afterwards.
  void forward(const Batch& b, KVCache* cache = nullptr, const std::vector<int32_t>* keep_from = nullptr);
  float* hidden() { return x_.data(); }

  // log p(ids[i] | rows[i]) where rows are packed rows of x[N, C]; the next-token distribution at
  // a row is computed once however many targets share it. Only these rows reach the vocabulary.
  std::vector<double> target_logprobs(const float* x, const std::vector<int32_t>& rows,
                                      const std::vector<int32_t>& ids);
  // The logit of ids[i] at rows[i], not normalized: no log-sum-exp over the vocabulary, and only the
  // head rows of the ids are read (made, under a fill: a perturbed head costs Ce values per id, not
  // V x Ce). For a loss that a constant added to all of one row's values leaves unchanged (MeZO's
  // cross-entropy over single-token candidates read at one row), it replaces target_logprobs.
  std::vector<double> target_logits(const float* x, const std::vector<int32_t>& rows,
                                    const std::vector<int32_t>& ids);
  // Full logits [rows.size(), V] at the given rows.
  void logits(const float* x, const std::vector<int32_t>& rows, float* out);

  // The global weights embed() and the heads read: the masters (nullptr, the default) or `fill`.
  // The engine keeps the pointer; the caller keeps the function alive while it is set.
  void set_global_fill(const GlobalFill* fill) { fill_ = fill; }

  Workspace& workspace() { return ws_; }

 private:
  void qkv_project(const BlockView& w, const Batch& b, const float* x);        // -> ws_.qkv
  void attn_output_and_ffn(const BlockView& w, float* x, const float* att, int M);
  void final_hidden(const float* x, const int32_t* rows, int R, float* out);  // out[R, Ce]
  void head_chunk(const float* hf, int R, float* logits);                     // logits[R, V]
  const Param& head_weight() const;                                            // lm_head, or the tied embeddings
  void head_rows(size_t v0, size_t nv, float* dst);  // head rows v0 .. v0+nv-1 in f32 (filled, copied or widened)
  const float* global_f32(GlobalRole r);                                       // f32 view of a global

  const Model& m_;
  Workspace ws_;
  std::vector<float> x_;
  std::vector<float> rope_cos_, rope_sin_;    // RoPE rows for positions 0 .. rope_len_ - 1
  int rope_len_ = 0;
  void ensure_rope(const Batch& b);           // rows up to b's largest position (doubling)
  std::vector<float> gbuf_[kNumGlobalRoles];  // bf16 storage: small globals, widened per use
  std::vector<AttnArgs> args_;                // per-sequence attention arguments, reused
  std::vector<float> head_tmp_;               // bf16 head: one vocabulary slab of logits
  const GlobalFill* fill_ = nullptr;
};

struct GenerateOptions {
  int max_new_tokens = 32;
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: whole vocabulary
  uint64_t seed = 0;
  int stop_id = -1;          // stop after emitting this id (e.g. EOS); -1: never
};
// Generates up to max_new_tokens after `prompt` with a KV cache. on_token (optional) sees each id.
std::vector<int32_t> generate(Engine& e, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace zo
