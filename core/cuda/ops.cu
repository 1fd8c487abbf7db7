// The forward pass's kernels on the device. Straightforward first versions (one block per row,
// one warp per query), checked against the CPU reference; speed work follows on a GPU.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "core/cuda/check.h"
#include "core/cuda/ops.h"

namespace zo::cuda {
namespace {

constexpr int kThreads = 256;

const char* cublas_status_name(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (no usable GPU?)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "an unlisted status";
  }
}

#define ZO_CUBLAS_CHECK(call)                                                                   \
  do {                                                                                          \
    cublasStatus_t zo_st_ = (call);                                                             \
    if (zo_st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::zo::fail("cuBLAS call {} failed at {}:{}: {} ({})", #call, __FILE__, __LINE__,           \
                 cublas_status_name(zo_st_), int(zo_st_));                                       \
  } while (0)

// cuBLAS is opened on first use, not linked: a process that links libcublas pays about 210 MiB of
// resident memory at startup for its initializers (measured on an empty program with the CUDA 13
// toolkit), which every CPU-only zo run would carry. The four entry points zo calls, resolved once.
struct CublasApi {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasDestroy_v2) destroy;
  decltype(&cublasSetStream_v2) set_stream;
  // The exported C symbol (the header adds an inline C++ overload taking a cudaDataType compute type).
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
};

const CublasApi& cublas() {
  static const CublasApi api = [] {
    const std::string so = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* h = ::dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
#ifdef ZO_CUDA_LIB_DIR
    if (!h) h = ::dlopen((std::string(ZO_CUDA_LIB_DIR) + "/" + so).c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
    if (!h) fail("cannot load cuBLAS ({}): {}; add the CUDA toolkit's library folder to LD_LIBRARY_PATH", so, ::dlerror());
    auto sym = [&](const char* name) {
      void* f = ::dlsym(h, name);
      if (!f) fail("cuBLAS ({}) lacks {} ({}): a toolkit older than zo was built with?", so, name, ::dlerror());
      return f;
    };
    CublasApi a;
    a.create = reinterpret_cast<decltype(a.create)>(sym("cublasCreate_v2"));
    a.destroy = reinterpret_cast<decltype(a.destroy)>(sym("cublasDestroy_v2"));
    a.set_stream = reinterpret_cast<decltype(a.set_stream)>(sym("cublasSetStream_v2"));
    a.gemm_ex = reinterpret_cast<decltype(a.gemm_ex)>(sym("cublasGemmEx"));
    return a;
  }();
  return api;
}

void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail("CUDA kernel {} failed to launch: {} ({})", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

unsigned blocks_for(size_t n) { return unsigned((n + kThreads - 1) / kThreads); }

template <typename T>
__device__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024) of one value per thread.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T part[32];
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  T s = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : T(0);
  if (threadIdx.x < 32) s = warp_sum(s);
  __shared__ T total;
  if (threadIdx.x == 0) total = s;
  __syncthreads();
  T r = total;
  __syncthreads();
  return r;
}

// One block per row; mean and variance in f64 as the CPU reference.
__global__ void layernorm_kernel(float* out, const float* x, const float* w, const float* b, int C, float eps) {
  const float* xr = x + size_t(blockIdx.x) * C;
  float* orow = out + size_t(blockIdx.x) * C;
  double s = 0;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
  const double mean = block_sum(s) / C;
  double v = 0;
  for (int c = threadIdx.x; c < C; c += blockDim.x) v += (xr[c] - mean) * (xr[c] - mean);
  const double rstd = 1.0 / sqrt(block_sum(v) / C + double(eps));
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    orow[c] = float((xr[c] - mean) * rstd) * w[c] + (b ? b[c] : 0.0f);
}

__global__ void rmsnorm_kernel(float* out, const float* x, const float* w, int C, float eps) {
  const float* xr = x + size_t(blockIdx.x) * C;
  float* orow = out + size_t(blockIdx.x) * C;
  double s = 0;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += double(xr[c]) * xr[c];
  const float r = float(1.0 / sqrt(block_sum(s) / C + double(eps)));
  for (int c = threadIdx.x; c < C; c += blockDim.x) orow[c] = w[c] * (xr[c] * r);
}

__global__ void relu_kernel(float* x, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = fmaxf(x[i], 0.0f);
}

__global__ void swiglu_kernel(float* out, const float* gu, int M, int F) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= size_t(M) * F) return;
  size_t m = i / F, f = i % F;
  float g = gu[m * 2 * F + f], u = gu[m * 2 * F + F + f];
  out[i] = g / (1.0f + expf(-g)) * u;
}

