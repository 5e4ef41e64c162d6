#!/usr/bin/env bash
# Issue 12's study: what makes DSP + DRP work, on the embedded base (tiny SAM v2 once shipped).
# Every variant trains with the same data (the five-set training split), seed, batch and step
# budget (EPOCHS, default 4, except the training-length rows), changing one thing against the
# default; every one is scored on the validation split with K = 20 on gt-box, noisy-box@0.2/0.4,
# points@1/3 (mIoU, mBIoU, stability) and with --explain (the mask token's attention inside the
# object). Resumable: a finished variant is skipped, an interrupted one continues (--resume).
#
#   STUDY="length rts offsets routing extensions dt" scripts/plugin_study.sh
#   python scripts/study_table.py runs/study --out docs/results/plugin_study.md   # the study table
#   python scripts/summarize_results.py runs/study/eval_*      # every metric, model by model
set -euo pipefail
cd "$(dirname "$0")/.."
SAM=${SAM:-.venv/bin/stablesam}
D=${DATA:-../shared/data}
RUN=${RUN:-runs/study}
BASE=${BASE:-tiny-sam}
EPOCHS=${EPOCHS:-4}
SETS=("$D/davis345" "$D/coco_mval" "$D/weizmann_horse" "$D/ecssd" "$D/oxford_pets")
TRAIN=(--data "${SETS[@]}" --split "${TRAIN_SPLIT:-splits/train.txt}" --batch-size 8 --lr 1e-3 --seed 0 --device cpu)
VAL=(--data "${SETS[@]}" --split "${VAL_SPLIT:-splits/val.txt}" --seed 0 --device cpu --samples 20
     --prompts gt-box,noisy-box@0.2,noisy-box@0.4,points@1,points@3 --explain 4)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUN"

evaluate() {  # evaluate NAME SPEC: score once into $RUN/eval_NAME
  [ -f "$RUN/eval_$1/results.json" ] || $SAM eval --model "$2" "${VAL[@]}" --out "$RUN/eval_$1"
}

variant() {  # variant NAME TUNE EPOCHS [train flags...]: train once, evaluate once
  local name=$1 tune=$2 epochs=$3; shift 3
  local file=plugin.pt; [ "$tune" = decoder ] && file=decoder.pt
  if [ ! -f "$RUN/$name/$file" ]; then
    $SAM train --model "$BASE" --tune "$tune" --epochs "$epochs" "${TRAIN[@]}" "$@" --out "$RUN/$name" --resume
  fi
  local spec="$BASE+plugin=$RUN/$name/plugin.pt"; [ "$tune" = decoder ] && spec="$BASE+decoder=$RUN/$name/decoder.pt"
  evaluate "$name" "$spec"
}

for group in ${STUDY:-base length rts offsets routing extensions dt}; do
  case "$group" in
    base)  # the base alone, the reference row
      [ -f "$RUN/eval_base/results.json" ] || $SAM eval --model "$BASE" "${VAL[@]}" --out "$RUN/eval_base" ;;
    length)  # one 48-epoch run; its snapshots after 1, 4 and 16 epochs equal runs of that length
      # (constant learning rate, each step a pure function of (seed, step): tests/test_training.py)
      variant epochs48 plugins 48 --snapshot-epochs 1,4,16
      for e in 1 4 16; do evaluate "epochs$e" "$BASE+plugin=$RUN/epochs48/plugin_epochs$e.pt"; done ;;
    rts)  # today's mixture is epochs$EPOCHS (the length group); weighted to noisy boxes; stronger noise; part clicks
      variant rts_noisy plugins "$EPOCHS" --rts-mixture gt-box=0.1,noisy-box=0.6,points=0.2,box+points=0.1
      variant rts_noise08 plugins "$EPOCHS" --rts-mixture gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15,max-noise=0.8
      variant rts_partclicks plugins "$EPOCHS" --rts-mixture gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15,part-clicks=0.5 ;;
    offsets)
      variant offset2 plugins "$EPOCHS" --offset-range 2
      variant offset8 plugins "$EPOCHS" --offset-range 8
      variant sampled_pe plugins "$EPOCHS" --sampled-pe
      variant amplitude plugins "$EPOCHS" --amplitude ;;
    routing)
      variant token_iou plugins "$EPOCHS" --routing-token iou
      variant token_mean plugins "$EPOCHS" --routing-token mean
      variant hidden16 plugins "$EPOCHS" --routing-hidden 16
      variant no_drp plugins "$EPOCHS" --no-drp
      variant no_rts plugins "$EPOCHS" --no-rts ;;
    extensions)
      variant groups8 plugins "$EPOCHS" --offset-groups 8
      variant site_layer1 plugins "$EPOCHS" --extra-sites layer1
      variant site_final plugins "$EPOCHS" --extra-sites final ;;
    dt)  # the fair DT baseline: the whole decoder, same RTS data and steps, an lr sweep
      for lr in 1e-5 3e-5 1e-4 3e-4 1e-3; do variant "dt_lr$lr" decoder "$EPOCHS" --lr "$lr"; done ;;
    *) echo "unknown group $group" >&2; exit 2 ;;
  esac
done
