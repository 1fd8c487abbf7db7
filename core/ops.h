// CPU kernels: plain functions, output first, shapes in the comments. Row-major throughout.
// These are the reference implementations every other backend is checked against.
#pragma once
#include <cstddef>
#include <cstdint>

namespace zo {

// y[M,N] = x[M,K] @ W[N,K]^T (+ b[N]) (+ y if accumulate). W is a PyTorch nn.Linear weight.
// OpenBLAS sgemm; multithreaded when called outside a parallel region.
void linear(float* y, const float* x, const float* W, const float* b, int M, int N, int K,
            bool accumulate = false);

// out[M,C] = LayerNorm(x[M,C]) * w + b   (torch.nn.LayerNorm: biased variance, eps inside sqrt)
void layernorm(float* out, const float* x, const float* w, const float* b, int M, int C, float eps);
// out[M,C] = x * rsqrt(mean(x^2) + eps) * w   (HF LlamaRMSNorm, f32)
void rmsnorm(float* out, const float* x, const float* w, int M, int C, float eps);

void relu_inplace(float* x, size_t n);
// gu[M, 2F] holds [gate | up] per row; out[M,F] = silu(gate) * up.
void swiglu(float* out, const float* gu, int M, int F);
// x[i] += y[i]
void add_inplace(float* x, const float* y, size_t n);

// RoPE tables in HF's layout: cos/sin[pos, D/2] with inv_freq = theta^(-2i/D) computed in f32 as torch.
void rope_tables(float* cos_t, float* sin_t, int max_pos, int head_dim, float theta);
// Rotate n_heads heads of head_dim in each of the M rows of x (row stride ld floats), HF half-split
// layout: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) with x1 = x[:D/2], x2 = x[D/2:].
void rope_apply(float* x, int M, int ld, int n_heads, int head_dim, const int32_t* pos,
                const float* cos_t, const float* sin_t);

// Causal attention for one sequence, all heads, tiled over queries so that at most a
// (tile x n_kv) score block per thread exists: never a T x T (let alone B x H x T x T) buffer.
//   q: [n_q rows, stride ldq], head h at q + h*D
//   k, v: [n_kv rows, stride ldk / ldv], kv head g at k + g*D (GQA: head h uses g = h / (H/Hkv))
//   out: [n_q rows, stride ldo], head h at out + h*D
// Query i sits at kv position q_off + i and sees kv rows 0..q_off+i. scale multiplies q.k.
struct AttnArgs {
  float* out; int ldo;
  const float* q; int ldq;
  const float* k; int ldk;
  const float* v; int ldv;
  int n_q, n_kv, q_off;
  int n_heads, n_kv_heads, head_dim;
  float scale;
};
// Runs a batch of sequences; parallel over (sequence, head, query tile).
void attention(const AttnArgs* seqs, int n_seqs);

// Per row r of logits[M,V]: lse[r] = logsumexp(row), computed in f64 accumulation.
void logsumexp_rows(double* lse, const float* logits, int M, int V);

}  // namespace zo
