// ZO_HD: functions compiled for the host and, under nvcc, for the device too, so that both sides
// run the same code (and give the same bits where the code fixes every operation's order).
#pragma once

#ifdef __CUDACC__
#define ZO_HD __host__ __device__ __forceinline__
#else
#define ZO_HD inline
#endif
