#!/bin/bash
# The seed loop every method script shares:  run_seeds.sh TRAINER CFG DATASET SHOTS [KEY VALUE ...]
#   DATASET: one config of configs/datasets (oxford_pets, fdrd_pets, ...) or "fdrd" for the 9 FDRD domains
#   SHOTS:   1/2/4/8/16 pairs per class, or "all" for the full training split
# Environment: DATA (dataset root, default ./data), SEEDS (default "1 2 3"), FDRD_DOMAINS (the domains
# "fdrd" stands for, default all 9), VARIANT (a subfolder, e.g.
# an ablation row), EVAL_ONLY=1 (no training: zero-shot). Finished runs (results.json present) are skipped,
# interrupted ones resume. A domain whose data is missing is skipped and reported at the end.
set -u
cd "$(dirname "$0")/../.."
DATA=${DATA:-./data}
SEEDS=${SEEDS:-"1 2 3"}
TRAINER=$1; CFG=$2; DATASET=$3; SHOTS=$4; shift 4

if [ "${DATASET}" = "fdrd" ]; then
    DOMAINS=${FDRD_DOMAINS:-"fdrd_caltech101 fdrd_pets fdrd_cars fdrd_flowers fdrd_food101 fdrd_aircraft fdrd_sun397 fdrd_dtd fdrd_ucf101"}
else
    DOMAINS=${DATASET}
fi
NUM_SHOTS=${SHOTS}; [ "${SHOTS}" = "all" ] && NUM_SHOTS=-1
EXTRA=(); [ "${EVAL_ONLY:-0}" = "1" ] && EXTRA=(--eval-only)

SKIPPED=()
for D in ${DOMAINS}; do
    for SEED in ${SEEDS}; do
        DIR=output/${D}/${TRAINER}/${CFG}_${SHOTS}shots${VARIANT:+/${VARIANT}}/seed${SEED}
        if [ -f "${DIR}/results.json" ]; then
            echo "The results exist at ${DIR} (so skip this job)"
            continue
        fi
        ERR=$(mktemp)
        python train.py \
            --root "${DATA}" \
            --seed ${SEED} \
            --trainer ${TRAINER} \
            --dataset-config-file configs/datasets/${D}.yaml \
            --config-file configs/trainers/${TRAINER}/${CFG}.yaml \
            --output-dir "${DIR}" \
            "${EXTRA[@]}" \
            DATASET.NUM_SHOTS ${NUM_SHOTS} "$@" 2> "${ERR}"
        RC=$?
        cat "${ERR}" >&2
        REASON=$(grep -m1 '^error:' "${ERR}" || tail -n 1 "${ERR}")
        rm -f "${ERR}"
        if [ ${RC} -ne 0 ]; then
            SKIPPED+=("${D} (seed ${SEED}): ${REASON}")
            # exit code 2: missing/bad data or config, the same for every seed: go to the next domain
            [ ${RC} -eq 2 ] && break
        fi
    done
done

if [ ${#SKIPPED[@]} -gt 0 ]; then
    echo
    echo "Skipped or failed (${#SKIPPED[@]}):"
    printf '  %s\n' "${SKIPPED[@]}"
    exit 1
fi
