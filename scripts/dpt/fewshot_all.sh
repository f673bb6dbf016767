#!/bin/bash
# The DPT paper grid: 11 datasets x 1/2/4/8/16 shots x seeds 1 2 3 (TRAINER=VPT or VLP for the baselines).
#   bash scripts/dpt/fewshot_all.sh [KEY VALUE ...]   finished runs are skipped, so it can be restarted at will
#   DATASETS=... and SHOT_COUNTS=... narrow the grid; CFG, DATA, SEEDS, PYTHON as in scripts/lib/run_seeds.sh;
#   KEY VALUE pairs override the config of every run.
set -u
TRAINER=${TRAINER:-DPT}
SCRIPT="$(dirname "$0")/../$(echo "${TRAINER}" | tr '[:upper:]' '[:lower:]')/main.sh"
DATASETS=${DATASETS:-"imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"}
SHOT_COUNTS=${SHOT_COUNTS:-"1 2 4 8 16"}
STATUS=0
for DATASET in ${DATASETS}; do
    for SHOTS in ${SHOT_COUNTS}; do
        bash "${SCRIPT}" "${DATASET}" "${SHOTS}" "$@" || STATUS=1
    done
done
exit ${STATUS}
