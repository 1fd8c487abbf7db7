// Perturbation and update kernels on the device: one thread per Philox counter block (4 elements),
// the same arithmetic as core/perturb.cpp in the same order, so the bits match the CPU's.
#include "core/cuda/check.h"
#include "core/cuda/perturb.h"

namespace zo::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxTerms = 16;

struct Terms {
  UpdateTerm t[kMaxTerms];
};

// Elements [begin, begin + n) of tensor tid: thread k owns counter block j = begin / 4 + k, and
// writes the lanes of it that fall inside the range.
template <typename Op>
__device__ void for_lanes(uint64_t begin, size_t n, Op op) {
  const uint64_t j = begin / 4 + uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint64_t first = j * 4;
  if (first >= begin + n) return;
  for (int lane = 0; lane < 4; lane++) {
    uint64_t e = first + uint64_t(lane);
    if (e >= begin && e < begin + n) op(lane, size_t(e - begin));
  }
}

// Where a thread's four lanes are all inside the range and each pointer is 16-byte aligned there,
// it moves them as one float4 (a warp then touches 512 contiguous bytes per access instead of four
// strided passes); j is the thread's counter block, *i the range index of its lane 0.
__device__ bool whole_block(uint64_t j, uint64_t begin, size_t n, size_t* i) {
  const uint64_t first = j * 4;
  if (first < begin || first + 4 > begin + n) return false;
  *i = size_t(first - begin);
  return true;
}
__device__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

__global__ void fill_z_kernel(float* z, uint64_t seed, uint64_t tid, uint64_t begin, size_t n, Dist dist) {
  const uint64_t j = begin / 4 + uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  float v[4];
  rng::z_block(v, seed, tid, j, dist);
  size_t i0;
  if (whole_block(j, begin, n, &i0) && aligned16(z + i0)) {
    *reinterpret_cast<float4*>(z + i0) = make_float4(v[0], v[1], v[2], v[3]);
    return;
  }
  for_lanes(begin, n, [&](int lane, size_t i) { z[i] = v[lane]; });
}

__global__ void perturb_kernel(float* dst, const float* w, float scale, uint64_t seed, uint64_t tid, uint64_t begin,
                               size_t n, Dist dist) {
  const uint64_t j = begin / 4 + uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  float v[4];
  rng::z_block(v, seed, tid, j, dist);
  size_t i0;
  if (whole_block(j, begin, n, &i0) && aligned16(dst + i0) && aligned16(w + i0)) {
    const float4 a = *reinterpret_cast<const float4*>(w + i0);
    *reinterpret_cast<float4*>(dst + i0) =
        make_float4(a.x + scale * v[0], a.y + scale * v[1], a.z + scale * v[2], a.w + scale * v[3]);
    return;
  }
  for_lanes(begin, n, [&](int lane, size_t i) { dst[i] = w[i] + scale * v[lane]; });
}

// One weight's update from its direction sum g (and its momentum state m, for Momentum).
__device__ void update_one(float g, float& w, float& m, OptKind opt, float lr, float wd, float beta) {
  if (opt == OptKind::Momentum) {
    m = beta * m + g;
    g = m;
  } else if (opt == OptKind::Sign) {
    g = g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f);
  }
  w = w - lr * (g + wd * w);
}

__global__ void update_kernel(float* w, float* m, uint64_t tid, uint64_t begin, size_t n, Terms terms, int q,
                              Dist dist, OptKind opt, float lr, float wd, float beta) {
  const uint64_t j = begin / 4 + uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  float G[4], v[4];
  rng::z_block(v, terms.t[0].seed, tid, j, dist);
  for (int k = 0; k < 4; k++) G[k] = terms.t[0].coef * v[k];
  for (int d = 1; d < q; d++) {
    rng::z_block(v, terms.t[d].seed, tid, j, dist);
    for (int k = 0; k < 4; k++) G[k] = G[k] + terms.t[d].coef * v[k];
  }
  size_t i0;
  const bool mom = opt == OptKind::Momentum;
  if (whole_block(j, begin, n, &i0) && aligned16(w + i0) && (!mom || aligned16(m + i0))) {
    float4 a = *reinterpret_cast<const float4*>(w + i0);
    float4 b = mom ? *reinterpret_cast<const float4*>(m + i0) : make_float4(0, 0, 0, 0);
    update_one(G[0], a.x, b.x, opt, lr, wd, beta);
    update_one(G[1], a.y, b.y, opt, lr, wd, beta);
    update_one(G[2], a.z, b.z, opt, lr, wd, beta);
    update_one(G[3], a.w, b.w, opt, lr, wd, beta);
    *reinterpret_cast<float4*>(w + i0) = a;
    if (mom) *reinterpret_cast<float4*>(m + i0) = b;
    return;
  }
  for_lanes(begin, n, [&](int lane, size_t i) {
    float unused = 0.0f;
    update_one(G[lane], w[i], mom ? m[i] : unused, opt, lr, wd, beta);
  });
}

unsigned grid(uint64_t begin, size_t n) {
  uint64_t blocks = (begin + n + 3) / 4 - begin / 4;
  return unsigned((blocks + kThreads - 1) / kThreads);
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

void fill_z(float* z, uint64_t seed, uint64_t tid, size_t begin, size_t n, Dist dist, void* stream) {
  if (n == 0) return;
  fill_z_kernel<<<grid(begin, n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(z, seed, tid, begin, n, dist);
  ZO_CUDA_CHECK(cudaGetLastError());
}

void perturb_range(float* dst, const float* w, float scale, uint64_t seed, uint64_t tid, size_t begin, size_t n,
                   Dist dist, void* stream) {
  if (n == 0) return;
  perturb_kernel<<<grid(begin, n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(dst, w, scale, seed, tid, begin,
                                                                                     n, dist);
  ZO_CUDA_CHECK(cudaGetLastError());
}

void zo_update(float* w, float* m, size_t n, uint64_t tid, size_t begin, const UpdateTerm* terms, int q, Dist dist,
               OptKind opt, float lr, float wd, float beta, void* stream) {
  if (n == 0 || q <= 0) return;
  ZO_CHECK(q <= kMaxTerms, "cuda::zo_update: {} directions per launch (at most {})", q, kMaxTerms);
  Terms t{};
  for (int d = 0; d < q; d++) t.t[d] = terms[d];
  update_kernel<<<grid(begin, n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(w, m, tid, begin, n, t, q, dist,
                                                                                    opt, lr, wd, beta);
  ZO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace zo::cuda
