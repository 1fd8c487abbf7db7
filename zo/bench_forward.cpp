#include <cblas.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/dtype.h"
#include "core/error.h"
#include "core/perturb.h"
#include "models/forward.h"
#include "zo/bench.h"

namespace zo {

size_t peak_rss_bytes() {
  // VmHWM can be reset (clear_refs), ru_maxrss cannot: prefer it.
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return size_t(std::stoull(line.substr(6))) * 1024;
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return size_t(u.ru_maxrss) * 1024;
}

size_t current_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, rss = 0;
  f >> pages >> rss;
  return rss * size_t(sysconf(_SC_PAGESIZE));
}

ModelConfig shape_config(const std::string& name) {
  ModelConfig c;
  if (name == "opt-125m") {  // facebook/opt-125m
    c.arch = Arch::OPT;
    c.model_type = "opt";
    c.vocab_size = 50272, c.hidden = 768, c.n_layers = 12, c.n_heads = 12, c.n_kv_heads = 12, c.head_dim = 64;
    c.ffn_dim = 3072, c.max_pos = 2048, c.embed_dim = 768, c.ln_bias = true;
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    c.tie_embeddings = true;
  } else if (name == "smollm-135m") {  // HuggingFaceTB/SmolLM2-135M
    c.arch = Arch::Llama;
    c.model_type = "llama";
    c.vocab_size = 49152, c.hidden = 576, c.n_layers = 30, c.n_heads = 9, c.n_kv_heads = 3, c.head_dim = 64;
    c.ffn_dim = 1536, c.max_pos = 8192, c.embed_dim = 576, c.rope_theta = 100000.0f;
    c.tie_embeddings = true;
  } else if (name == "opt-1.3b" || name == "opt-2.7b" || name == "opt-6.7b" || name == "opt-13b" || name == "opt-30b" ||
             name == "opt-66b") {  // facebook/opt-*: the published configs (Zhang et al. 2022, table 1)
    struct S { const char* n; int hidden, layers, heads; };
    static const S kOpt[] = {{"opt-1.3b", 2048, 24, 32}, {"opt-2.7b", 2560, 32, 32}, {"opt-6.7b", 4096, 32, 32},
                             {"opt-13b", 5120, 40, 40},  {"opt-30b", 7168, 48, 56},  {"opt-66b", 9216, 64, 72}};
    for (const S& o : kOpt)
      if (name == o.n) {
        c.arch = Arch::OPT;
        c.model_type = "opt";
        c.vocab_size = 50272, c.hidden = o.hidden, c.n_layers = o.layers, c.n_heads = o.heads, c.n_kv_heads = o.heads;
        c.head_dim = o.hidden / o.heads, c.ffn_dim = 4 * o.hidden, c.max_pos = 2048, c.embed_dim = o.hidden;
        c.ln_bias = true;
        c.qkv_bias = c.o_bias = c.mlp_bias = true;
        c.tie_embeddings = true;
      }
  } else {
    fail("unknown model shape '{}' (known: opt-125m, smollm-135m, opt-1.3b, opt-2.7b, opt-6.7b, opt-13b, opt-30b, "
         "opt-66b)", name);
  }
  validate_config(c, name);
  return c;
}

// Random weights N(0, 0.02) (norm weights N(1, 0.02)), made by the Philox generator of core/perturb.h
// a slab at a time on every thread (no tensor-sized temporary: the bench measures RSS; billions of
// weights take seconds, not minutes).
void fill_random(Model& m, uint64_t seed) {
  constexpr size_t kSlab = size_t(1) << 16;
  for (const Param& p : m.params) {
    const bool norm = p.role == kLn1W || p.role == kLn2W || (p.block < 0 && p.role == kFinalNormW);
    const uint64_t tid = rng::fnv1a64(p.name.data(), p.name.size());
    const long slabs = long((p.numel + kSlab - 1) / kSlab);
#pragma omp parallel
    {
      std::vector<float> buf(kSlab);
#pragma omp for schedule(static)
      for (long s = 0; s < slabs; s++) {
        const size_t i = size_t(s) * kSlab, n = std::min(kSlab, p.numel - i);
        fill_z(buf.data(), seed, tid, i, n, Dist::Gaussian);
        for (size_t k = 0; k < n; k++) buf[k] = (norm ? 1.0f : 0.0f) + 0.02f * buf[k];
        m.write_f32(p.offset + i, buf.data(), n);
      }
    }
  }
}