__global__ void add_kernel(float* x, const float* y, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

// One thread per (row, head, pair d < D/2): HF's half-split rotation.
__global__ void rope_kernel(float* x, int M, int ld, int n_heads, int D, const int32_t* pos, const float* cos_t,
                            const float* sin_t) {
  const int half = D / 2;
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= size_t(M) * n_heads * half) return;
  int d = int(i % half), h = int((i / half) % n_heads);
  size_t r = i / (size_t(half) * n_heads);
  float* xh = x + r * ld + size_t(h) * D;
  const float c = cos_t[size_t(pos[r]) * half + d], s = sin_t[size_t(pos[r]) * half + d];
  const float x1 = xh[d], x2 = xh[d + half];
  xh[d] = x1 * c - x2 * s;
  xh[d + half] = x2 * c + x1 * s;
}

__global__ void embed_kernel(float* out, const float* table, const int32_t* ids, int C) {
  const float* src = table + size_t(ids[blockIdx.x]) * C;
  float* dst = out + size_t(blockIdx.x) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

// Causal attention, flash-style: a block of kAttWarps warps takes kRowsPerWarp query rows per warp
// of one (sequence, head). Key and value tiles of 32 rows are staged in shared memory (coalesced
// loads); each lane scores one key of the tile against the warp's rows together, reading the key in
// 16-byte pieces once for all of them (the key rows' stride is an odd number of 16-byte units, so a
// quarter-warp's 16-byte reads hit distinct banks; the queries are broadcast reads), and an online
// softmax folds the tile into each row's accumulators. Pads past head_dim are zero on both sides.
// How a tile reaches shared memory (AttnTileLoad, core/cuda/ops.h): element by element, or, where
// head_dim is a multiple of 4 and every key and value row starts on 16 bytes (the engines' packed
// buffers), as float4 with a warp over whole rows and its lanes over a row's 16-byte pieces (several
// rows per pass when a row has 16 pieces or fewer): two rows per thread in flight at a time, or all of
// a thread's rows of the next tile held in registers, loaded while the current tile is computed
// (more loads in flight, more registers: fewer blocks per SM). Each path falls back to the first
// where the alignment does not hold.
constexpr int kAttWarps = 4, kRowsPerWarp = 4, kAttRows = kAttWarps * kRowsPerWarp, kKeyTile = 32;
__host__ __device__ constexpr int round4(int D) { return (D + 3) / 4 * 4; }
__host__ __device__ constexpr int key_stride(int D) { return (round4(D) / 4) % 2 ? round4(D) : round4(D) + 4; }
__host__ __device__ constexpr size_t attention_smem_floats(int D) {
  return size_t(kKeyTile) * key_stride(D) + size_t(kAttRows) * round4(D) + size_t(kKeyTile) * D;
}

// Four blocks per SM for the first two paths (at most 128 registers); the prefetching one holds a
// whole tile's rows per thread (16 float4, 64 floats) and gets what it needs.
template <int DL, int LOAD>  // ceil(head_dim / 32); AttnTileLoad
__global__ void __launch_bounds__(32 * kAttWarps, LOAD == 2 ? 1 : 4) attention_kernel(const AttnArgs* seqs) {
  extern __shared__ float4 smem4[];
  const AttnArgs a = seqs[blockIdx.y];
  const int h = int(blockIdx.z), i0 = int(blockIdx.x) * kAttRows;
  if (i0 >= a.n_q || h >= a.n_heads) return;  // the whole block leaves together
  const int D = a.head_dim, D4 = round4(D), KS = key_stride(D);
  const int g = h / (a.n_heads / a.n_kv_heads);
  const int warp = int(threadIdx.x >> 5), lane = int(threadIdx.x & 31);
  float* ks = reinterpret_cast<float*>(smem4);  // [kKeyTile][KS]
  float* qs = ks + kKeyTile * KS;                // [kAttRows][D4], scaled
  float* vs = qs + kAttRows * D4;                // [kKeyTile][D]
  const int rows = min(kAttRows, a.n_q - i0);
  for (int idx = int(threadIdx.x); idx < kAttRows * D4; idx += int(blockDim.x)) {
    const int r = idx / D4, d = idx - r * D4;
    qs[idx] = (r < rows && d < D) ? a.q[size_t(i0 + r) * a.ldq + size_t(h) * D + d] * a.scale : 0.0f;
  }
  const float neg_inf = __int_as_float(0xff800000);
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][DL];
  int nk[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; r++) {
    const int i = i0 + warp * kRowsPerWarp + r;
    nk[r] = i < a.n_q ? min(a.n_kv, a.q_off + i + 1) : 0;
    m[r] = neg_inf;
    l[r] = 0.0f;
#pragma unroll
    for (int k = 0; k < DL; k++) acc[r][k] = 0.0f;
  }
  const int nk_block = min(a.n_kv, a.q_off + i0 + rows);  // the keys the block's last row sees
  const float4* q4 = reinterpret_cast<const float4*>(qs) + warp * kRowsPerWarp * (D4 / 4);
  const float4* k4 = reinterpret_cast<const float4*>(ks) + lane * (KS / 4);
  // The float4 paths (launched only where every sequence's rows are aligned: attention() checks):
  // this thread's rows of a tile are t_first + u * t_step, piece `piece` of each.
  constexpr bool vec = LOAD != 0;
  const int pieces = D4 / 4, rows_per_pass = 32 / pieces;  // D <= 128: pieces <= 32
  const int my_row = lane / pieces, piece = lane - my_row * pieces;
  const bool loader = vec && my_row < rows_per_pass;
  const int t_first = warp * rows_per_pass + my_row, t_step = kAttWarps * rows_per_pass;
  constexpr int kLoads = kKeyTile / kAttWarps;  // rows per thread at one row per warp pass
  constexpr int kHeld = LOAD == 2 ? kLoads : 2;  // rows held in registers at once
  float4 kreg[kHeld], vreg[kHeld];
  // Rows u0 .. u0 + kHeld - 1 of this thread for the tile at j0 into the registers, then to shared.
  auto load_rows = [&](int j0, int u0) {
    const int tk = min(kKeyTile, nk_block - j0);
#pragma unroll
    for (int u = 0; u < kHeld; u++) {
      const int t = t_first + (u0 + u) * t_step;
      if (loader && t < tk) {
        kreg[u] = __ldg(reinterpret_cast<const float4*>(a.k + size_t(j0 + t) * a.ldk + size_t(g) * D) + piece);
        vreg[u] = __ldg(reinterpret_cast<const float4*>(a.v + size_t(j0 + t) * a.ldv + size_t(g) * D) + piece);
      }
    }
  };
  auto store_rows = [&](int tk, int u0) {
#pragma unroll
    for (int u = 0; u < kHeld; u++) {
      const int t = t_first + (u0 + u) * t_step;
      if (loader && t < kKeyTile) {
        reinterpret_cast<float4*>(ks + t * KS)[piece] = t < tk ? kreg[u] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (t < tk) reinterpret_cast<float4*>(vs + t * D)[piece] = vreg[u];
      }
    }
  };
  if constexpr (LOAD == 2) load_rows(0, 0);
  for (int j0 = 0; j0 < nk_block; j0 += kKeyTile) {
    __syncthreads();  // the previous tile is consumed (and, the first time, qs is written)
    const int tk = min(kKeyTile, nk_block - j0);
    if constexpr (LOAD == 2) {
      store_rows(tk, 0);
    } else if constexpr (LOAD == 1) {
      for (int u0 = 0; u0 < kLoads && t_first + u0 * t_step < kKeyTile; u0 += kHeld) {
        load_rows(j0, u0);
        store_rows(tk, u0);
      }
    } else {
      for (int idx = int(threadIdx.x); idx < kKeyTile * D4; idx += int(blockDim.x)) {
        const int t = idx / D4, d = idx - t * D4;
        const bool in = t < tk && d < D;
        ks[t * KS + d] = in ? a.k[size_t(j0 + t) * a.ldk + size_t(g) * D + d] : 0.0f;
        if (in) vs[t * D + d] = a.v[size_t(j0 + t) * a.ldv + size_t(g) * D + d];
      }
    }
    __syncthreads();
    if constexpr (LOAD == 2)
      if (j0 + kKeyTile < nk_block) load_rows(j0 + kKeyTile, 0);  // in flight while this tile computes
    const int j = j0 + lane;
    float dot[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; r++) dot[r] = 0.0f;
    for (int d4 = 0; d4 < D4 / 4; d4++) {
      const float4 kv = k4[d4];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; r++) {
        const float4 qv = q4[r * (D4 / 4) + d4];
        dot[r] = fmaf(qv.x, kv.x, dot[r]);
        dot[r] = fmaf(qv.y, kv.y, dot[r]);
        dot[r] = fmaf(qv.z, kv.z, dot[r]);
        dot[r] = fmaf(qv.w, kv.w, dot[r]);
      }
    }
    float p[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; r++) {
      p[r] = 0.0f;
      if (j0 >= nk[r]) continue;  // uniform across the warp; p stays 0 for the row
      const float s = j < nk[r] ? dot[r] : neg_inf;
      const float mnew = fmaxf(m[r], warp_max(s));
      const float corr = expf(m[r] - mnew);
      p[r] = j < nk[r] ? expf(s - mnew) : 0.0f;
      l[r] = l[r] * corr + warp_sum(p[r]);
#pragma unroll
      for (int k = 0; k < DL; k++) acc[r][k] *= corr;
      m[r] = mnew;
    }
    for (int t = 0; t < tk; t++) {  // keys a row does not see carry p = 0
      float vv[DL];
#pragma unroll
      for (int k = 0; k < DL; k++) vv[k] = lane + 32 * k < D ? vs[t * D + lane + 32 * k] : 0.0f;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; r++) {
        const float pt = __shfl_sync(0xffffffffu, p[r], t);
#pragma unroll
        for (int k = 0; k < DL; k++) acc[r][k] = fmaf(pt, vv[k], acc[r][k]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; r++) {
    const int i = i0 + warp * kRowsPerWarp + r;
    if (i >= a.n_q) break;
    float* o = a.out + size_t(i) * a.ldo + size_t(h) * D;
#pragma unroll
    for (int k = 0; k < DL; k++)
      if (lane + 32 * k < D) o[lane + 32 * k] = acc[r][k] / l[r];
  }
}

// y[m, :] = b (or y[m, :] += b): the bias seeds the GEMM's accumulator.
__global__ void bias_rows_kernel(float* y, const float* b, int M, int N, bool accumulate) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= size_t(M) * N) return;
  y[i] = (accumulate ? y[i] : 0.0f) + b[i % N];
}

