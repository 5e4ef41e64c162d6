#!/usr/bin/env bash
# Interactive fine-tuning of the embedded tiny SAM (SAM's corrective-click training) on cached
# image embeddings: the image encoder stays frozen, the prompt encoder and mask decoder train.
#
#   scripts/finetune_interactive.sh          # train (resumable: rerun the same command), then export
#
# Recipe: `stablesam train --tune prompt+decoder` with the RTS mixture below: half the objects
# get a simulated session (`stablesam.training.interactive`: a jittered box or one click, 8 corrective
# clicks from the error region with the previous logits as mask_input, 2 rounds without a new
# click, focal + Dice + IoU loss on every round), the rest the base's own prompts (ground-truth
# boxes, 1-5 clicks) so that they do not get worse. Adam, lr 1e-4 (constant), 2 epochs of the
# training split = 550 steps of 8, one process: 58 min of training plus about 5 min embedding the
# training images, on this 2-core CPU with other jobs running. The weights after 1 epoch are
# written too; EPOCHS=3 continues a finished run (--resume) to a third epoch. The result is
# exported as a float16 SAM file (the embedded format) to $RUN/tiny_sam.pt (STAGE=interactive
# scripts/build_embedded.sh ships it). The base it starts from is BASE (default: the v2 base as
# shipped before this fine-tune, taken from git).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
RUN=${RUN:-runs/interactive}
BASE_COMMIT=${BASE_COMMIT:-0320345}
SETS=("$DATA/davis345" "$DATA/coco_mval" "$DATA/weizmann_horse" "$DATA/ecssd" "$DATA/oxford_pets")
MIX="gt-box=0.2,noisy-box=0,points=0.3,box+points=0,interactive=0.5,part-clicks=0,interactive-clicks=8,deepest-clicks=0.5"
mkdir -p "$RUN"
if [ -z "${BASE:-}" ]; then
  BASE="$RUN/base_tiny_sam.pt"
  [ -f "$BASE" ] || git show "$BASE_COMMIT:src/stablesam/weights/tiny_sam.pt" > "$BASE"
fi
# The run takes hours and imports stablesam late: it runs from a copy of the code taken when it
# starts, so that edits to the working tree cannot reach it.
CODE="$RUN/code"
rm -rf "$CODE.tmp" && mkdir -p "$CODE.tmp" && cp -r src "$CODE.tmp/" && cp -r scripts "$CODE.tmp/"
rm -rf "$CODE" && mv "$CODE.tmp" "$CODE"
OMP_NUM_THREADS=${THREADS:-1} PYTHONPATH="$CODE/src" "$PY" -m stablesam train --model "sam:$BASE" \
  --tune prompt+decoder --data "${SETS[@]}" --split splits/train.txt --rts-mixture "$MIX" \
  --epochs "${EPOCHS:-2}" --snapshot-epochs 1 --batch-size 8 --lr "${LR:-1e-4}" --seed 0 \
  --checkpoint-every 25 --out "$RUN/train" --resume
PYTHONPATH="$CODE/src" "$PY" "$CODE/scripts/export_sam_file.py" --base "$BASE" --decoder "$RUN/train/decoder.pt" \
  --out "$RUN/tiny_sam.pt"
