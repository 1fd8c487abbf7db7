// zo built without the CUDA toolkit: the CPU is the only device.
#include "core/error.h"
#include "zo/device.h"

namespace zo {
bool cuda_built() { return false; }
int cuda_devices() { return 0; }
std::unique_ptr<StepDevice> make_cuda_device(const Model&, const DeviceOptions&) {
  fail("--device cuda: this zo was built without the CUDA toolkit (install nvcc and rebuild; see README)");
}
double cuda_h2d_pinned_gbs(size_t) { fail("built without CUDA"); }
double cuda_gemm_tflops(const std::string&, int, int, int) { fail("built without CUDA"); }
std::string cuda_device_name() { return "none"; }
}  // namespace zo