__global__ void lse_kernel(double* lse, const float* logits, int V) {
  const float* r = logits + size_t(blockIdx.x) * V;
  const float neg_inf = __int_as_float(0xff800000);
  float mx = neg_inf;
  for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, r[v]);
  __shared__ float part[32];
  mx = warp_max(mx);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = mx;
  __syncthreads();
  float all = neg_inf;
  for (int w = 0; w < int(blockDim.x >> 5); w++) all = fmaxf(all, part[w]);
  double s = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += exp(double(r[v]) - double(all));
  s = block_sum(s);
  if (threadIdx.x == 0) lse[blockIdx.x] = double(all) + log(s);
}

}  // namespace

void* cublas_create(void* stream) {
  cublasHandle_t h = nullptr;
  ZO_CUBLAS_CHECK(cublas().create(&h));
  try {
    ZO_CUBLAS_CHECK(cublas().set_stream(h, static_cast<cudaStream_t>(stream)));
  } catch (...) {
    cublas().destroy(h);
    throw;
  }
  return h;
}

void cublas_destroy(void* handle) { cublas().destroy(static_cast<cublasHandle_t>(handle)); }

void linear(void* handle, float* y, const float* x, const float* W, const float* b, int M, int N, int K,
            bool accumulate, GemmMode mode, void* stream) {
  auto h = static_cast<cublasHandle_t>(handle);
  float beta = accumulate ? 1.0f : 0.0f;
  if (b) {
    bias_rows_kernel<<<blocks_for(size_t(M) * N), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(y, b, M, N,
                                                                                                    accumulate);
    check_launch("bias_rows");
    beta = 1.0f;
  }
  const float alpha = 1.0f;
  // Row-major y[M,N] = x[M,K] W[N,K]^T is column-major y^T[N,M] = W^T... i.e. C = op(W) * x^T with
  // W viewed column-major as [K,N] (transposed) and x as [K,M].
  cublasComputeType_t ct = mode == GemmMode::F32 ? CUBLAS_COMPUTE_32F
                           : mode == GemmMode::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                    : CUBLAS_COMPUTE_32F_FAST_16BF;
  ZO_CUBLAS_CHECK(cublas().gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_32F, K, x, CUDA_R_32F, K,
                               &beta, y, CUDA_R_32F, N, ct, CUBLAS_GEMM_DEFAULT));
}

