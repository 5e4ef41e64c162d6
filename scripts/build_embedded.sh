#!/usr/bin/env bash
# Rebuild the embedded model (src/stablesam/weights/) from ../shared/data with fixed seeds:
# the tiny SAM v2 base, its interactive fine-tuning (the shipped `tiny-sam`), then its Stable-SAM
# plugin, then SHA256SUMS.
#
#   scripts/build_embedded.sh                    # everything (about 6.5 h of base training on this 2-core CPU)
#   STAGE=base scripts/build_embedded.sh         # the v2 base only (resumable: rerun the same command)
#   STAGE=interactive scripts/build_embedded.sh  # SAM's interactive training of a v2 base (BASE=FILE, default
#                                                # the v2 base from git; resumable; scripts/finetune_interactive.sh)
#   STAGE=plugin scripts/build_embedded.sh       # only the plugin, on the shipped base
#
# The base trains 7,000 steps of 8 images x 2 prompts on one thread (bfloat16 autocast), in
# pieces: a piece stops cleanly at --minutes (MINUTES, default 120) and the same command resumes
# it exactly from $RUN/base/checkpoint.pt (each step's data is a pure function of (seed, step)).
# A machine that lost $RUN can continue from exported float16 weights (the file --export writes,
# with the step they reached): INIT=FILE continues from them with a fresh optimizer and a
# 100-step learning-rate re-warmup, on the same schedule. bf16 autocast on another CPU can end
# with slightly different weights; rerun and compare with `stablesam eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
RUN=${RUN:-runs/embedded}
WEIGHTS=src/stablesam/weights
STAGE=${STAGE:-all}
# The architecture is the trainer's default, stablesam.modeling.small_sam.TINY_SAM_ARCH (4 stages,
# strides 4-32, a pyramid neck to SAM's decoder at 32 x 32): docs/results/tiny_sam_v2_pilots.md says why this grid.
SETS=("$DATA/davis345" "$DATA/coco_mval" "$DATA/weizmann_horse" "$DATA/ecssd" "$DATA/oxford_pets")
mkdir -p "$RUN"

if [ "$STAGE" = all ] || [ "$STAGE" = base ]; then
  INIT_ARGS=()
  if [ -n "${INIT:-}" ] && [ ! -f "$RUN/base/checkpoint.pt" ]; then INIT_ARGS=(--init "$INIT"); fi
  # A piece runs for hours and imports parts of stablesam late (its validation), so it runs from
  # a copy of the code taken when the piece starts: edits to the working tree cannot reach it.
  CODE="$RUN/code"
  rm -rf "$CODE.tmp" && mkdir -p "$CODE.tmp/src" && cp -r scripts "$CODE.tmp/" && cp -r src/stablesam "$CODE.tmp/src/"
  rm -rf "$CODE" && mv "$CODE.tmp" "$CODE"
  "$PY" "$CODE/scripts/train_tiny_sam.py" --split-dir splits --data-root "$DATA" --out "$RUN/base" --resume --seed 0 \
    --total-steps 7000 --warmup-steps 200 --batch-size 8 --prompts-per-image 2 --threads "${THREADS:-1}" \
    --export "$RUN/tiny_sam.pt" --export-dtype float16 --eval-val 150 --eval-minutes 45 \
    --minutes "${MINUTES:-120}" "${INIT_ARGS[@]}"
  step=$("$PY" -c "import torch; print(torch.load('$RUN/tiny_sam.pt', weights_only=True)['meta']['steps'])")
  if [ "$step" -lt 7000 ]; then echo "base at step $step of 7000: rerun to continue"; exit 0; fi
  BASE="$RUN/tiny_sam.pt"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = interactive ]; then
  BASE="${BASE:-}" RUN="$RUN/interactive" PY="$PY" DATA="$DATA" scripts/finetune_interactive.sh
  cp "$RUN/interactive/tiny_sam.pt" "$WEIGHTS/tiny_sam.pt"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = plugin ]; then
  # Stable-SAM plugin: the default recipe (PluginConfig, RTS mixture with corrective-click
  # sessions, consistency and α-prior terms; PLUGIN_MIXTURE overrides the mixture), 1 epoch, fixed seed; NPROC
  # processes (default 2, one per core: each embeds half the images, then they train in step;
  # the result equals one process's up to float rounding).
  OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --nproc_per_node "${NPROC:-2}" --master_port 29531 \
    -m stablesam train --model "sam:$WEIGHTS/tiny_sam.pt" --tune plugins --data "${SETS[@]}" \
    --split splits/train.txt --epochs "${PLUGIN_EPOCHS:-1}" --batch-size 8 --lr 1e-4 --seed 0 \
    ${PLUGIN_MIXTURE:+--rts-mixture "$PLUGIN_MIXTURE"} \
    --out "$RUN/plugin" --resume
  cp "$RUN/plugin/plugin.pt" "$WEIGHTS/tiny_stable_sam_plugin.pt"
  (cd "$WEIGHTS" && sha256sum tiny_sam.pt tiny_stable_sam_plugin.pt > SHA256SUMS)
  echo "wrote $WEIGHTS/tiny_sam.pt, $WEIGHTS/tiny_stable_sam_plugin.pt and SHA256SUMS"
fi
