// The device kernels (core/cuda/ops.h) against the CPU reference (core/ops.h) on random inputs,
// with tolerances per kernel and GEMM mode. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/ops.h"
#include "core/cuda/perturb.h"
#include "core/cuda/wire.h"
#include "core/ops.h"
#include "core/wire.h"

using namespace zo;

namespace {

template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(const std::vector<T>& h) : n(h.size()) {
    ZO_CUDA_CHECK(cudaMalloc(&p, sizeof(T) * std::max<size_t>(n, 1)));
    ZO_CUDA_CHECK(cudaMemcpy(p, h.data(), sizeof(T) * n, cudaMemcpyHostToDevice));
  }
  explicit Dev(size_t count) : n(count) { ZO_CUDA_CHECK(cudaMalloc(&p, sizeof(T) * std::max<size_t>(n, 1))); }
  ~Dev() { cudaFree(p); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    ZO_CUDA_CHECK(cudaDeviceSynchronize());
    ZO_CUDA_CHECK(cudaMemcpy(h.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost));
    return h;
  }
};

std::vector<float> randn(size_t n, float sd, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); i++) {
    double err = std::fabs(double(got[i]) - want[i]) / (abs + rel * std::fabs(double(want[i])));
    worst = std::max(worst, err);
    ASSERT_LE(err, 1.0) << what << " at " << i << ": " << got[i] << " vs " << want[i];
  }
}

#define REQUIRE_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)"

}  // namespace

TEST(CudaOps, LinearInEveryGemmMode) {
  REQUIRE_GPU();
  const int M = 37, N = 96, K = 200;
  auto x = randn(size_t(M) * K, 1.0f, 1), W = randn(size_t(N) * K, 0.05f, 2), b = randn(N, 0.1f, 3);
  std::vector<float> want(size_t(M) * N);
  linear(want.data(), x.data(), W.data(), b.data(), M, N, K);
  void* h = cuda::cublas_create(nullptr);
  Dev<float> dx(x), dW(W), db(b), dy(size_t(M) * N);
  struct Mode {
    cuda::GemmMode m;
    double rel, abs;
  };
  for (Mode md : {Mode{cuda::GemmMode::F32, 1e-4, 1e-5}, Mode{cuda::GemmMode::TF32, 1e-2, 1e-2},
                  Mode{cuda::GemmMode::BF16, 3e-2, 3e-2}}) {
    cuda::linear(h, dy.p, dx.p, dW.p, db.p, M, N, K, false, md.m, nullptr);
    expect_close(dy.host(), want, md.rel, md.abs, "linear");
  }
  cuda::cublas_destroy(h);
}

