#!/bin/bash
# Zero-shot CLIP: bash scripts/zsclip/zeroshot.sh DATASET CFG   (e.g. oxford_pets vit_b16, or fdrd_pets vit_b32)
set -u
cd "$(dirname "$0")/../.."
DATA=${DATA:-./data}
TRAINER=ZeroshotCLIP
DATASET=$1
CFG=$2  # rn50, rn101, vit_b32 or vit_b16

python train.py \
    --root "${DATA}" \
    --trainer ${TRAINER} \
    --dataset-config-file configs/datasets/${DATASET}.yaml \
    --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
    --output-dir output/${TRAINER}/${CFG}/${DATASET} \
    --eval-only