void layernorm(float* out, const float* x, const float* w, const float* b, int M, int C, float eps, void* stream) {
  if (M <= 0) return;
  layernorm_kernel<<<M, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(out, x, w, b, C, eps);
  check_launch("layernorm");
}

void rmsnorm(float* out, const float* x, const float* w, int M, int C, float eps, void* stream) {
  if (M <= 0) return;
  rmsnorm_kernel<<<M, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(out, x, w, C, eps);
  check_launch("rmsnorm");
}

void relu_inplace(float* x, size_t n, void* stream) {
  if (n == 0) return;
  relu_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, n);
  check_launch("relu");
}

void swiglu(float* out, const float* gu, int M, int F, void* stream) {
  if (M <= 0) return;
  swiglu_kernel<<<blocks_for(size_t(M) * F), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(out, gu, M, F);
  check_launch("swiglu");
}

void add_inplace(float* x, const float* y, size_t n, void* stream) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, y, n);
  check_launch("add");
}

void rope_apply(float* x, int M, int ld, int n_heads, int head_dim, const int32_t* pos, const float* cos_t,
                const float* sin_t, void* stream) {
  if (M <= 0) return;
  size_t n = size_t(M) * n_heads * (head_dim / 2);
  rope_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, M, ld, n_heads, head_dim, pos,
                                                                                   cos_t, sin_t);
  check_launch("rope");
}