// Reset the kernel's peak-RSS counter (VmHWM) so each measurement sees only its own peak.
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

template <typename F>
double median_time(int repeat, F&& f) {
  f();  // warm-up: first touch of pages, thread pools, caches
  std::vector<double> t;
  for (int i = 0; i < repeat; i++) {
    auto t0 = Clock::now();
    f();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Gemm {
  int M, N, K;
};

// The GEMMs of one block at n tokens (y = x W^T), as Engine::block issues them.
std::vector<Gemm> block_gemms(const ModelConfig& c, int n) {
  int ld = c.q_dim() + 2 * c.kv_dim();
  std::vector<Gemm> g = {{n, ld, c.hidden}, {n, c.hidden, c.q_dim()}};
  if (c.arch == Arch::OPT)
    g.insert(g.end(), {{n, c.ffn_dim, c.hidden}, {n, c.hidden, c.ffn_dim}});
  else
    g.insert(g.end(), {{n, 2 * c.ffn_dim, c.hidden}, {n, c.hidden, c.ffn_dim}});
  return g;
}

// sgemm rate on exactly these shapes, same threads, same library: the ceiling for the block GEMMs.
double sgemm_gflops(const std::vector<Gemm>& gs, int repeat) {
  double flops = 0, secs = 0;
  for (const Gemm& g : gs) {
    std::vector<float> A(size_t(g.M) * g.K, 0.5f), B(size_t(g.N) * g.K, 0.25f), C(size_t(g.M) * g.N);
    double t = median_time(repeat, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.M, g.N, g.K, 1.0f, A.data(), g.K, B.data(), g.K, 0.0f,
                  C.data(), g.N);
    });
    flops += 2.0 * g.M * g.N * g.K;
    secs += t;
  }
  return flops / secs / 1e9;
}

std::vector<std::pair<int, int>> parse_batches(const std::string& s) {
  std::vector<std::pair<int, int>> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int b = 0, t = 0;
    char x = 0;
    std::stringstream is(item);
    if (!(is >> b >> x >> t) || x != 'x' || b <= 0 || t <= 0 || b * long(t) > (1 << 22))
      fail("--batches: '{}' is not BxT (e.g. 16x64)", item);
    out.push_back({b, t});
  }
  ZO_CHECK(!out.empty(), "--batches: no batch given");
  return out;
}

}  // namespace

