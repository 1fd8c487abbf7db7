#!/usr/bin/env bash
# Runs the whole test suite:
#  1. builds (Release) and runs every test with ctest: parity with transformers fixtures, kernels
#     against float64, parsers and their bad-input cases, the CLI end to end, and each fuzz target
#     over its seeds plus a bounded number of mutated inputs;
#  2. on an x86 CPU with AVX2 and a native build that used AVX-512: builds the perturbation and wire
#     tests again for x86-64-v3 (build-avx2/, about a minute) and runs them, so the AVX2 paths of the
#     Philox rounds and the encoders are held to the same bits as the others;
#  3. with clang present: builds the fuzz targets as coverage-guided libFuzzer binaries with
#     ASan/UBSan (build-fuzz/) and runs each for a bounded number of inputs.
# Tests that need the default model skip cleanly when it is not installed (tools/setup.sh installs
# it); tests that need a GPU skip without one. ZO_SKIP_LIBFUZZER=1 skips step 3.
#   bash tools/test.sh [ctest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
FUZZ_DIR="${FUZZ_DIR:-$ROOT/build-fuzz}"
AVX2_DIR="${AVX2_DIR:-$ROOT/build-avx2}"
export ZO_DEFAULT_GGUF="${ZO_DEFAULT_GGUF:-${ZO_HOME:-$HOME/.cache/zo}/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
(cd "$BUILD_DIR" && ctest --output-on-failure -j"$(nproc)" "$@")

if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw avx512f /proc/cpuinfo; then
  echo "== the AVX2 paths (x86-64-v3) of the perturbation and wire kernels in $AVX2_DIR"
  cmake -S "$ROOT" -B "$AVX2_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DZO_NATIVE=OFF -DZO_CUDA=OFF \
        -DCMAKE_CXX_FLAGS=-march=x86-64-v3 >/dev/null
  cmake --build "$AVX2_DIR" -j"$(nproc)" --target test_perturb test_wire
  (cd "$AVX2_DIR" && ctest --output-on-failure --no-tests=error -R '^(Philox|Perturb|Wire)\.')
fi

if [[ "${ZO_SKIP_LIBFUZZER:-0}" != 1 ]] && command -v clang++ >/dev/null; then
  echo "== libFuzzer targets (clang, ASan + UBSan) in $FUZZ_DIR"
  cmake -S "$ROOT" -B "$FUZZ_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
        -DCMAKE_CXX_COMPILER=clang++ -DZO_FUZZ=ON -DZO_CUDA=OFF >/dev/null
  targets=$(cd "$ROOT/tests/fuzz" && ls fuzz_*.cpp | sed 's/\.cpp$//')
  cmake --build "$FUZZ_DIR" -j"$(nproc)" --target $targets
  (cd "$FUZZ_DIR" && ctest --output-on-failure -R '^fuzz_')
fi
