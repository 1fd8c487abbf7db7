// Benchmarks run from the CLI (`zo bench ...`). Each prints what it achieved next to the ceiling
// measured on the same machine in the same run (OpenBLAS sgemm on the same GEMM shapes).
#pragma once
#include <string>

#include "models/config.h"

namespace zo {

struct BenchForwardArgs {
  std::string shapes = "opt-125m,smollm-135m";
  std::string batches = "16x64,4x512";
  int repeat = 5;
  std::string dtype = "f32";
  bool json = false;
};
int bench_forward(const BenchForwardArgs& a);

// Published shapes of the models the issue names (weights are random: speed does not depend on them).
ModelConfig shape_config(const std::string& name);

// Peak resident set size of this process so far, in bytes (getrusage).
size_t peak_rss_bytes();
// Current resident set size, in bytes (/proc/self/statm).
size_t current_rss_bytes();

}  // namespace zo