TEST(CudaOps, NormsActivationsRopeEmbeddings) {
  REQUIRE_GPU();
  const int M = 19, C = 576, F = 300;
  auto x = randn(size_t(M) * C, 2.0f, 4), w = randn(C, 1.0f, 5), b = randn(C, 0.1f, 6);
  std::vector<float> want(x.size());
  Dev<float> dx(x), dw(w), db(b), dout(x.size());
  layernorm(want.data(), x.data(), w.data(), b.data(), M, C, 1e-5f);
  cuda::layernorm(dout.p, dx.p, dw.p, db.p, M, C, 1e-5f, nullptr);
  expect_close(dout.host(), want, 1e-5, 1e-6, "layernorm");
  rmsnorm(want.data(), x.data(), w.data(), M, C, 1e-6f);
  cuda::rmsnorm(dout.p, dx.p, dw.p, M, C, 1e-6f, nullptr);
  expect_close(dout.host(), want, 1e-5, 1e-6, "rmsnorm");

  auto gu = randn(size_t(M) * 2 * F, 3.0f, 7);
  std::vector<float> sw(size_t(M) * F);
  swiglu(sw.data(), gu.data(), M, F);
  Dev<float> dgu(gu), dsw(sw.size());
  cuda::swiglu(dsw.p, dgu.p, M, F, nullptr);
  expect_close(dsw.host(), sw, 1e-5, 1e-6, "swiglu");

  std::vector<float> r(x);
  relu_inplace(r.data(), r.size());
  Dev<float> dr(x);
  cuda::relu_inplace(dr.p, x.size(), nullptr);
  expect_close(dr.host(), r, 0, 0 + 1e-30, "relu");
  std::vector<float> s(x);
  add_inplace(s.data(), r.data(), s.size());
  Dev<float> ds(x), dr2(r);
  cuda::add_inplace(ds.p, dr2.p, x.size(), nullptr);
  expect_close(ds.host(), s, 0, 1e-30, "add");

  const int H = 9, D = 64, maxp = 64;
  std::vector<float> cs(size_t(maxp) * D / 2), sn(cs.size());
  rope_tables(cs.data(), sn.data(), maxp, D, 10000.0f);
  std::vector<int32_t> pos(M);
  for (int i = 0; i < M; i++) pos[size_t(i)] = (i * 7) % maxp;
  auto q = randn(size_t(M) * H * D, 1.0f, 8);
  std::vector<float> qr(q);
  rope_apply(qr.data(), M, H * D, H, D, pos.data(), cs.data(), sn.data());
  Dev<float> dq(q), dcs(cs), dsn(sn);
  Dev<int32_t> dpos(pos);
  cuda::rope_apply(dq.p, M, H * D, H, D, dpos.p, dcs.p, dsn.p, nullptr);
  expect_close(dq.host(), qr, 1e-6, 1e-6, "rope");

  auto table = randn(size_t(50) * C, 1.0f, 9);
  std::vector<int32_t> ids = {3, 49, 0, 3, 17};
  Dev<float> dt(table), de(ids.size() * C);
  Dev<int32_t> dids(ids);
  cuda::embed_rows(de.p, dt.p, dids.p, int(ids.size()), C, nullptr);
  auto e = de.host();
  for (size_t i = 0; i < ids.size(); i++)
    for (int c = 0; c < C; c++) ASSERT_EQ(e[i * C + size_t(c)], table[size_t(ids[i]) * C + size_t(c)]);
}

// cuBLAS is loaded on first use (core/cuda/ops.cu), not linked. Runs without a GPU too: the library
// must load and its functions be found; without a device cublasCreate itself then reports that.
TEST(CudaOps, CublasLoadsOnFirstUse) {
  try {
    void* h = cuda::cublas_create(nullptr);
    EXPECT_NE(h, nullptr);
    cuda::cublas_destroy(h);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find("cannot load cuBLAS"), std::string::npos) << what;
    EXPECT_EQ(what.find("lacks"), std::string::npos) << what;
    EXPECT_NE(what.find("cublas().create"), std::string::npos) << what;  // it was called, and failed
    int n = 0;
    EXPECT_NE(cudaGetDeviceCount(&n), cudaSuccess) << "a GPU is present, yet cublasCreate failed: " << what;
  }
}

