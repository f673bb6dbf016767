#!/bin/bash
# Domain generalisation: train on ImageNet (16 shots, seeds 1 2 3), then evaluate each trained model on
# ImageNetV2, -Sketch, -A and -R with --eval-only at the epoch its results.json records; results in
# output/evaluation/TRAINER/CFG_16shots/<target>/seedN.
#   bash scripts/dpt/dg.sh [KEY VALUE ...]   (TRAINER=DPT|VLP|VPT; CFG=vit_b32, DATA, SEEDS, PYTHON as in
#   scripts/lib/run_seeds.sh; KEY VALUE pairs override the config of training and evaluation alike)
set -u
HERE=$(dirname "$0")
TRAINER=${TRAINER:-DPT}
export CFG=${CFG:-vit_b32}
STATUS=0
bash "${HERE}/../$(echo "${TRAINER}" | tr '[:upper:]' '[:lower:]')/main.sh" imagenet 16 "$@" || STATUS=1
for TARGET in imagenetv2 imagenet_sketch imagenet_a imagenet_r; do
    EVAL_FROM=imagenet bash "${HERE}/../lib/run_seeds.sh" "${TRAINER}" "${CFG}" "${TARGET}" 16 "$@" || STATUS=1
done
exit ${STATUS}
