#!/usr/bin/env bash
# Rebuild the embedded model (src/stablesam/weights/) from ../shared/data with fixed seeds:
# the tiny SAM base, then its Stable-SAM plugin, then SHA256SUMS.
#
#   scripts/build_embedded.sh            # everything (about 2.5 h of base training on 2 CPU cores)
#   STAGE=plugin scripts/build_embedded.sh   # only the plugin, on the shipped base
#
# The shipped base was trained in the same two pieces this script runs: steps 0-1243 of a
# 3,600-step schedule, then (from the exported weights, fresh optimizer, 100-step LR re-warmup)
# steps 1243-3150 of a 3,150-step schedule. Each step's data is a pure function of (seed, step),
# so a piece interrupted and continued with --resume sees the same data. bf16 autocast on the CPU
# means another CPU can end with slightly different weights; rerun and compare with `stablesam eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
RUN=${RUN:-runs/embedded}
WEIGHTS=src/stablesam/weights
STAGE=${STAGE:-all}
mkdir -p "$RUN"

if [ "$STAGE" = all ]; then
  "$PY" scripts/train_tiny_sam.py --data-root "$DATA" --out "$RUN/base1" --resume --seed 0 \
    --total-steps 3600 --steps-this-run 1243 --batch-size 8 --prompts-per-image 2 --threads 1 \
    --export "$RUN/base_step1243.pt"
  "$PY" scripts/train_tiny_sam.py --data-root "$DATA" --out "$RUN/base2" --resume --seed 0 \
    --init "$RUN/base_step1243.pt" --total-steps 3150 --batch-size 8 --prompts-per-image 2 --threads 1 \
    --export "$RUN/tiny_sam.pt" --eval-val 100
  cp "$RUN/tiny_sam.pt" "$WEIGHTS/tiny_sam.pt"
fi

# Stable-SAM plugin: RTS on the training split (default plugin config), fixed seed.
"$PY" -m stablesam train --model "sam:$WEIGHTS/tiny_sam.pt" --tune plugins \
  --data "$DATA/davis345" "$DATA/coco_mval" "$DATA/weizmann_horse" --split splits/train.txt \
  --epochs "${PLUGIN_EPOCHS:-4}" --batch-size 8 --lr 1e-3 --seed 0 --out "$RUN/plugin" --resume
cp "$RUN/plugin/plugin.pt" "$WEIGHTS/tiny_stable_sam_plugin.pt"

(cd "$WEIGHTS" && sha256sum tiny_sam.pt tiny_stable_sam_plugin.pt > SHA256SUMS)
echo "wrote $WEIGHTS/tiny_sam.pt, $WEIGHTS/tiny_stable_sam_plugin.pt and SHA256SUMS"
