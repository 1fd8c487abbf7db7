#include "core/blas.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace zo {

const char* blas_core_name() { return openblas_get_corename(); }

void blas_select_kernels(int /*argc*/, char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("ZO_NO_BLAS_REEXEC")) return;
  const char* core = openblas_get_corename();
  if (!core || (std::strcmp(core, "Prescott") != 0 && std::strcmp(core, "Core2") != 0 &&
                std::strcmp(core, "Nehalem") != 0 && std::strcmp(core, "Sandybridge") != 0))
    return;
  const char* want = nullptr;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    want = "Haswell";
#endif
  if (!want || std::strcmp(core, want) == 0) return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  execv("/proc/self/exe", argv);
  // execv failed (no /proc?): carry on with the generic kernels; results are still correct.
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace zo
