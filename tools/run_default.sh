#!/usr/bin/env bash
# The main job on the built-in default: MeZO fine-tuning of the default model
# (SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to f32 masters) on SST-2 with MeZO's protocol and
# prompt ("<sentence> It was terrible|great"): 1,000 training and 500 dev examples sampled from
# ../shared/data/sst2/train.jsonl (or $ZO_SST2), plus 1,000 test examples carved from the same file,
# disjoint, with a fixed seed. Test accuracy is reported zero-shot, after the last step, and at the
# best dev step. Settings are those of bench/README.md ("SST-2 fine-tuning"); ZO_STEPS shortens it.
#   ZO_RUN=DIR    run folder (default runs/sst2-default-<time>); an interrupted run continues with
#                 build/bin/zo train --resume --out DIR
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
DATA="${ZO_SST2:-$ROOT/../shared/data/sst2/train.jsonl}"
STEPS="${ZO_STEPS:-2000}"
RUN="${ZO_RUN:-$ROOT/runs/sst2-default-$(date +%Y%m%d-%H%M%S)}"
if [[ ! -f "$DATA" ]]; then
  echo "run_default.sh: SST-2 data not found at $DATA (set ZO_SST2=path/to/train.jsonl)" >&2
  exit 1
fi
"$BUILD_DIR/bin/zo" inspect default
echo
echo "Fine-tuning (MeZO, $STEPS steps) into $RUN"
"$BUILD_DIR/bin/zo" train --model default --task sst2 --data "$DATA" \
  --n-train 1000 --n-dev 500 --n-test 1000 --data-seed 0 \
  --steps "$STEPS" --batch 16 --lr 1e-5 --eps 1e-3 --seed 0 --eval-every 200 --out "$RUN"
