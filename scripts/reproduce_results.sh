#!/usr/bin/env bash
# The README's result for the embedded model, on the validation split of ../shared/data:
#   STAGE=dt        the DT baseline: the whole mask decoder, same RTS data, steps and seed as the plugin
#   STAGE=converge  the convergence check: the decoder fine-tuned further on ground-truth boxes only
#   STAGE=eval      base SAM vs DT vs Stable-SAM, K = 20, all prompt types (+ the convergence check)
#   STAGE=grabcut   GrabCut at the model's 512 px input, box prompts, K = 10
#   STAGE=ablations plugin ablations (trained and evaluated on a reduced prompt set)
# Stages write under $RUN; run them one by one or in parallel (each uses one CPU thread).
set -euo pipefail
cd "$(dirname "$0")/.."
SAM=${SAM:-.venv/bin/stablesam}
D=${DATA:-../shared/data}
RUN=${RUN:-runs/results}
STAGE=${STAGE:?set STAGE to dt, converge, eval, grabcut or ablations}
PLUGIN_EPOCHS=${PLUGIN_EPOCHS:-4}
DATASETS=("$D/davis345" "$D/coco_mval" "$D/weizmann_horse")
TRAIN=(--data "${DATASETS[@]}" --split splits/train.txt --batch-size 8 --lr 1e-3 --seed 0 --device cpu)
VAL=(--data "${DATASETS[@]}" --split splits/val.txt --seed 0 --device cpu)
export OMP_NUM_THREADS=1
mkdir -p "$RUN"

case "$STAGE" in
  dt)
    $SAM train --model tiny-sam --tune decoder --epochs "$PLUGIN_EPOCHS" "${TRAIN[@]}" --out "$RUN/dt" --resume ;;
  converge)
    $SAM train --model tiny-sam --tune decoder --no-rts --epochs "$PLUGIN_EPOCHS" "${TRAIN[@]}" --out "$RUN/converge" --resume
    $SAM eval --model tiny-sam --model "tiny-sam+decoder=$RUN/converge/decoder.pt" --prompts gt-box "${VAL[@]}" \
      --out "$RUN/eval_converge" ;;
  eval)
    $SAM eval --model tiny-sam --model "tiny-sam+decoder=$RUN/dt/decoder.pt" --model tiny-stable-sam \
      --samples 20 "${VAL[@]}" --out "$RUN/eval" ;;
  grabcut)
    $SAM eval --model grabcut@512 --prompts gt-box,noisy-box@0.1,noisy-box@0.2,noisy-box@0.3,noisy-box@0.4,noisy-box@0.5 \
      --samples 10 "${VAL[@]}" --out "$RUN/eval_grabcut" ;;
  ablations)
    P=gt-box,noisy-box@0.2,noisy-box@0.4,points@1,points@3
    for a in "no-drp:--no-drp" "sampled-pe:--sampled-pe" "offset2:--offset-range 2" "iou-token:--routing-token iou" \
             "no-rts:--no-rts"; do
      name=${a%%:*}; flags=${a#*:}
      # shellcheck disable=SC2086
      $SAM train --model tiny-sam --tune plugins --epochs "$PLUGIN_EPOCHS" "${TRAIN[@]}" $flags --out "$RUN/ablation_$name" --resume
    done
    $SAM eval --model tiny-sam --model tiny-stable-sam \
      $(for n in no-drp sampled-pe offset2 iou-token no-rts; do echo --model "tiny-sam+plugin=$RUN/ablation_$n/plugin.pt"; done) \
      --prompts "$P" --samples 5 "${VAL[@]}" --out "$RUN/eval_ablations" ;;
  *) echo "unknown STAGE $STAGE" >&2; exit 2 ;;
esac