void embed_rows(float* out, const float* table, const int32_t* ids, int N, int C, void* stream) {
  if (N <= 0) return;
  embed_kernel<<<N, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(out, table, ids, C);
  check_launch("embed_rows");
}

namespace {
// float4 rows by default: on an H100 (2026-11-26, bench/README.md), OPT-13B's attention for one
// version of a block took 0.289 ms with it against 0.761 element by element and 0.400 prefetching.
std::atomic<int> g_tile_load{int(AttnTileLoad::Float4)}, g_last_load{int(AttnTileLoad::Scalar)};

template <int LOAD>
void launch_attention(int DL, dim3 grid, size_t shmem, cudaStream_t st, const AttnArgs* dev) {
  if (DL == 1)
    attention_kernel<1, LOAD><<<grid, 32 * kAttWarps, shmem, st>>>(dev);
  else if (DL == 2)
    attention_kernel<2, LOAD><<<grid, 32 * kAttWarps, shmem, st>>>(dev);
  else if (DL == 3)
    attention_kernel<3, LOAD><<<grid, 32 * kAttWarps, shmem, st>>>(dev);
  else
    attention_kernel<4, LOAD><<<grid, 32 * kAttWarps, shmem, st>>>(dev);
}
}  // namespace

void set_attention_tile_load(AttnTileLoad t) { g_tile_load.store(int(t)); }
AttnTileLoad attention_tile_load() { return AttnTileLoad(g_tile_load.load()); }
const char* attention_tile_load_name(AttnTileLoad t) {
  switch (t) {
    case AttnTileLoad::Scalar: return "scalar";
    case AttnTileLoad::Float4: return "float4";
    case AttnTileLoad::Float4Prefetch: return "float4-prefetch";
  }
  return "?";
}

