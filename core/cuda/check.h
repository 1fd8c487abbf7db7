// Every CUDA runtime call is checked; a failure throws zo::Error naming the call, the file:line and
// CUDA's message. Include only from .cu files or files compiled against the CUDA runtime.
#pragma once
#include <cuda_runtime.h>

#include "core/error.h"

#define ZO_CUDA_CHECK(call)                                                                               \
  do {                                                                                                    \
    cudaError_t zo_err_ = (call);                                                                         \
    if (zo_err_ != cudaSuccess)                                                                           \
      ::zo::fail("CUDA call {} failed at {}:{}: {} ({})", #call, __FILE__, __LINE__, cudaGetErrorName(zo_err_), \
                 cudaGetErrorString(zo_err_));                                                            \
  } while (0)
