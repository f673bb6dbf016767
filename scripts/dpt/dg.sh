#!/bin/bash
# Domain generalisation: train on ImageNet (16 shots, seeds 1 2 3), then evaluate each saved model on
# ImageNetV2, -Sketch, -A and -R with --eval-only; results in output/evaluation/DPT/CFG_16shots/<target>/seedN.
#   bash scripts/dpt/dg.sh        (CFG=vit_b32, DATA, SEEDS, TRAINER=DPT|VLP|VPT as elsewhere)
set -u
cd "$(dirname "$0")/../.."
DATA=${DATA:-./data}
TRAINER=${TRAINER:-DPT}
CFG=${CFG:-vit_b32}
SEEDS=${SEEDS:-"1 2 3"}
LOAD_EPOCH=${LOAD_EPOCH:-$(python -c "import yaml; print(yaml.safe_load(open('configs/trainers/${TRAINER}/${CFG}.yaml'))['OPTIM']['MAX_EPOCH'])")}

SEEDS="${SEEDS}" bash "scripts/$(echo "${TRAINER}" | tr '[:upper:]' '[:lower:]')/main.sh" imagenet 16 || exit 1
for TARGET in imagenetv2 imagenet_sketch imagenet_a imagenet_r; do
    for SEED in ${SEEDS}; do
        DIR=output/evaluation/${TRAINER}/${CFG}_16shots/${TARGET}/seed${SEED}
        if [ -f "${DIR}/results.json" ]; then
            echo "The results exist at ${DIR} (so skip this job)"
            continue
        fi
        python train.py \
            --root "${DATA}" \
            --seed ${SEED} \
            --trainer ${TRAINER} \
            --dataset-config-file configs/datasets/${TARGET}.yaml \
            --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
            --output-dir "${DIR}" \
            --model-dir output/imagenet/${TRAINER}/${CFG}_16shots/seed${SEED} \
            --load-epoch ${LOAD_EPOCH} \
            --eval-only
    done
done