// Every tile-load path (core/cuda/ops.h AttnTileLoad) against the CPU kernel. Head sizes: 96 and 33
// give a partial last lane group, 33 an odd row stride (the element path only), 16/32/80/40 rows of
// 4, 8, 20 and 10 16-byte pieces (several or part of a warp per row; 40: three rows per warp pass,
// which does not divide the tile); `shift` starts keys and values one float past a 16-byte
// boundary, where the float4 paths must fall back. Each case also checks which path ran.
TEST(CudaOps, CausalAttentionWithGqaAndAPrefix) {
  REQUIRE_GPU();
  struct Case {
    int D, shift;
  };
  const cuda::AttnTileLoad before = cuda::attention_tile_load();
  for (cuda::AttnTileLoad load : {cuda::AttnTileLoad::Scalar, cuda::AttnTileLoad::Float4, cuda::AttnTileLoad::Float4Prefetch})
  for (Case c : {Case{64, 0}, Case{128, 0}, Case{96, 0}, Case{33, 0}, Case{16, 0}, Case{32, 0}, Case{80, 0}, Case{40, 0},
                 Case{64, 1}}) {
    SCOPED_TRACE(std::string(cuda::attention_tile_load_name(load)) + " head_dim " + std::to_string(c.D) + " shift " +
                 std::to_string(c.shift));
    cuda::set_attention_tile_load(load);
    const int D = c.D, H = 8, Hkv = 2, Q = H * D, KV = Hkv * D;
    struct S {
      int n_q, n_kv;
    };
    std::vector<S> shapes = {{37, 37}, {1, 90}, {70, 100}, {5, 5}};  // {1, 90}: a decode step after 89 cached
    std::vector<std::vector<float>> qs, ks, vs, outs;
    for (size_t s = 0; s < shapes.size(); s++) {
      qs.push_back(randn(size_t(shapes[s].n_q) * Q, 1.0f, 10 + uint32_t(s)));
      ks.push_back(randn(size_t(shapes[s].n_kv) * KV, 1.0f, 20 + uint32_t(s)));
      vs.push_back(randn(size_t(shapes[s].n_kv) * KV, 1.0f, 30 + uint32_t(s)));
      outs.emplace_back(size_t(shapes[s].n_q) * Q);
    }
    std::vector<AttnArgs> cpu, gpu;
    std::vector<std::unique_ptr<Dev<float>>> keep;
    for (size_t s = 0; s < shapes.size(); s++) {
      AttnArgs a{outs[s].data(), Q, qs[s].data(), Q, ks[s].data(), KV, vs[s].data(), KV, shapes[s].n_q,
                 shapes[s].n_kv, shapes[s].n_kv - shapes[s].n_q, H, Hkv, D, 1.0f / std::sqrt(float(D))};
      cpu.push_back(a);
      keep.push_back(std::make_unique<Dev<float>>(qs[s]));
      std::vector<float> kpad(size_t(c.shift), 0.0f), vpad(size_t(c.shift), 0.0f);
      kpad.insert(kpad.end(), ks[s].begin(), ks[s].end());
      vpad.insert(vpad.end(), vs[s].begin(), vs[s].end());
      keep.push_back(std::make_unique<Dev<float>>(kpad));
      keep.push_back(std::make_unique<Dev<float>>(vpad));
      keep.push_back(std::make_unique<Dev<float>>(outs[s].size()));
      size_t k = keep.size();
      a.q = keep[k - 4]->p;
      a.k = keep[k - 3]->p + c.shift;
      a.v = keep[k - 2]->p + c.shift;
      a.out = keep[k - 1]->p;
      gpu.push_back(a);
    }
    attention(cpu.data(), int(cpu.size()));
    AttnArgs* dev_args = nullptr;
    ZO_CUDA_CHECK(cudaMalloc(&dev_args, sizeof(AttnArgs) * gpu.size()));
    cuda::attention(gpu.data(), int(gpu.size()), dev_args, nullptr);
    const bool float4_ok = c.D % 4 == 0 && c.shift == 0;
    EXPECT_EQ(int(cuda::attention_last_tile_load()), int(float4_ok ? load : cuda::AttnTileLoad::Scalar));
    for (size_t s = 0; s < shapes.size(); s++) expect_close(keep[4 * s + 3]->host(), outs[s], 1e-4, 1e-5, "attention");
    cudaFree(dev_args);
  }
  cuda::set_attention_tile_load(before);
}

TEST(CudaOps, LogSumExpRows) {
  REQUIRE_GPU();
  const int M = 7, V = 49152;
  auto logits = randn(size_t(M) * V, 4.0f, 11);
  std::vector<double> want(M);
  logsumexp_rows(want.data(), logits.data(), M, V);
  Dev<float> dl(logits);
  Dev<double> dlse(static_cast<size_t>(M));
  cuda::logsumexp_rows(dlse.p, dl.p, M, V, nullptr);
  auto got = dlse.host();
  for (int r = 0; r < M; r++) EXPECT_NEAR(got[size_t(r)], want[size_t(r)], 1e-9 * std::fabs(want[size_t(r)]));
}

// The device wire decoder against the CPU reference (core/wire.h, itself tested against torch's
// casts): bit-identical for every dtype, across group boundaries.
TEST(CudaOps, WireDecodeIsBitIdenticalToTheCpu) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  const size_t n = 3 * kWireGroup + 123;
  std::vector<float> x = randn(n, 0.05f, 77);
  for (size_t i = kWireGroup; i < 2 * kWireGroup; i++) x[i] *= 1000.0f;
  for (WireDType t : {WireDType::F32, WireDType::BF16, WireDType::F16, WireDType::FP8}) {
    std::vector<uint8_t> enc(n * wire_size(t));
    std::vector<float> sc(wire_groups(n)), want(n);
    ASSERT_TRUE(wire_encode(t, x.data(), n, enc.data(), sc.data()));
    wire_decode(t, enc.data(), n, sc.data(), want.data());
    Dev<uint8_t> de(enc);
    Dev<float> ds(sc), out(n);
    cuda::wire_decode(out.p, de.p, n, ds.p, t, nullptr);
    auto got = out.host();
    EXPECT_EQ(std::memcmp(got.data(), want.data(), n * sizeof(float)), 0) << wire_name(t);
  }
}

