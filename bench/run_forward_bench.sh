#!/usr/bin/env bash
# zo forward throughput next to PyTorch/transformers, in one run on one machine (see bench/README.md).
#
#   bench/run_forward_bench.sh [--quick] [--rounds N] [--repeat N] [--threads N] [--shapes a,b]
#                              [--batches 16x64,4x512] [--attn sdpa,eager]
#
# Environment: ZO (zo binary, default build/bin/zo), PYTHON (with torch + transformers, default
# venv/bin/python, then /work/venv/bin/python), OUT (results folder, default
# bench/results/forward-<date>; results folders are not committed).
# Every shape x batch runs in its own zo process and its own torch process (peak RSS is per process),
# zo and torch alternating so that a change of machine load hits both sides alike; --rounds N repeats
# the whole alternation N times and the table reports medians over rounds (use 3 on a noisy machine).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPEAT=5
ROUNDS=1
BATCHES=16x64,4x512
SHAPES=opt-125m,smollm-135m
ATTN=sdpa,eager
THREADS=$(nproc)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) REPEAT=2 BATCHES=16x64 ATTN=sdpa ROUNDS=1; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --shapes) SHAPES=$2; shift 2 ;;
    --batches) BATCHES=$2; shift 2 ;;
    --attn) ATTN=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run_forward_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

ZO=${ZO:-$ROOT/build/bin/zo}
if [[ ! -x "$ZO" ]]; then
  echo "run_forward_bench.sh: no zo binary at '$ZO': build it (cmake --build <dir> --target zo) and set ZO=<dir>/bin/zo" >&2
  exit 1
fi
if [[ -z "${PYTHON:-}" ]]; then
  for p in "$ROOT/venv/bin/python" /work/venv/bin/python python3; do
    if command -v "$p" >/dev/null 2>&1; then PYTHON=$p; break; fi
  done
fi
if ! "$PYTHON" -c "import torch, transformers" 2>/dev/null; then
  echo "run_forward_bench.sh: '$PYTHON' cannot import torch and transformers (set PYTHON=)" >&2
  exit 1
fi
OUT=${OUT:-$ROOT/bench/results/forward-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

# The machine, and its load before/between/after the runs (other processes skew both sides).
{
  echo "date: $(date -Iseconds)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty tree)')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "cores: $(nproc)"
  echo "threads: $THREADS"
  echo "repeat: $REPEAT, rounds: $ROUNDS"
  echo "zo: $ZO"
  echo "python: $PYTHON"
} > "$OUT/machine.txt"
log_load() { echo "load $1: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"; }
log_load start
cat "$OUT/machine.txt"

IFS=, read -r -a shapes <<< "$SHAPES"
IFS=, read -r -a batches <<< "$BATCHES"
for round in $(seq 1 "$ROUNDS"); do
  for shape in "${shapes[@]}"; do
    for bt in "${batches[@]}"; do
      tag="$shape-$bt-r$round"
      echo "== round $round: $shape $bt: zo"
      OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS \
        "$ZO" bench forward --shapes "$shape" --batches "$bt" --repeat "$REPEAT" --json > "$OUT/zo-$tag.log"
      head -n -1 "$OUT/zo-$tag.log"
      log_load "after zo $tag"
      echo "== round $round: $shape $bt: torch ($ATTN)"
      "$PYTHON" "$ROOT/tools/bench_forward_torch.py" --shapes "$shape" --batches "$bt" --repeat "$REPEAT" \
        --threads "$THREADS" --attn "$ATTN" --json > "$OUT/torch-$tag.log"
      head -n -1 "$OUT/torch-$tag.log"
      log_load "after torch $tag"
    done
  done
done

"$PYTHON" "$ROOT/bench/forward_report.py" "$OUT" | tee "$OUT/table.md"
echo "results in $OUT"
