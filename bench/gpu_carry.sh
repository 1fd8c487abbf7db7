#!/usr/bin/env bash
# Prepares .gpu/ (ignored by git) with what bench/gpu.sh needs on a device machine that has nvcc,
# g++ and CMake but not zo's Debian packages and no network: fmt, nlohmann-json and GoogleTest headers and
# GoogleTest's static libraries. Then call the device tool with carry [".gpu"] and
#   command: OUT=$OUT bash bench/gpu.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D="$ROOT/.gpu"
rm -rf "$D" && mkdir -p "$D/include" "$D/lib"
cp -r /usr/include/fmt /usr/include/gtest /usr/include/nlohmann "$D/include/"
cp /usr/lib/x86_64-linux-gnu/libgtest.a "$D/lib/"
grep -qx '/.gpu/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$ROOT/.git/info/exclude"
du -sh "$D"
