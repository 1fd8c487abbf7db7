// Benchmarks run from the CLI (`zo bench ...`). Each prints what it achieved next to the ceiling
// measured on the same machine in the same run (OpenBLAS sgemm on the same GEMM shapes).
#pragma once
#include <string>

#include "core/perturb.h"  // Dist
#include "models/config.h"
#include "models/model.h"

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

// Random weights (normal, std 0.02; norms around 1), a slab at a time: no tensor-sized temporary.
void fill_random(Model& m, uint64_t seed);
// Resets the kernel's peak-RSS mark (VmHWM) so a measurement sees only its own peak.
void reset_peak_rss();

// What a host can do for the streaming engine's updater, on the current OpenMP threads (best of
// three each): a read-modify-write pass over 1 GiB of f32 (8 bytes per element, the least any
// update of f32 masters in host memory moves) and z generation in cache (each thread refilling its
// own 64 Ki values, as the fused updater does). `zo bench train --device cuda` reports the floor
// they set for an offloaded step; bench/host_probe.cpp prints them per thread count.
struct HostRates {
  double rmw_gb_s = 0, z_gvalues_s = 0;
};
HostRates measure_host_rates(Dist dist);

struct BenchTrainArgs {
  std::string shape = "smollm-135m";  // or opt-125m; ignored with --model
  std::string model;                  // a real checkpoint instead of random weights
  std::string data;                   // SST-2 JSONL (rows used in file order, as tools/mezo_torch.py)
  std::string mode = "train";         // train | inference (the same batches, scoring only)
  int steps = 20, warmup = 2, batch = 16;
  double lr = 1e-6, eps = 1e-3;
  std::string dist = "gaussian";      // gaussian | rademacher (the directions' distribution)
  std::string offload = "none";       // none | disk (masters in a file, see Model::allocate)
  std::string offload_file;           // default: $TMPDIR/zo-bench-masters-<pid>.f32 (unlinked at once)
  bool cold = false;                  // disk: write back and drop the file's page cache every step
  int seq_len = 0;                    // > 0 without --data: random prompts of this many tokens
  std::string device = "cpu";         // cpu | cuda (zo/device.h)
  double gpu_mem = 0;                 // cuda: bytes for weights and buffers (0: all resident)
  double gpu_reserve = double(1u << 30);
  std::string wire = "f32", gemm = "tf32";
  int device_updates = 0;             // cuda: streamed blocks updated on the device (two-way); -1: auto
  std::string placement = "auto";     // cuda: which blocks stream (offload/residency.h): auto | tail | spread | first
  bool json = false;
};
int bench_train(const BenchTrainArgs& a);

// Peak resident set size of this process so far, in bytes (getrusage).
size_t peak_rss_bytes();
// Current resident set size, in bytes (/proc/self/statm).
size_t current_rss_bytes();

}  // namespace zo
