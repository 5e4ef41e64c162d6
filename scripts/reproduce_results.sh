#!/usr/bin/env bash
# The README's result for the embedded model, on the validation split of ../shared/data (five
# sets since tiny SAM v2; the v1 tables came from this script at commit c0ead58, three sets):
#   STAGE=base      the base alone (v1 file from git vs the shipped base) and GrabCut: gt-box and
#                   points@3 single-mask, points@1 best of 3 (multimask), K = 20; GrabCut gt-box
#                   (deterministic: K = 1)
#   STAGE=compare   v1, the shipped base and GrabCut side by side on gt-box (one run: the README's
#                   example sheet and a cross-check of the base stage's gt-box figures)
#   STAGE=dt        the DT baseline: the whole mask decoder, same RTS data, steps and seed as the plugin
#   STAGE=converge  the convergence check: the decoder fine-tuned further on ground-truth boxes only
#   STAGE=eval      base SAM vs DT vs Stable-SAM, K = 20, all prompt types
#   STAGE=grabcut   GrabCut at the model's 512 px input, gt-box and noisy-box@0.4 (K = 5)
#   STAGE=ablations plugin ablations (trained and evaluated on a reduced prompt set)
# Stages write under $RUN; run them one by one or in parallel (each uses one CPU thread).
set -euo pipefail
cd "$(dirname "$0")/.."
SAM=${SAM:-.venv/bin/stablesam}
D=${DATA:-../shared/data}
RUN=${RUN:-runs/results}
STAGE=${STAGE:?set STAGE to base, compare, dt, converge, eval, grabcut or ablations}
PLUGIN_EPOCHS=${PLUGIN_EPOCHS:-4}
DATASETS=("$D/davis345" "$D/coco_mval" "$D/weizmann_horse" "$D/ecssd" "$D/oxford_pets")
TRAIN=(--data "${DATASETS[@]}" --split splits/train.txt --batch-size 8 --lr 1e-3 --seed 0 --device cpu)
VAL=(--data "${DATASETS[@]}" --split splits/val.txt --seed 0 --device cpu)
export OMP_NUM_THREADS=1
mkdir -p "$RUN"

V1="$RUN/v1/tiny_sam_v1.pt"
v1_file() {  # the v1 embedded base at $V1, from the commit that shipped it
  mkdir -p "$RUN/v1" && git show c0ead58:src/stablesam/weights/tiny_sam.pt > "$V1"
}

case "$STAGE" in
  base)  # BASE_MODELS picks among v1 v2 grabcut (default all three); finished ones are skipped
    v1_file
    for name in ${BASE_MODELS:-v1 v2 grabcut}; do
      case "$name" in
        v1) spec="sam:$V1" ;;
        v2) spec=tiny-sam ;;
        grabcut)
          [ -f "$RUN/base_grabcut/results.json" ] ||
            $SAM eval --model grabcut@512 --prompts gt-box --samples 1 "${VAL[@]}" --out "$RUN/base_grabcut"
          continue ;;
        *) echo "unknown base model $name (v1, v2, grabcut)" >&2; exit 2 ;;
      esac
      [ -f "$RUN/base_$name/results.json" ] ||
        $SAM eval --model "$spec" --prompts gt-box,points@3 --samples 20 "${VAL[@]}" --out "$RUN/base_$name"
      [ -f "$RUN/base_${name}_click/results.json" ] ||
        $SAM eval --model "$spec" --prompts points@1 --multimask --samples 20 "${VAL[@]}" --out "$RUN/base_${name}_click"
    done ;;
  compare)
    v1_file
    $SAM eval --model "sam:$V1" --model tiny-sam --model grabcut@512 --prompts gt-box \
      --samples 1 "${VAL[@]}" --out "$RUN/compare_base" ;;
  dt)  # at the plugins' lr (1e-3, HQ-SAM's recipe) and at 1e-4, which suits a whole decoder better
    $SAM train --model tiny-sam --tune decoder --epochs "$PLUGIN_EPOCHS" "${TRAIN[@]}" --out "$RUN/dt" --resume
    $SAM train --model tiny-sam --tune decoder --epochs "$PLUGIN_EPOCHS" "${TRAIN[@]}" --lr 1e-4 \
      --out "$RUN/dt_lr1e-4" --resume ;;
  converge)  # at a gentle 1e-4 and at the training lr 1e-3 (CONVERGE_LRS picks)
    for lr in ${CONVERGE_LRS:-1e-4 1e-3}; do
      $SAM train --model tiny-sam --tune decoder --no-rts --epochs "$PLUGIN_EPOCHS" "${TRAIN[@]}" --lr $lr \
        --out "$RUN/converge_lr$lr" --resume
      $SAM eval --model tiny-sam --model "tiny-sam+decoder=$RUN/converge_lr$lr/decoder.pt" --prompts gt-box \
        "${VAL[@]}" --out "$RUN/eval_converge_lr$lr"
    done ;;
  eval)  # two processes, one per group of datasets (2 CPU cores)
    M=(--model tiny-sam --model "tiny-sam+decoder=$RUN/dt/decoder.pt" --model "tiny-sam+decoder=$RUN/dt_lr1e-4/decoder.pt"
       --model tiny-stable-sam)
    $SAM eval "${M[@]}" --samples 20 --data "$D/davis345" "$D/weizmann_horse" --split splits/val.txt --seed 0 \
      --device cpu --out "$RUN/eval_davis_horse" &
    $SAM eval "${M[@]}" --samples 20 --data "$D/coco_mval" --split splits/val.txt --seed 0 \
      --device cpu --out "$RUN/eval_coco"
    wait ;;
  grabcut)  # GrabCut costs ~0.3 s per box even at 512 px: gt-box and the headline noise level, K = 5
    $SAM eval --model grabcut@512 --prompts gt-box,noisy-box@0.4 --samples 5 "${VAL[@]}" --out "$RUN/eval_grabcut" ;;
  ablations)
    # Each variant changes one plugin choice; all train ABLATION_EPOCHS epochs (the "default" row too).
    P=gt-box,noisy-box@0.4,points@1
    VARIANTS=("default:" "no-drp:--no-drp" "sampled-pe:--sampled-pe" "offset2:--offset-range 2"
              "iou-token:--routing-token iou" "no-rts:--no-rts")
    MODELS=(--model tiny-sam)
    for a in "${VARIANTS[@]}"; do
      name=${a%%:*}; flags=${a#*:}
      [[ " ${ABLATIONS:-default no-drp sampled-pe offset2 iou-token no-rts} " == *" $name "* ]] || continue
      # shellcheck disable=SC2086
      $SAM train --model tiny-sam --tune plugins --epochs "${ABLATION_EPOCHS:-2}" "${TRAIN[@]}" $flags \
        --out "$RUN/ablation_$name" --resume
      MODELS+=(--model "tiny-sam+plugin=$RUN/ablation_$name/plugin.pt")
    done
    $SAM eval "${MODELS[@]}" --prompts "$P" --samples 5 "${VAL[@]}" --out "$RUN/eval_ablations" ;;
  *) echo "unknown STAGE $STAGE" >&2; exit 2 ;;
esac