int bench_forward(const BenchForwardArgs& a) {
  DType storage = a.dtype == "bf16" ? DType::BF16 : DType::F32;
  ZO_CHECK(a.dtype == "f32" || a.dtype == "bf16", "--dtype must be f32 or bf16");
  auto batches = parse_batches(a.batches);
  nlohmann::json results = nlohmann::json::array();
  std::stringstream names(a.shapes);
  std::string shape;
  fmt::print("zo bench forward: {} threads, OpenBLAS {}, master dtype {}\n", openblas_get_num_threads(),
             openblas_get_config(), a.dtype);
  while (std::getline(names, shape, ',')) {
    ModelConfig c = shape_config(shape);
    Model m = Model::allocate(c, storage);
    fill_random(m, 1234);
    size_t weight_bytes = m.bytes();
    Engine e(m);
    for (auto [B, T] : batches) {
      ZO_CHECK(T <= c.max_pos, "T={} exceeds {}'s context {}", T, shape, c.max_pos);
      std::mt19937 rng(7);
      std::vector<std::vector<int32_t>> seqs(static_cast<size_t>(B), std::vector<int32_t>(static_cast<size_t>(T)));
      for (auto& s : seqs)
        for (auto& id : s) id = int32_t(rng() % uint32_t(c.vocab_size));
      Batch b = Batch::from_sequences(seqs);
      const int N = b.n_tokens();
      // Model FLOPs of the blocks: 2 per weight per token in the linears, plus causal attention
      // (q.k and p.v over the visible prefix: 2 * 2 * D * (i+1) per head per query i).
      double lin = 0;
      for (auto& g : block_gemms(c, N)) lin += 2.0 * g.M * g.N * g.K;
      double attn = 4.0 * c.n_heads * c.head_dim * B * (double(T) * (T + 1) / 2);
      double block_flops = (lin + attn) * c.n_layers;
      double head_flops_row = 2.0 * c.vocab_size * c.embed_dim;

      double t_blocks = median_time(a.repeat, [&] { e.forward(b); });
      // Candidate scoring: the blocks, then the vocabulary at one row per sequence (two candidates).
      // Only the last row of each sequence reaches the head, so the last block computes queries,
      // attention output and feed-forward for those rows alone (Engine::block_rows).
      std::vector<int32_t> rows, ids, keep;
      for (int s = 0; s < B; s++) {
        rows.insert(rows.end(), {b.seq_start[size_t(s) + 1] - 1, b.seq_start[size_t(s) + 1] - 1});
        ids.insert(ids.end(), {11, 22});
        keep.push_back(b.seq_len(s) - 1);
      }
      reset_peak_rss();
      double t_score = median_time(a.repeat, [&] {
        e.forward(b, nullptr, &keep);
        e.target_logprobs(e.hidden(), rows, ids);
      });
      size_t rss_score = peak_rss_bytes();
      std::vector<int32_t> all(static_cast<size_t>(N));
      for (int i = 0; i < N; i++) all[size_t(i)] = i;
      std::vector<float> logits(size_t(N) * c.vocab_size);
      double t_logits = median_time(a.repeat, [&] {
        e.forward(b);
        e.logits(e.hidden(), all, logits.data());
      });
      logits.clear();
      logits.shrink_to_fit();
      double gemm_rate = sgemm_gflops(block_gemms(c, N), a.repeat);
      double achieved = block_flops / t_blocks / 1e9;
      // One block's activations at this batch (what the forward keeps besides weights).
      int ffn_w = c.arch == Arch::OPT ? c.ffn_dim : 3 * c.ffn_dim;
      size_t act = size_t(N) * (2 * c.hidden + c.q_dim() + 2 * c.kv_dim() + c.q_dim() + ffn_w) * 4;
      nlohmann::json r;
      r["shape"] = shape;
      r["batch"] = B;
      r["seq"] = T;
      r["tokens"] = N;
      r["blocks_seconds"] = t_blocks;
      r["blocks_tokens_per_second"] = N / t_blocks;
      r["blocks_gflops"] = achieved;
      r["sgemm_gflops_same_shapes"] = gemm_rate;
      r["fraction_of_sgemm"] = achieved / gemm_rate;
      r["score_seconds"] = t_score;
      r["score_tokens_per_second"] = N / t_score;
      r["logits_seconds"] = t_logits;
      r["logits_tokens_per_second"] = N / t_logits;
      r["logits_gflops"] = (block_flops + head_flops_row * N) / t_logits / 1e9;
      r["weight_bytes"] = weight_bytes;
      r["block_activation_bytes"] = act;
      r["peak_rss_bytes_scoring"] = rss_score;
      // The target: stored weights + 10% + one block's activations.
      r["rss_limit_bytes"] = size_t(double(weight_bytes) * 1.1) + act;
      results.push_back(r);
      fmt::print("{:12} {:>3}x{:<4} blocks {:8.0f} tok/s {:6.1f} GFLOP/s = {:4.0f}% of sgemm {:6.1f} | score {:8.0f} tok/s | "
                 "full logits {:8.0f} tok/s | peak RSS {:.0f} MiB (weights {:.0f} MiB, limit {:.0f} MiB)\n",
                 shape, B, T, N / t_blocks, achieved, 100 * achieved / gemm_rate, gemm_rate, N / t_score, N / t_logits,
                 double(rss_score) / 1048576.0, double(weight_bytes) / 1048576.0,
                 (double(weight_bytes) * 1.1 + double(act)) / 1048576.0);
      std::fflush(stdout);
    }
  }
  if (a.json) {
    nlohmann::json j;
    j["threads"] = openblas_get_num_threads();
    j["openblas"] = openblas_get_config();
    j["dtype"] = a.dtype;
    j["results"] = results;
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace zo
