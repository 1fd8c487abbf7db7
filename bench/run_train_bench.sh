#!/usr/bin/env bash
# zo's MeZO training step next to the PyTorch MeZO reference (tools/mezo_torch.py), in one run on
# one machine (see bench/README.md, "Training").
#
#   bench/run_train_bench.sh [--steps N] [--torch-steps N] [--threads N] [--shapes opt-125m,smollm-135m,default]
#
# Per shape, each in its own process (peak RSS is per process): zo inference (scoring the same
# batches: zo's inference-level memory), zo train, torch MeZO. Batch 16 of SST-2 rows in file order.
# "default" is the real default model (SmolLM2-135M-Instruct GGUF, dequantised to f32 on both sides).
# Environment: ZO (default build/bin/zo), PYTHON (torch + transformers), DATA (SST-2 JSONL), OUT.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEPS=20
TORCH_STEPS=8
THREADS=$(nproc)
SHAPES=opt-125m,smollm-135m,default
while [[ $# -gt 0 ]]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --torch-steps) TORCH_STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --shapes) SHAPES=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run_train_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
ZO=${ZO:-$ROOT/build/bin/zo}
DATA=${DATA:-$ROOT/../shared/data/sst2/train.jsonl}
[[ -x "$ZO" ]] || { echo "run_train_bench.sh: no zo binary at '$ZO' (build it, or set ZO=)" >&2; exit 1; }
[[ -f "$DATA" ]] || { echo "run_train_bench.sh: no SST-2 data at '$DATA' (set DATA=)" >&2; exit 1; }
if [[ -z "${PYTHON:-}" ]]; then
  for p in "$ROOT/venv/bin/python" /work/venv/bin/python python3; do
    if command -v "$p" >/dev/null 2>&1; then PYTHON=$p; break; fi
  done
fi
"$PYTHON" -c "import torch, transformers" 2>/dev/null || { echo "run_train_bench.sh: '$PYTHON' lacks torch/transformers (set PYTHON=)" >&2; exit 1; }
OUT=${OUT:-$ROOT/bench/results/train-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
GGUF=$("$ZO" inspect default --json 2>/dev/null | tail -1 | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['model'])" 2>/dev/null || true)
{
  echo "date: $(date -Iseconds)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty tree)')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "cores: $(nproc), threads: $THREADS"
  echo "steps: zo $STEPS, torch $TORCH_STEPS (after 2 warm-up steps each)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
export OMP_NUM_THREADS=$THREADS
IFS=, read -ra shapes <<< "$SHAPES"
for s in "${shapes[@]}"; do
  if [[ $s == default ]]; then zsel=(--model default); tsel=(--model "$GGUF"); else zsel=(--shape "$s"); tsel=(--shape "$s"); fi
  echo "== $s: zo inference" >&2
  "$ZO" bench train "${zsel[@]}" --data "$DATA" --mode inference --steps "$STEPS" --json | tail -1 > "$OUT/$s.zo_inference.json"
  echo "== $s: zo train" >&2
  "$ZO" bench train "${zsel[@]}" --data "$DATA" --mode train --steps "$STEPS" --json | tail -1 > "$OUT/$s.zo_train.json"
  echo "== $s: torch MeZO" >&2
  "$PYTHON" "$ROOT/tools/mezo_torch.py" "${tsel[@]}" --data "$DATA" --steps "$TORCH_STEPS" --threads "$THREADS" --json \
    2>"$OUT/$s.torch.err" | tail -1 > "$OUT/$s.torch.json"
  echo "load after $s: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
done
"$PYTHON" "$ROOT/bench/train_report.py" "$OUT" | tee "$OUT/report.md"
