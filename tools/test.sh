#!/usr/bin/env bash
# Runs the whole test suite: builds (Release) if needed, then every test with ctest: parity with
# transformers fixtures, parsers and their bad-input cases, and each fuzz target over its seeds
# plus a bounded number of mutated inputs. Tests that need the default model skip cleanly when it
# is not installed (tools/setup.sh installs it); tests that need a GPU skip without one.
#   bash tools/test.sh [ctest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
export ZO_DEFAULT_GGUF="${ZO_DEFAULT_GGUF:-${ZO_HOME:-$HOME/.cache/zo}/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
cd "$BUILD_DIR"
ctest --output-on-failure -j"$(nproc)" "$@"
