// Device mirrors of core/perturb.h: the same Philox mapping (core/philox.h, compiled with
// --fmad=false), so a direction made on the GPU is bit-identical to the CPU's. Pointers are device
// pointers; stream is a cudaStream_t passed as void*. Launch failures throw zo::Error.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/perturb.h"

namespace zo::cuda {

// Number of CUDA devices usable by this process (0 when there is no driver or no GPU; never throws).
int device_count();

void fill_z(float* z, uint64_t seed, uint64_t tid, size_t begin, size_t n, Dist dist, void* stream);
void perturb_range(float* dst, const float* w, float scale, uint64_t seed, uint64_t tid, size_t begin, size_t n,
                   Dist dist, void* stream);
// terms: host array of q UpdateTerm (copied to the kernel's parameters; q <= 16 per launch).
void zo_update(float* w, float* m, size_t n, uint64_t tid, size_t begin, const UpdateTerm* terms, int q, Dist dist,
               OptKind opt, float lr, float wd, float beta, void* stream);

}  // namespace zo::cuda
