// Device mirrors of core/ops.h (the CPU reference): same arguments, device pointers, plus a stream
// (cudaStream_t as void*). Launch failures throw zo::Error naming the kernel. Tested against the
// CPU kernels by tests/test_cuda_ops.cpp on a GPU.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/ops.h"

namespace zo::cuda {

// How cuBLAS multiplies f32 operands: exact f32, TF32 tensor cores, or BF16 tensor cores (inputs
// rounded to bf16, f32 accumulation).
enum class GemmMode { F32, TF32, BF16 };

// y[M,N] = x[M,K] @ W[N,K]^T (+ b[N]) (+ y if accumulate), through cuBLAS. handle: cublasHandle_t.
void linear(void* handle, float* y, const float* x, const float* W, const float* b, int M, int N, int K,
            bool accumulate, GemmMode mode, void* stream);
void* cublas_create(void* stream);  // a cuBLAS handle bound to the stream
void cublas_destroy(void* handle);

void layernorm(float* out, const float* x, const float* w, const float* b, int M, int C, float eps, void* stream);
void rmsnorm(float* out, const float* x, const float* w, int M, int C, float eps, void* stream);
void relu_inplace(float* x, size_t n, void* stream);
void swiglu(float* out, const float* gu, int M, int F, void* stream);
void add_inplace(float* x, const float* y, size_t n, void* stream);
void rope_apply(float* x, int M, int ld, int n_heads, int head_dim, const int32_t* pos, const float* cos_t,
                const float* sin_t, void* stream);
// out[i, :] = table[ids[i], :] for i < N (row width C).
void embed_rows(float* out, const float* table, const int32_t* ids, int N, int C, void* stream);
// Causal attention for a batch of sequences; `seqs` is a HOST array whose pointers are device
// pointers, copied into `dev_args` (device memory for n_seqs AttnArgs, owned by the caller so that
// nothing is allocated per call). Key/value tiles staged in shared memory, each warp scoring a key
// tile against four query rows at once, an online softmax: no score matrix.
void attention(const AttnArgs* seqs, int n_seqs, AttnArgs* dev_args, void* stream);
// How attention moves key/value tiles from global to shared memory (the same results, to rounding
// of nothing: only the loads differ): element by element; float4 rows, two per thread in flight; or
// float4 rows with the next tile prefetched into registers during the current tile's compute. The
// float4 paths need head_dim % 4 == 0 and 16-byte aligned rows, and fall back to the first
// otherwise. Process-wide, float4 by default (the fastest on an H100); bench/gpu_probe.cu times
// each on OPT-13B's shapes.
enum class AttnTileLoad : int { Scalar = 0, Float4 = 1, Float4Prefetch = 2 };
void set_attention_tile_load(AttnTileLoad t);
AttnTileLoad attention_tile_load();
// The path the last attention() call launched (the element path where alignment ruled float4 out).
AttnTileLoad attention_last_tile_load();
const char* attention_tile_load_name(AttnTileLoad t);
// lse[r] = logsumexp(logits[r, :V]) accumulated in f64 (as the CPU).
void logsumexp_rows(double* lse, const float* logits, int M, int V, void* stream);
// out[i] = double(logits[row[i], id[i]]) - lse[row[i]] for i < n (the targets' log-probabilities,
// picked on the device: only n doubles travel back).
void pick_logprobs(double* out, const float* logits, const double* lse, const int32_t* row, const int32_t* id, int n,
                   int V, void* stream);

}  // namespace zo::cuda
