#!/bin/bash
# The DPT paper grid: 11 datasets x 1/2/4/8/16 shots x seeds 1 2 3 (TRAINER=VPT or VLP for the baselines).
#   bash scripts/dpt/fewshot_all.sh            finished runs are skipped, so it can be restarted at will
set -u
TRAINER=${TRAINER:-DPT}
SCRIPT="$(dirname "$0")/../$(echo "${TRAINER}" | tr '[:upper:]' '[:lower:]')/main.sh"
STATUS=0
for DATASET in imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101; do
    for SHOTS in 1 2 4 8 16; do
        bash "${SCRIPT}" "${DATASET}" "${SHOTS}" || STATUS=1
    done
done
exit ${STATUS}
