#!/usr/bin/env bash
# The GPU script: run on a machine with an NVIDIA GPU (see bench/README.md, "GPU"). It builds the
# CUDA parts for sm_90 with nvcc directly (no Debian packages needed: bench/gpu_carry.sh prepares
# .gpu/ with fmt and GoogleTest; the CPU reference links a plain-loop CBLAS from bench/gpu_support),
# runs the GPU tests (z, working copies and updates bit-identical to the CPU's; the forward kernels
# and cuBLAS GEMMs in f32/tf32/bf16 against the CPU kernels), then the probe (host<->device
# bandwidth, the perturbation kernel's rate), and writes logs and a results table to $OUT
# (default bench/results/gpu-<time>). Budget: ~3 minutes.
#
# Device tool: run bench/gpu_carry.sh here first, then run with carry [".gpu"] and the command
#   OUT=$OUT bash bench/gpu.sh
# Not yet here (issue 4, open): the GPU training step, the offload engine, and the resident vs
# offloaded training benchmark on OPT-1.3B/6.7B/13B shapes; this script grows with them.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/results/gpu-$(date +%Y%m%d-%H%M%S)}
ARCH=${ZO_CUDA_ARCH:-90}
mkdir -p "$OUT"
B=$(mktemp -d)
INC=(-I"$ROOT" -I"$ROOT/bench/gpu_support")
[[ -d "$ROOT/.gpu/include" ]] && INC+=(-I"$ROOT/.gpu/include")
LIBS=()
if [[ -f "$ROOT/.gpu/lib/libgtest.a" ]]; then LIBS+=("$ROOT/.gpu/lib/libgtest.a"); else LIBS+=(-lgtest); fi
CXXF=(-O3 -std=c++20 -fopenmp -ffp-contract=off -fno-math-errno -DFMT_HEADER_ONLY "${INC[@]}")
NVF=(-O3 -std=c++17 -arch=sm_$ARCH --fmad=false --prec-div=true --prec-sqrt=true -DFMT_HEADER_ONLY "${INC[@]}")
step() { echo "== $*" | tee -a "$OUT/log.txt"; }
{
  echo "date: $(date -Iseconds)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  nvcc --version | tail -2
  g++ --version | head -1
} > "$OUT/machine.txt" 2>&1
t0=$(date +%s)
step "build (sm_$ARCH)"
ok_build=1
g++ "${CXXF[@]}" -c "$ROOT/core/perturb.cpp" -o "$B/perturb.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc "${NVF[@]}" -c "$ROOT/core/cuda/perturb.cu" -o "$B/cuda_perturb.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc "${NVF[@]}" -c "$ROOT/core/cuda/ops.cu" -o "$B/cuda_ops.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
# The CPU reference kernels, over a plain-loop CBLAS (no OpenBLAS on the GPU machine).
g++ "${CXXF[@]}" -c "$ROOT/core/ops.cpp" -o "$B/ops.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
gcc -O2 -fopenmp -c "$ROOT/bench/gpu_support/cblas.c" -o "$B/cblas.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
# The model code the GPU engine and its test need (loading checkpoints, the CPU Engine reference).
MODEL_OBJS=()
for f in core/dtype core/mmap models/model models/config models/load models/safetensors models/gguf \
         models/gguf_quant models/forward; do
  g++ "${CXXF[@]}" -c "$ROOT/$f.cpp" -o "$B/$(basename $f).o" >>"$OUT/log.txt" 2>&1 || ok_build=0
  MODEL_OBJS+=("$B/$(basename $f).o")
done
nvcc "${NVF[@]}" -c "$ROOT/offload/gpu_engine.cu" -o "$B/gpu_engine.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
# gtest_main: a tiny one here (zo's own selects OpenBLAS kernels, which this build has none of).
printf '#include <gtest/gtest.h>\nint main(int c, char** v) { ::testing::InitGoogleTest(&c, v); return RUN_ALL_TESTS(); }\n' > "$B/main.cpp"
g++ "${CXXF[@]}" -c "$B/main.cpp" -o "$B/main.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc "${NVF[@]}" -x cu -c "$ROOT/tests/test_cuda_perturb.cpp" -o "$B/test.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc -arch=sm_$ARCH "$B/test.o" "$B/main.o" "$B/perturb.o" "$B/cuda_perturb.o" "${LIBS[@]}" -Xcompiler -fopenmp \
  -o "$B/test_cuda_perturb" >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc "${NVF[@]}" -x cu -c "$ROOT/tests/test_cuda_ops.cpp" -o "$B/test_ops.o" >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc -arch=sm_$ARCH "$B/test_ops.o" "$B/main.o" "$B/ops.o" "$B/cblas.o" "$B/perturb.o" "$B/cuda_perturb.o" \
  "$B/cuda_ops.o" "${LIBS[@]}" -lcublas -Xcompiler -fopenmp -o "$B/test_cuda_ops" >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc "${NVF[@]}" -x cu -DZO_TEST_DATA="\"$ROOT/tests/data\"" -c "$ROOT/tests/test_cuda_forward.cpp" -o "$B/test_fwd.o" \
  >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc -arch=sm_$ARCH "$B/test_fwd.o" "$B/main.o" "$B/gpu_engine.o" "${MODEL_OBJS[@]}" "$B/ops.o" "$B/cblas.o" \
  "$B/perturb.o" "$B/cuda_perturb.o" "$B/cuda_ops.o" "${LIBS[@]}" -lcublas -Xcompiler -fopenmp \
  -o "$B/test_cuda_forward" >>"$OUT/log.txt" 2>&1 || ok_build=0
nvcc "${NVF[@]}" "$ROOT/bench/gpu_probe.cu" "$B/cuda_perturb.o" "$B/perturb.o" -Xcompiler -fopenmp \
  -o "$B/gpu_probe" >>"$OUT/log.txt" 2>&1 || ok_build=0
step "tests"
tests=""
for t in test_cuda_perturb test_cuda_ops test_cuda_forward; do
  if [[ -x "$B/$t" ]]; then
    timeout 150 "$B/$t" > "$OUT/$t.txt" 2>&1
    tests+="$t: $(grep -E "^\[ +(PASSED|FAILED|SKIPPED) +\] [0-9]+ test" "$OUT/$t.txt" | tr '\n' ' ') "
  else
    tests+="$t: not built "
  fi
done
step "probe"
probe="{}"
if [[ -x "$B/gpu_probe" ]]; then probe=$(timeout 120 "$B/gpu_probe" 2>>"$OUT/log.txt" | tail -1); fi
echo "$probe" > "$OUT/probe.json"
t1=$(date +%s)
{
  echo "| card | build | GPU tests | H2D pinned GB/s | D2H pinned GB/s | H2D pageable GB/s | D2D GB/s (r+w) | fill_z Gvalues/s | perturb Gvalues/s | seconds |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  python3 - "$probe" "$ok_build" "$tests" "$((t1 - t0))" <<'PY'
import json, sys
p = json.loads(sys.argv[1] or "{}")
g = lambda k: p.get(k, "-")
print(f"| {g('device')} | {'ok' if sys.argv[2] == '1' else 'FAILED (log.txt)'} | {sys.argv[3].strip()} | {g('h2d_pinned_gb_s')} | "
      f"{g('d2h_pinned_gb_s')} | {g('h2d_pageable_gb_s')} | {g('d2d_gb_s_read_plus_write')} | {g('fill_z_gvalues_s')} | "
      f"{g('perturb_gvalues_s')} | {sys.argv[4]} |")
PY
} | tee "$OUT/table.md"
rm -rf "$B"
