#!/usr/bin/env bash
# usage: bench/gpu_carry.sh [--build]
# Prepares .gpu/ (ignored by git) with what bench/gpu.sh needs on a device machine that has nvcc,
# g++ and CMake but not zo's Debian packages and no network: the fmt, nlohmann-json, CLI11,
# GoogleTest and PCRE2 headers, and GoogleTest's and PCRE2's static libraries. Then call the device
# tool with carry [".gpu"] and
#   command: OUT=$OUT bash bench/gpu.sh
# With --build it also builds the binaries here into .gpu/bin (portable x86-64-v3, stripped), so the
# device machine's minutes go to tests and benchmarks; gpu.sh uses them when they start there, and
# builds there otherwise.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D="$ROOT/.gpu"
rm -rf "$D" && mkdir -p "$D/include" "$D/lib"
cp -r /usr/include/fmt /usr/include/gtest /usr/include/nlohmann /usr/include/CLI "$D/include/"
cp /usr/include/pcre2.h "$D/include/"
cp /usr/lib/x86_64-linux-gnu/libgtest.a /usr/lib/x86_64-linux-gnu/libpcre2-8.a "$D/lib/"
# GoogleTest's sources too: gpu.sh compiles them with the GPU machine's own g++ (no ABI question).
mkdir -p "$D/gtest-src"
cp -r /usr/src/googletest/googletest/src "$D/gtest-src/"
grep -qx '/.gpu/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$ROOT/.git/info/exclude"
if [[ "${1:-}" == --build ]]; then
  ZO_GPU_BUILD_ONLY="$D/bin" ZO_GPU_MARCH=x86-64-v3 OUT="$D/build-logs" bash "$ROOT/bench/gpu.sh"
  # And an AVX-512 zo and host probe (the host updater's z is 2x faster), used where the CPU has it.
  ZO_GPU_BUILD_ONLY="$D/bin-v4" ZO_GPU_MARCH=x86-64-v4 OUT="$D/build-logs-v4" bash "$ROOT/bench/gpu.sh"
  find "$D/bin-v4" -type f ! -name zo ! -name host_probe ! -name BUILT_FROM -delete
fi
du -sh "$D"
