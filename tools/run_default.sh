#!/usr/bin/env bash
# The main job on the built-in default: the default model (SmolLM2-135M-Instruct, Q4_1 GGUF)
# evaluated zero-shot on SST-2 with MeZO's prompt ("<sentence> It was terrible|great"), on 500
# examples of the SST-2 file (../shared/data/sst2/train.jsonl, or $ZO_SST2).
# (Until `zo train` exists, the main job is this evaluation.)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
DATA="${ZO_SST2:-$ROOT/../shared/data/sst2/train.jsonl}"
if [[ ! -f "$DATA" ]]; then
  echo "run_default.sh: SST-2 data not found at $DATA (set ZO_SST2=path/to/train.jsonl)" >&2
  exit 1
fi
"$BUILD_DIR/bin/zo" inspect default
echo
"$BUILD_DIR/bin/zo" generate --model default --prompt "The capital of France is" --max-new-tokens 12
echo
"$BUILD_DIR/bin/zo" eval --model default --task sst2 --data "$DATA" --limit 500 --batch 16