// The device's rounding of f32 weights by the wire (what a two-way block's forward sees) against
// the CPU's wire_decode(wire_encode(x)): bit-identical for every dtype, on values at the dtypes'
// rounding boundaries and range limits (subnormals, f16's and e4m3's largest values, signed zeros,
// NaN of either sign, infinities), an all-zero fp8 group, a group holding an infinity, and a partial
// last group whose amax / 448 underflows to 0;
// f16's overflow flag set exactly when a finite value became infinite.
TEST(CudaOps, WireRoundIsBitIdenticalToTheCpu) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)";
  const size_t n = 5 * kWireGroup + 321;
  std::vector<float> x = randn(n, 0.05f, 78);
  for (size_t i = kWireGroup; i < 2 * kWireGroup; i++) x[i] *= 1000.0f;    // a wide group
  for (size_t i = 2 * kWireGroup; i < 3 * kWireGroup; i++) x[i] = 0.0f;     // all zero: scale 1
  x[3 * kWireGroup + 5] = std::numeric_limits<float>::infinity();            // fp8 scale 1 here
  x[3 * kWireGroup + 6] = std::nanf("");
  x[3 * kWireGroup + 7] = -std::nanf("");  // a NaN keeps its sign (the device's division would drop it)
  const float edge[] = {-0.0f, 1e-40f, -1e-45f, 5.9604645e-08f, 2.9802322e-08f, 65504.0f, 65520.0f, 448.0f, 464.0f,
                        -463.99f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 0.0009765625f, 0.001953125f * 1.5f,
                        3.3895314e38f, -std::numeric_limits<float>::infinity()};
  for (size_t i = 5 * kWireGroup; i < n; i++) x[i] = 1e-44f * float(i % 3);  // the partial last group: amax / 448 is 0
  size_t at = 4 * kWireGroup;
  for (float e : edge) x[at++] = e;
  for (uint32_t k = 0; k < 4096; k++) {  // halfway and beside it for bf16 and f16, across exponents
    const uint32_t u = (uint32_t(100 + k % 60) << 23) | ((k & 1) ? 0x8000u : 0x7fffu) | ((k & 2) ? 0x1000u : 0x10000u);
    x[at++] = rng::bits_to_float(u | ((k & 4) ? 0x80000000u : 0u));
  }
  for (WireDType t : {WireDType::F32, WireDType::BF16, WireDType::F16, WireDType::FP8}) {
    std::vector<float> want(n);
    std::vector<uint8_t> enc(n * wire_size(t));
    std::vector<float> sc(wire_groups(n));
    const bool fits = wire_encode(t, x.data(), n, enc.data(), sc.data());
    EXPECT_EQ(fits, t != WireDType::F16) << wire_name(t);  // 65520 rounds to f16's infinity
    wire_decode(t, enc.data(), n, sc.data(), want.data());
    Dev<float> dx(x), out(n);
    Dev<int> over(std::vector<int>{0});
    cuda::wire_round(out.p, dx.p, n, t, over.p, nullptr);
    auto got = out.host();
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
      if (std::memcmp(&got[i], &want[i], 4) != 0 && bad++ < 5) {
        ADD_FAILURE() << wire_name(t) << " element " << i << " of " << x[i] << ": " << got[i] << " against " << want[i];
      }
    }
    EXPECT_EQ(bad, 0u) << wire_name(t);
    if (t == WireDType::F16) {
      EXPECT_EQ(over.host()[0], 1);
    }
  }
  std::vector<float> small = {1.0f, -2.5f, 65504.0f};  // fits: the flag stays clear
  Dev<float> ds(small), out(small.size());
  Dev<int> over(std::vector<int>{0});
  cuda::wire_round(out.p, ds.p, small.size(), WireDType::F16, over.p, nullptr);
  EXPECT_EQ(over.host()[0], 0);
  EXPECT_EQ(out.host(), small);
}
