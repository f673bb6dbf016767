#!/bin/bash
# CoOp few-shot training, CoOp's argument order and output layout:
#   bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
#   e.g. bash scripts/coop/main.sh oxford_pets vit_b16 end 16 16 False
# DATA (dataset root) comes from the environment; finished seeds (results.json present) are skipped,
# unfinished ones resume from their last checkpoint.
set -u
cd "$(dirname "$0")/../.."
DATA=${DATA:-./data}
TRAINER=CoOp
DATASET=$1
CFG=$2      # config file in configs/trainers/CoOp
CTP=$3      # class token position (end or middle)
NCTX=$4     # number of context tokens
SHOTS=$5    # number of shots (1, 2, 4, 8, 16)
CSC=$6      # class-specific context (False or True)

for SEED in 1 2 3; do
    DIR=output/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
    if [ -f "${DIR}/results.json" ]; then
        echo "The results exist at ${DIR} (so skip this job)"
        continue
    fi
    python train.py \
        --root "${DATA}" \
        --seed ${SEED} \
        --trainer ${TRAINER} \
        --dataset-config-file configs/datasets/${DATASET}.yaml \
        --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
        --output-dir "${DIR}" \
        TRAINER.COOP.N_CTX ${NCTX} \
        TRAINER.COOP.CSC ${CSC} \
        TRAINER.COOP.CLASS_TOKEN_POSITION ${CTP} \
        DATASET.NUM_SHOTS ${SHOTS}
done
