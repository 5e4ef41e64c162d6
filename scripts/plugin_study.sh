#!/usr/bin/env bash
# The plugin study: what makes DSP + DRP work, on the embedded base (tiny SAM v2).
# Every variant trains with the same data (the five-set training split), seed, batch and step
# budget, changing one thing against a reference, and is scored with K = 20 on gt-box,
# noisy-box@0.2/0.4, points@1/3 (mIoU, mBIoU, stability) and with --explain (the mask token's
# attention inside the object).
# Two rounds. Round 1 (groups base length rts combo offsets routing extensions lean) changes one
# thing against release 0.1's plugin (the paper's: full projection, offset net on all channels,
# mixture gt-box 0.2 / noisy-box 0.4 / points 0.25 / box+points 0.15), pinned by $V1, for EPOCHS
# (4) epochs. Round 2 starts from the default it chose (rank-32 projection, 32-channel offset
# net, the rts_combo mixture): group "default" trains it (4 epochs, 1-epoch snapshot), "screen"
# changes one thing against it for 1 epoch each (compare with default1), "dt" is the DT lr sweep
# with the same data and steps as default4.
# Resumable: a finished variant is skipped, an interrupted one continues (--resume).
#
# Cost: scoring one model on the whole validation split (556 objects, 81 decoder passes each)
# takes ~25 CPU-min, so the variants are screened on a fixed quarter of it (every 4th image of
# splits/val.txt, in file order, so each set keeps its share: runs/study/val_quarter.txt) and
# the finalists (FINALISTS="name ...", group "final") are scored on the whole split into
# eval_full_NAME. Groups are independent: run two at once on two cores.
#
#   STUDY="base length rts combo" scripts/plugin_study.sh & STUDY="offsets extensions lean" scripts/plugin_study.sh
#   STUDY="default screen_a" scripts/plugin_study.sh & STUDY="dt screen_b" scripts/plugin_study.sh
#   FINALISTS="shipped dt_lr1e-4" STUDY=final scripts/plugin_study.sh
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
    default1) echo "$BASE+plugin=$RUN/default4/plugin_epochs1.pt" ;;
    shipped) echo "tiny-stable-sam" ;;  # the embedded plugin (STAGE=plugin scripts/build_embedded.sh)
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

V1=(--projection-rank 0 --offset-width 0 --rts-mixture gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15,part-clicks=0)

for group in ${STUDY:-base length rts combo lean default dt screen screen_c}; do
  case "$group" in
    base)  # the base alone, the reference row
      evaluate base "$BASE" ;;
    length)  # one 48-epoch run; its snapshots after 1, 4 and 16 epochs equal runs of that length
      # (constant learning rate, each step a pure function of (seed, step): tests/test_training.py)
      variant epochs48 plugins 48 "${V1[@]}" --snapshot-epochs 1,4,16
      for e in 1 4 16; do evaluate "epochs$e" "$(spec_of "epochs$e")"; done ;;
    rts)  # release 0.1's mixture is epochs4 (the length group); weighted to noisy boxes; stronger noise; part clicks
      variant rts_noisy plugins "$EPOCHS" "${V1[@]}" --rts-mixture gt-box=0.1,noisy-box=0.6,points=0.2,box+points=0.1,part-clicks=0
      variant rts_noise08 plugins "$EPOCHS" "${V1[@]}" --rts-mixture gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15,max-noise=0.8,part-clicks=0
      variant rts_partclicks plugins "$EPOCHS" "${V1[@]}" --rts-mixture gt-box=0.2,noisy-box=0.4,points=0.25,box+points=0.15,part-clicks=0.5 ;;
    combo)  # the two mixture changes that helped, together: weighted to noisy boxes + part clicks
      variant rts_combo plugins "$EPOCHS" "${V1[@]}" --rts-mixture gt-box=0.1,noisy-box=0.6,points=0.2,box+points=0.1,part-clicks=0.5 ;;
    offsets)
      variant offset2 plugins "$EPOCHS" "${V1[@]}" --offset-range 2 ;;
    extensions)
      variant groups8 plugins "$EPOCHS" "${V1[@]}" --offset-groups 8 ;;
    lean)  # cheaper DSPs for the decoder-time target
      variant width32 plugins "$EPOCHS" "${V1[@]}" --offset-width 32
      variant lean32 plugins "$EPOCHS" "${V1[@]}" --no-projection --offset-width 32
      variant lowrank32 plugins "$EPOCHS" "${V1[@]}" --projection-rank 32 --offset-width 32 ;;
    default)  # round 2's reference: today's default plugin and mixture (what ships), 4 epochs
      variant default4 plugins "$EPOCHS" --snapshot-epochs 1
      evaluate default1 "$(spec_of default1)" ;;
    dt)  # the fair DT baseline: the whole decoder, default4's data, mixture and steps, an lr sweep
      for lr in ${DT_LRS:-1e-4 1e-3 1e-5 3e-5}; do variant "dt_lr$lr" decoder "$EPOCHS" --lr "$lr"; done ;;
    screen|screen_a|screen_b)  # one change against the default, 1 epoch each (reference: default1)
      if [ "$group" != screen_b ]; then
        variant s1_amplitude plugins 1 --amplitude
        variant s1_site_final plugins 1 --extra-sites final
        variant s1_offset8 plugins 1 --offset-range 8
        variant s1_sampled_pe plugins 1 --sampled-pe
        variant s1_site_layer1 plugins 1 --extra-sites layer1
      fi
      if [ "$group" != screen_a ]; then
        variant s1_no_drp plugins 1 --no-drp
        variant s1_token_iou plugins 1 --routing-token iou
      fi ;;
    screen_c)  # the DRP's input token (mean) and width, one change against the default, 1 epoch each
      variant s1_token_mean plugins 1 --routing-token mean
      variant s1_hidden16 plugins 1 --routing-hidden 16 ;;
    final)  # the base and the finalists on the whole validation split
      # (FINAL_BASE= leaves the base out: for a second job scoring other finalists at once)
      for name in ${FINAL_BASE-base} ${FINALISTS:-}; do evaluate_full "$name" "$(spec_of "$name")"; done ;;
    *) echo "unknown group $group" >&2; exit 2 ;;
  esac
done
