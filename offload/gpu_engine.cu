#include "offload/gpu_engine.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "core/cuda/check.h"
#include "core/cuda/perturb.h"

namespace zo {

namespace {
template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  void reserve(size_t want) {
    if (want <= n) return;
    if (p) cudaFree(p);
    ZO_CUDA_CHECK(cudaMalloc(&p, sizeof(T) * want));
    n = want;
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
};
}  // namespace

struct GpuEngine::Impl {
  const Model& m;
  cuda::GemmMode mode;
  cudaStream_t st = nullptr;
  void* blas = nullptr;
  DevBuf<float> w;                                    // all weights, arena layout, f32
  DevBuf<float> rope_cos, rope_sin;
  DevBuf<float> x, h, qkv, att, ffn, ffn2, hf, logits;
  DevBuf<int32_t> ids, pos, rows;
  DevBuf<double> lse;

  Impl(const Model& model, cuda::GemmMode md) : m(model), mode(md) {
    ZO_CHECK(cuda::device_count() > 0, "GpuEngine: no CUDA device");
    ZO_CUDA_CHECK(cudaStreamCreate(&st));
    blas = cuda::cublas_create(st);
    w.reserve(m.numel());
    // Upload block by block through one f32 staging buffer (bf16 masters are widened on the way).
    std::vector<float> stage;
    for (const Param& p : m.params) {
      stage.resize(p.numel);
      m.get_param(p, stage.data());
      ZO_CUDA_CHECK(cudaMemcpy(w.p + p.offset, stage.data(), sizeof(float) * p.numel, cudaMemcpyHostToDevice));
    }
    const ModelConfig& c = m.cfg;
    if (c.arch == Arch::Llama) {
      std::vector<float> cs(size_t(c.max_pos) * c.head_dim / 2), sn(cs.size());
      rope_tables(cs.data(), sn.data(), c.max_pos, c.head_dim, c.rope_theta);
      rope_cos.reserve(cs.size());
      rope_sin.reserve(sn.size());
      ZO_CUDA_CHECK(cudaMemcpy(rope_cos.p, cs.data(), sizeof(float) * cs.size(), cudaMemcpyHostToDevice));
      ZO_CUDA_CHECK(cudaMemcpy(rope_sin.p, sn.data(), sizeof(float) * sn.size(), cudaMemcpyHostToDevice));
    }
  }
  ~Impl() {
    if (blas) cuda::cublas_destroy(blas);
    if (st) cudaStreamDestroy(st);
  }

  const float* global(GlobalRole r) const {
    const Param* p = m.global(r);
    return p ? w.p + p->offset : nullptr;
  }
  void linear(float* y, const float* xin, const float* W, const float* b, int M, int N, int K, bool acc = false) {
    cuda::linear(blas, y, xin, W, b, M, N, K, acc, mode, st);
  }

  void embed(const Batch& b) {
    const ModelConfig& c = m.cfg;
    const int N = b.n_tokens(), C = c.hidden, Ce = c.embed_dim;
    float* dst = c.has_projection() ? h.p : x.p;
    cuda::embed_rows(dst, global(kEmbed), ids.p, N, Ce, st);
    if (c.arch != Arch::OPT) return;
    if (c.has_projection()) linear(x.p, dst, global(kProjIn), nullptr, N, C, Ce);
    // Learned positions (HF's offset of 2 rows): gather rows pos + 2, then add.
    std::vector<int32_t> p2(b.pos);
    for (auto& v : p2) v += 2;
    ZO_CUDA_CHECK(cudaMemcpyAsync(rows.p, p2.data(), sizeof(int32_t) * p2.size(), cudaMemcpyHostToDevice, st));
    cuda::embed_rows(h.p, global(kPosEmbed), rows.p, N, C, st);
    cuda::add_inplace(x.p, h.p, size_t(N) * C, st);
  }

