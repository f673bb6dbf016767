#!/bin/bash
# The seed loop every script shares:  run_seeds.sh TRAINER CFG DATASET SHOTS [KEY VALUE ...]
#   DATASET: one config of configs/datasets (oxford_pets, fdrd_pets, ...) or "fdrd" for the 9 FDRD domains
#   SHOTS:   1/2/4/8/16 pairs per class, 0 for none (zero-shot), or "all" for the full training split
#   KEY VALUE pairs override the recipe configs/trainers/TRAINER/CFG.yaml; they come last on train.py's
#   command line, so they win over the script's own settings (DATASET.NUM_SHOTS included).
# Output: output/DATASET/TRAINER/CFG[@BACKBONE]_SHOTSshots[/VARIANT]/seedN, named after what runs: SHOTS is the
# last DATASET.NUM_SHOTS given, and @BACKBONE appears when MODEL.BACKBONE.NAME overrides the recipe's backbone
# (e.g. vit_b32@vit_b16, or vit_b32@tiny_clip for a checkpoint file).
# Environment: DATA (dataset root, default ./data), SEEDS (default "1 2 3"), PYTHON (default python),
#   FDRD_DOMAINS (the domains "fdrd" stands for, default all 9), VARIANT (a subfolder, e.g. an ablation row),
#   EVAL_ONLY=1 (no training: zero-shot), EVAL_FROM=SOURCE (no training: evaluate the models this loop trained
#   on dataset SOURCE, at the epoch their results.json records, into CoOp's
#   output/evaluation/TRAINER/CFG_SHOTSshots/DATASET/seedN),
#   OUTPUT (the root of the run folders, default output; e.g. output/base2new/train_base),
#   TRAINED=ROOT (no training: evaluate the models trained under ROOT, at their recorded epoch, each dataset's
#   own, ROOT/DATASET/..., or with EVAL_FROM=SOURCE the one of ROOT/SOURCE/...; results in OUTPUT/DATASET/...,
#   the layout of base-to-new's test_new and of cross-domain transfer).
# Finished runs (results.json present) are skipped, interrupted ones resume. A domain whose data is missing is
# skipped and reported at the end.
set -u
cd "$(dirname "$0")/../.."
DATA=${DATA:-./data}
SEEDS=${SEEDS:-"1 2 3"}
PYTHON=${PYTHON:-python}
OUTPUT=${OUTPUT:-output}
if [ $# -lt 4 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ] || [ -z "$4" ]; then
    echo "error: run_seeds.sh needs TRAINER CFG DATASET SHOTS (see the calling script's header for its arguments)" >&2
    exit 2
fi
TRAINER=$1; CFG=$2; DATASET=$3; SHOTS=$4; shift 4
if [ $(( $# % 2 )) -ne 0 ]; then
    echo "error: overrides come in KEY VALUE pairs; got $# word(s): $*" >&2
    exit 2
fi
RECIPE=configs/trainers/${TRAINER}/${CFG}.yaml
if [ ! -f "${RECIPE}" ]; then
    echo "error: no recipe ${RECIPE}; there are: $(ls configs/trainers/"${TRAINER}" 2>/dev/null | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
    exit 2
fi

# What runs, as the folder name will say it: the last DATASET.NUM_SHOTS and MODEL.BACKBONE.NAME given.
OVERRIDES=("$@")
BACKBONE=""
for ((i = 0; i < ${#OVERRIDES[@]}; i += 2)); do
    case "${OVERRIDES[i]}" in
        DATASET.NUM_SHOTS) SHOTS=${OVERRIDES[i + 1]} ;;
        MODEL.BACKBONE.NAME) BACKBONE=${OVERRIDES[i + 1]} ;;
    esac
done
case "${SHOTS}" in
    all | -1) SHOTS=all; NUM_SHOTS=-1 ;;
    *[!0-9]* | "") echo "error: SHOTS must be a number of shots per class or 'all', got '${SHOTS}'" >&2; exit 2 ;;
    *) NUM_SHOTS=${SHOTS} ;;
esac
GROUP=${CFG}
if [ -n "${BACKBONE}" ]; then
    RECIPE_BACKBONE=$("${PYTHON}" -c 'import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1])) or {}
print(((cfg.get("MODEL") or {}).get("BACKBONE") or {}).get("NAME", ""))' "${RECIPE}") || exit 2
    if [ "${BACKBONE}" != "${RECIPE_BACKBONE}" ]; then
        NAME=${BACKBONE}
        if [ -e "${BACKBONE}" ] || [[ "${BACKBONE}" =~ \.(pt|pth|bin|safetensors|tar)$ ]]; then
            NAME=$(basename "${BACKBONE}"); NAME=${NAME%.*}  # a checkpoint file: its name
        fi
        # ViT-B/16 -> vit_b16, ViT-L/14@336px -> vit_l14_336px
        GROUP=${CFG}@$(echo "${NAME}" | tr '[:upper:]' '[:lower:]' | sed -e 's#/##g' -e 's/[^a-z0-9_.]/_/g')
    fi
fi
GROUP=${GROUP}_${SHOTS}shots

if [ "${DATASET}" = "fdrd" ]; then
    DOMAINS=${FDRD_DOMAINS:-"fdrd_caltech101 fdrd_pets fdrd_cars fdrd_flowers fdrd_food101 fdrd_aircraft fdrd_sun397 fdrd_dtd fdrd_ucf101"}
else
    DOMAINS=${DATASET}
fi

SKIPPED=()
for D in ${DOMAINS}; do
    for SEED in ${SEEDS}; do
        EXTRA=()
        RUN=${TRAINER}/${GROUP}${VARIANT:+/${VARIANT}}/seed${SEED}
        MODEL_DIR=""
        if [ -n "${TRAINED:-}" ]; then
            DIR=${OUTPUT}/${D}/${RUN}
            MODEL_DIR=${TRAINED}/${EVAL_FROM:-${D}}/${RUN}
        elif [ -n "${EVAL_FROM:-}" ]; then
            DIR=${OUTPUT}/evaluation/${TRAINER}/${GROUP}/${D}${VARIANT:+/${VARIANT}}/seed${SEED}
            MODEL_DIR=${OUTPUT}/${EVAL_FROM}/${RUN}
        else
            DIR=${OUTPUT}/${D}/${RUN}
        fi
        if [ -f "${DIR}/results.json" ]; then
            echo "The results exist at ${DIR} (so skip this job)"
            continue
        fi
        if [ -n "${MODEL_DIR}" ]; then
            if ! EPOCHS=$("${PYTHON}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["epochs"])' \
                    "${MODEL_DIR}/results.json" 2>/dev/null); then
                SKIPPED+=("${D} (seed ${SEED}): no finished training run at ${MODEL_DIR} (train it first)")
                continue
            fi
            EXTRA=(--eval-only --model-dir "${MODEL_DIR}" --load-epoch "${EPOCHS}")
        elif [ "${EVAL_ONLY:-0}" = "1" ]; then
            EXTRA=(--eval-only)
        fi
        ERR=$(mktemp)
        "${PYTHON}" train.py \
            --root "${DATA}" \
            --seed "${SEED}" \
            --trainer "${TRAINER}" \
            --dataset-config-file "configs/datasets/${D}.yaml" \
            --config-file "${RECIPE}" \
            --output-dir "${DIR}" \
            "${EXTRA[@]}" \
            DATASET.NUM_SHOTS "${NUM_SHOTS}" "$@" 2> "${ERR}"
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
