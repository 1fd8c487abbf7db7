// The device's directions and updates against the CPU reference (core/perturb.cpp, itself pinned to
// Random123 and tools/zo_philox.py): bit for bit, not within a tolerance. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/perturb.h"
#include "core/perturb.h"

using namespace zo;

namespace {

struct DeviceBuffer {
  float* p = nullptr;
  explicit DeviceBuffer(size_t n) { ZO_CUDA_CHECK(cudaMalloc(&p, n * sizeof(float))); }
  ~DeviceBuffer() { cudaFree(p); }
};

std::vector<float> to_host(const DeviceBuffer& d, size_t n) {
  std::vector<float> h(n);
  ZO_CUDA_CHECK(cudaMemcpy(h.data(), d.p, n * sizeof(float), cudaMemcpyDeviceToHost));
  return h;
}

void to_device(DeviceBuffer& d, const std::vector<float>& h) {
  ZO_CUDA_CHECK(cudaMemcpy(d.p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
}

#define REQUIRE_GPU()                                                                          \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU test skipped (compiled only)"

}  // namespace

TEST(CudaPerturb, DirectionsAreBitIdenticalToTheCpu) {
  REQUIRE_GPU();
  for (Dist dist : {Dist::Gaussian, Dist::Rademacher})
    for (size_t begin : {size_t(0), size_t(3), size_t(1) << 33}) {
      const size_t n = 1000003;
      std::vector<float> cpu(n);
      fill_z(cpu.data(), 0xfeedull, 42, begin, n, dist);
      DeviceBuffer d(n);
      cuda::fill_z(d.p, 0xfeedull, 42, begin, n, dist, nullptr);
      ZO_CUDA_CHECK(cudaDeviceSynchronize());
      auto gpu = to_host(d, n);
      ASSERT_EQ(std::memcmp(cpu.data(), gpu.data(), n * sizeof(float)), 0) << "begin " << begin;
    }
}

TEST(CudaPerturb, WorkingCopiesAndUpdatesAreBitIdenticalToTheCpu) {
  REQUIRE_GPU();
  const size_t n = 300007, begin = 17;
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> w(n), m(n);
  for (size_t i = 0; i < n; i++) w[i] = nd(g), m[i] = nd(g);
  DeviceBuffer dw(n), dm(n), dd(n);
  to_device(dw, w);
  std::vector<float> cpu(n);
  perturb_range(cpu.data(), w.data(), -1e-3f, 9, 77, begin, n, Dist::Gaussian);
  cuda::perturb_range(dd.p, dw.p, -1e-3f, 9, 77, begin, n, Dist::Gaussian, nullptr);
  ZO_CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(std::memcmp(cpu.data(), to_host(dd, n).data(), n * sizeof(float)), 0);
  UpdateTerm t[3] = {{11, 0.5f}, {12, -1.25f}, {13, 3.0f}};
  for (OptKind k : {OptKind::SGD, OptKind::Momentum, OptKind::Sign}) {
    std::vector<float> wc(w), mc(m);
    zo_update(wc.data(), mc.data(), n, 77, begin, t, 3, Dist::Gaussian, k, 1e-3f, 0.1f, 0.9f);
    to_device(dw, w);
    to_device(dm, m);
    cuda::zo_update(dw.p, dm.p, n, 77, begin, t, 3, Dist::Gaussian, k, 1e-3f, 0.1f, 0.9f, nullptr);
    ZO_CUDA_CHECK(cudaDeviceSynchronize());
    ASSERT_EQ(std::memcmp(wc.data(), to_host(dw, n).data(), n * sizeof(float)), 0) << int(k);
    ASSERT_EQ(std::memcmp(mc.data(), to_host(dm, n).data(), n * sizeof(float)), 0) << int(k);
  }
}

TEST(CudaPerturb, FailuresNameTheCall) {
  REQUIRE_GPU();
  void* p = nullptr;
  try {
    ZO_CUDA_CHECK(cudaMalloc(&p, size_t(1) << 62));
    FAIL() << "allocating 4 EiB succeeded";
  } catch (const zo::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cudaMalloc"), std::string::npos) << e.what();
  }
}
