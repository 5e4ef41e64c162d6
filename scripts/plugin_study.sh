#!/usr/bin/env bash
# Issue 12's study: what makes DSP + DRP work, on the embedded base (tiny SAM v2 once shipped).
# Every variant trains with the same data (the five-set training split), seed, batch and step
# budget (EPOCHS, default 4, except the training-length rows), changing one thing against the
# default, and is scored with K = 20 on gt-box, noisy-box@0.2/0.4, points@1/3 (mIoU, mBIoU,
# stability) and with --explain (the mask token's attention inside the object).
# Resumable: a finished variant is skipped, an interrupted one continues (--resume).
#
# Cost: scoring one model on the whole validation split (556 objects, 81 decoder passes each)
# takes ~25 CPU-min, so the variants are screened on a fixed quarter of it (every 4th image of
# splits/val.txt, in file order, so each set keeps its share: runs/study/val_quarter.txt) and
# the finalists (FINALISTS="name ...", group "final") are scored on the whole split into
# eval_full_NAME. Groups are independent: run two at once on two cores.
#
#   STUDY="base length" scripts/plugin_study.sh & STUDY="rts offsets" scripts/plugin_study.sh
#   STUDY="routing extensions dt" scripts/plugin_study.sh
#   FINALISTS="epochs4 dt_lr1e-4" STUDY=final scripts/plugin_study.sh
#   python scripts/study_table.py runs/study --out docs/results/plugin_study.md   # screening table
#   python scripts/study_table.py runs/study --full                                # finalists
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
FULL_SPLIT=${VAL_SPLIT:-splits/val.txt}
SCORE=(--data "${SETS[@]}" --seed 0 --device cpu --samples 20
       --prompts gt-box,noisy-box@0.2,noisy-box@0.4,points@1,points@3 --explain 4)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUN"
QUARTER="$RUN/val_quarter.txt"
if [ ! -f "$QUARTER" ]; then
  { echo "# every 4th image of $FULL_SPLIT (scripts/plugin_study.sh)"; grep -v '^#' "$FULL_SPLIT" | awk 'NR % 4 == 1'; } \
    > "$QUARTER.tmp" && mv "$QUARTER.tmp" "$QUARTER"
fi

evaluate() {  # evaluate NAME SPEC: screen once on the quarter split into $RUN/eval_NAME
  [ -f "$RUN/eval_$1/results.json" ] || $SAM eval --model "$2" --split "$QUARTER" "${SCORE[@]}" --out "$RUN/eval_$1"
}

evaluate_full() {  # evaluate_full NAME SPEC: the whole validation split into $RUN/eval_full_NAME
  [ -f "$RUN/eval_full_$1/results.json" ] || $SAM eval --model "$2" --split "$FULL_SPLIT" "${SCORE[@]}" --out "$RUN/eval_full_$1"
}

spec_of() {  # spec_of NAME: the model SPEC a finished variant (or length snapshot) names
  case "$1" in
    base) echo "$BASE" ;;
    dt_*) echo "$BASE+decoder=$RUN/$1/decoder.pt" ;;
    epochs1|epochs4|epochs16) echo "$BASE+plugin=$RUN/epochs48/plugin_$1.pt" ;;
    *) echo "$BASE+plugin=$RUN/$1/plugin.pt" ;;
  esac
}

variant() {  # variant NAME TUNE EPOCHS [train flags...]: train once, evaluate once
  local name=$1 tune=$2 epochs=$3; shift 3
  local file=plugin.pt; [ "$tune" = decoder ] && file=decoder.pt
  if [ ! -f "$RUN/$name/$file" ]; then
    $SAM train --model "$BASE" --tune "$tune" --epochs "$epochs" "${TRAIN[@]}" "$@" --out "$RUN/$name" --resume
  fi
  evaluate "$name" "$(spec_of "$name")"
}

for group in ${STUDY:-base length rts combo offsets routing extensions lean dt}; do
  case "$group" in
    base)  # the base alone, the reference row
      evaluate base "$BASE" ;;
    length)  # one 48-epoch run; its snapshots after 1, 4 and 16 epochs equal runs of that length
      # (constant learning rate, each step a pure function of (seed, step): tests/test_training.py)
      variant epochs48 plugins 48 --snapshot-epochs 1,4,16
      for e in 1 4 16; do evaluate "epochs$e" "$(spec_of "epochs$e")"; done ;;
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
      variant site_final plugins "$EPOCHS" --extra-sites final
      variant no_projection plugins "$EPOCHS" --no-projection ;;
    combo)  # the two mixture changes that helped, together: weighted to noisy boxes + part clicks
      variant rts_combo plugins "$EPOCHS" --rts-mixture gt-box=0.1,noisy-box=0.6,points=0.2,box+points=0.1,part-clicks=0.5 ;;
    lean)  # cheaper offset nets for the decoder-time target (no_projection is in "extensions")
      variant width32 plugins "$EPOCHS" --offset-width 32
      variant lean32 plugins "$EPOCHS" --no-projection --offset-width 32
      variant lowrank32 plugins "$EPOCHS" --projection-rank 32 --offset-width 32 ;;
    dt)  # the fair DT baseline: the whole decoder, same RTS data and steps, an lr sweep
      for lr in 1e-5 3e-5 1e-4 3e-4 1e-3; do variant "dt_lr$lr" decoder "$EPOCHS" --lr "$lr"; done ;;
    final)  # the base and the finalists on the whole validation split
      for name in base ${FINALISTS:-}; do evaluate_full "$name" "$(spec_of "$name")"; done ;;
    *) echo "unknown group $group" >&2; exit 2 ;;
  esac
done