void attention(const AttnArgs* seqs, int n_seqs, AttnArgs* dev, void* stream) {
  if (n_seqs <= 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  int max_nq = 0, heads = 0, D = seqs[0].head_dim;
  for (int s = 0; s < n_seqs; s++) {
    max_nq = std::max(max_nq, seqs[s].n_q);
    heads = std::max(heads, seqs[s].n_heads);
    ZO_CHECK(seqs[s].head_dim == D, "cuda::attention: mixed head sizes in one batch");
  }
  ZO_CHECK(D >= 1 && D <= 128, "cuda::attention: head_dim {} (up to 128 is implemented)", D);
  ZO_CUDA_CHECK(cudaMemcpyAsync(dev, seqs, sizeof(AttnArgs) * size_t(n_seqs), cudaMemcpyHostToDevice, st));
  dim3 grid(unsigned((max_nq + kAttRows - 1) / kAttRows), unsigned(n_seqs), unsigned(heads));
  const int DL = (D + 31) / 32;
  const size_t shmem = sizeof(float) * attention_smem_floats(D);
  // The float4 paths need whole 16-byte pieces: head_dim % 4 == 0 and every key and value row of
  // every sequence starting on 16 bytes; otherwise the element path runs.
  bool aligned = D % 4 == 0;
  for (int s = 0; s < n_seqs && aligned; s++)
    aligned = seqs[s].ldk % 4 == 0 && seqs[s].ldv % 4 == 0 &&
              ((reinterpret_cast<uintptr_t>(seqs[s].k) | reinterpret_cast<uintptr_t>(seqs[s].v)) & 15u) == 0;
  const AttnTileLoad load = aligned ? attention_tile_load() : AttnTileLoad::Scalar;
  switch (load) {
    case AttnTileLoad::Scalar: launch_attention<0>(DL, grid, shmem, st, dev); break;
    case AttnTileLoad::Float4: launch_attention<1>(DL, grid, shmem, st, dev); break;
    case AttnTileLoad::Float4Prefetch: launch_attention<2>(DL, grid, shmem, st, dev); break;
  }
  g_last_load.store(int(load));
  check_launch("attention");
}

AttnTileLoad attention_last_tile_load() { return AttnTileLoad(g_last_load.load()); }

void logsumexp_rows(double* lse, const float* logits, int M, int V, void* stream) {
  if (M <= 0) return;
  lse_kernel<<<M, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(lse, logits, V);
  check_launch("logsumexp_rows");
}

namespace {
__global__ void pick_kernel(double* out, const float* logits, const double* lse, const int32_t* row, const int32_t* id,
                            int n, int V) {
  const int i = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = double(logits[size_t(row[i]) * size_t(V) + size_t(id[i])]) - lse[row[i]];
}
}  // namespace

void pick_logprobs(double* out, const float* logits, const double* lse, const int32_t* row, const int32_t* id, int n,
                   int V, void* stream) {
  if (n <= 0) return;
  pick_kernel<<<(n + kThreads - 1) / kThreads, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(out, logits, lse, row,
                                                                                                 id, n, V);
  check_launch("pick_logprobs");
}

}  // namespace zo::cuda
