#!/bin/bash
# Base-to-new generalisation (CoCoOp's protocol, as MaPLe and PromptSRC report it), on the shared seed loop:
#   base2new.sh TRAINER CFG DATASET [KEY VALUE ...]      (called by scripts/<method>/base2new.sh)
# 1. train on the base classes (DATASET.SUBSAMPLE_CLASSES base: the first half of the sorted labels, relabelled
#    from 0), 16 shots per class (DATASET.NUM_SHOTS overrides it), seeds SEEDS (default "1 2 3"), into
#    OUTPUT/base2new/train_base/DATASET/TRAINER/CFG_16shots/seedN;
# 2. evaluate each trained model (--eval-only --model-dir, at the epoch its results.json records) on the test
#    images of the base classes and of the new classes (the other half, their own class names), into
#    OUTPUT/base2new/test_base/... and OUTPUT/base2new/test_new/....
# ZERO_SHOT=1 (zero-shot CLIP): nothing is trained; both halves are evaluated as they are, SHOTS 0, seed 1.
# OUTPUT defaults to output; DATA, PYTHON, FDRD_DOMAINS as in scripts/lib/run_seeds.sh. KEY VALUE pairs override
# the recipe in every step. Table: python -m tools.paper_tables base2new OUTPUT/base2new
set -u
HERE=$(dirname "$0")
if [ $# -lt 3 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
    echo "error: usage: bash scripts/<method>/base2new.sh DATASET [KEY VALUE ...] (e.g. oxford_pets, fdrd_pets)" >&2
    exit 2
fi
TRAINER=$1; CFG=$2; DATASET=$3; shift 3
for ((i = 1; i < $#; i += 2)); do
    if [ "${!i}" = "DATASET.SUBSAMPLE_CLASSES" ]; then
        echo "error: base2new.sh sets DATASET.SUBSAMPLE_CLASSES itself (base to train, base and new to test):" \
            "drop it from the overrides" >&2
        exit 2
    fi
done
B2N=${OUTPUT:-output}/base2new
STATUS=0
if [ "${ZERO_SHOT:-0}" = "1" ]; then
    for HALF in base new; do
        OUTPUT=${B2N}/test_${HALF} EVAL_ONLY=1 SEEDS=${SEEDS:-1} bash "${HERE}/run_seeds.sh" "${TRAINER}" "${CFG}" \
            "${DATASET}" 0 DATASET.SUBSAMPLE_CLASSES "${HALF}" "$@" || STATUS=1
    done
    exit ${STATUS}
fi
OUTPUT=${B2N}/train_base bash "${HERE}/run_seeds.sh" "${TRAINER}" "${CFG}" "${DATASET}" 16 \
    DATASET.SUBSAMPLE_CLASSES base "$@"
RC=$?
[ ${RC} -eq 2 ] && exit 2  # a bad argument or recipe: both tests would fail the same way
[ ${RC} -ne 0 ] && STATUS=1
for HALF in base new; do
    OUTPUT=${B2N}/test_${HALF} TRAINED=${B2N}/train_base bash "${HERE}/run_seeds.sh" "${TRAINER}" "${CFG}" \
        "${DATASET}" 16 DATASET.SUBSAMPLE_CLASSES "${HALF}" "$@" || STATUS=1
done
exit ${STATUS}