  void block(int l, const Batch& b) {
    const ModelConfig& c = m.cfg;
    const int N = b.n_tokens(), C = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim, F = c.ffn_dim;
    const int ld = Q + 2 * KV;
    const bool opt = c.arch == Arch::OPT;
    BlockView v = m.block_view_at(l, w.p + m.block_begin(l));
    const float* a_in = x.p;
    if (opt && c.pre_ln) {
      cuda::layernorm(h.p, x.p, v[kLn1W], v[kLn1B], N, C, c.norm_eps, st);
      a_in = h.p;
    } else if (!opt) {
      cuda::rmsnorm(h.p, x.p, v[kLn1W], N, C, c.norm_eps, st);
      a_in = h.p;
    }
    linear(qkv.p, a_in, v[kQW], v[kQB], N, ld, C);
    if (!opt) {
      cuda::rope_apply(qkv.p, N, ld, c.n_heads, D, pos.p, rope_cos.p, rope_sin.p, st);
      cuda::rope_apply(qkv.p + Q, N, ld, c.n_kv_heads, D, pos.p, rope_cos.p, rope_sin.p, st);
    }
    std::vector<AttnArgs> args(size_t(b.n_seqs()));
    for (int s = 0; s < b.n_seqs(); s++) {
      const int r0 = b.seq_start[size_t(s)], n = b.seq_len(s);
      args[size_t(s)] = AttnArgs{att.p + size_t(r0) * Q, Q, qkv.p + size_t(r0) * ld, ld, qkv.p + size_t(r0) * ld + Q, ld,
                                 qkv.p + size_t(r0) * ld + Q + KV, ld, n, n, 0, c.n_heads, c.n_kv_heads, D,
                                 1.0f / std::sqrt(float(D))};
    }
    cuda::attention(args.data(), int(args.size()), st);
    linear(x.p, att.p, v[kOW], v[kOB], N, C, Q, true);
    if (opt && !c.pre_ln) cuda::layernorm(x.p, x.p, v[kLn1W], v[kLn1B], N, C, c.norm_eps, st);
    const float* f_in = x.p;
    if (opt && c.pre_ln) {
      cuda::layernorm(h.p, x.p, v[kLn2W], v[kLn2B], N, C, c.norm_eps, st);
      f_in = h.p;
    } else if (!opt) {
      cuda::rmsnorm(h.p, x.p, v[kLn2W], N, C, c.norm_eps, st);
      f_in = h.p;
    }
    if (opt) {
      linear(ffn.p, f_in, v[kInW], v[kInB], N, F, C);
      cuda::relu_inplace(ffn.p, size_t(N) * F, st);
      linear(x.p, ffn.p, v[kOutW], v[kOutB], N, C, F, true);
      if (!c.pre_ln) cuda::layernorm(x.p, x.p, v[kLn2W], v[kLn2B], N, C, c.norm_eps, st);
    } else {
      linear(ffn.p, f_in, v[kInW], v[kInB], N, 2 * F, C);
      cuda::swiglu(ffn2.p, ffn.p, N, F, st);
      linear(x.p, ffn2.p, v[kOutW], v[kOutB], N, C, F, true);
    }
  }
};

GpuEngine::GpuEngine(const Model& m, cuda::GemmMode mode) : p_(std::make_unique<Impl>(m, mode)) {}
GpuEngine::~GpuEngine() = default;

float* GpuEngine::block_weights(int l) { return p_->w.p + p_->m.block_begin(l); }
size_t GpuEngine::device_bytes() const {
  const Impl& I = *p_;
  return sizeof(float) * (I.w.n + I.x.n + I.h.n + I.qkv.n + I.att.n + I.ffn.n + I.ffn2.n + I.hf.n + I.logits.n);
}

std::vector<double> GpuEngine::target_logprobs(const Batch& b, const std::vector<int32_t>& rows,
                                               const std::vector<int32_t>& ids) {
  ZO_CHECK(rows.size() == ids.size(), "target_logprobs: {} rows but {} ids", rows.size(), ids.size());
  Impl& I = *p_;
  const ModelConfig& c = I.m.cfg;
  const int N = b.n_tokens(), C = c.hidden, Ce = c.embed_dim, V = c.vocab_size;
  for (int32_t id : b.ids) ZO_CHECK(id >= 0 && id < V, "token id {} out of range [0, {})", id, V);
  const size_t wide = size_t(std::max(C, Ce));
  I.x.reserve(size_t(N) * wide);
  I.h.reserve(size_t(N) * wide);
  I.qkv.reserve(size_t(N) * (c.q_dim() + 2 * c.kv_dim()));
  I.att.reserve(size_t(N) * c.q_dim());
  I.ffn.reserve(size_t(N) * 2 * c.ffn_dim);
  I.ffn2.reserve(size_t(N) * c.ffn_dim);
  I.ids.reserve(size_t(N));
  I.pos.reserve(size_t(N));
  I.rows.reserve(std::max<size_t>(size_t(N), rows.size()));
  ZO_CUDA_CHECK(cudaMemcpyAsync(I.ids.p, b.ids.data(), sizeof(int32_t) * size_t(N), cudaMemcpyHostToDevice, I.st));
  ZO_CUDA_CHECK(cudaMemcpyAsync(I.pos.p, b.pos.data(), sizeof(int32_t) * size_t(N), cudaMemcpyHostToDevice, I.st));
  I.embed(b);
  for (int l = 0; l < c.n_layers; l++) I.block(l, b);
  // Head: gather the rows, final norm, project_out, logits in chunks of 128 rows.
  std::vector<int32_t> uniq(rows);
  std::sort(uniq.begin(), uniq.end());
  uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
  std::vector<double> out(rows.size());
  constexpr int kChunk = 128;
  I.hf.reserve(size_t(kChunk) * (wide + size_t(Ce)));
  I.logits.reserve(size_t(kChunk) * V);
  I.lse.reserve(kChunk);
  std::vector<float> host_logits;
  std::vector<double> host_lse(kChunk);
  const float* head = I.global(kLmHead) ? I.global(kLmHead) : I.global(kEmbed);
  for (size_t r0 = 0; r0 < uniq.size(); r0 += kChunk) {
    const int R = int(std::min<size_t>(kChunk, uniq.size() - r0));
    ZO_CUDA_CHECK(cudaMemcpyAsync(I.rows.p, uniq.data() + r0, sizeof(int32_t) * size_t(R), cudaMemcpyHostToDevice, I.st));
    float* g = I.hf.p;
    cuda::embed_rows(g, I.x.p, I.rows.p, R, C, I.st);  // a row gather
    if (c.final_norm) {
      if (c.arch == Arch::OPT)
        cuda::layernorm(g, g, I.global(kFinalNormW), I.global(kFinalNormB), R, C, c.norm_eps, I.st);
      else
        cuda::rmsnorm(g, g, I.global(kFinalNormW), R, C, c.norm_eps, I.st);
    }
    const float* hf = g;
    if (c.has_projection()) {
      I.linear(g + size_t(R) * wide, g, I.global(kProjOut), nullptr, R, Ce, C);
      hf = g + size_t(R) * wide;
    }
    I.linear(I.logits.p, hf, head, nullptr, R, V, Ce);
    cuda::logsumexp_rows(I.lse.p, I.logits.p, R, V, I.st);
    host_logits.resize(size_t(R) * V);
    ZO_CUDA_CHECK(cudaMemcpyAsync(host_logits.data(), I.logits.p, sizeof(float) * host_logits.size(),
                                  cudaMemcpyDeviceToHost, I.st));
    ZO_CUDA_CHECK(cudaMemcpyAsync(host_lse.data(), I.lse.p, sizeof(double) * size_t(R), cudaMemcpyDeviceToHost, I.st));
    ZO_CUDA_CHECK(cudaStreamSynchronize(I.st));
    for (size_t i = 0; i < rows.size(); i++) {
      auto it = std::lower_bound(uniq.begin() + long(r0), uniq.begin() + long(r0) + R, rows[i]);
      if (it == uniq.begin() + long(r0) + R || *it != rows[i]) continue;
      const size_t r = size_t(it - (uniq.begin() + long(r0)));
      ZO_CHECK(ids[i] >= 0 && ids[i] < V, "target id {} out of range [0, {})", ids[i], V);
      out[i] = double(host_logits[r * size_t(V) + size_t(ids[i])]) - host_lse[r];
    }
  }
  return out;
}

}  // namespace zo
