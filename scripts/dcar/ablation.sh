#!/bin/bash
# DCAR ablation rows: bash scripts/dcar/ablation.sh DOMAIN SHOTS   (e.g. fdrd_dtd 16, or fdrd)
#   dual prompts only | + DTR | + CAA | full DCAR, each in output/<domain>/DCAR/<cfg>_<shots>shots/<row>/
set -u
DOMAIN=$1; SHOTS=$2
RUN="$(dirname "$0")/../lib/run_seeds.sh"
CFG=${CFG:-vit_b32}
STATUS=0
for ROW in "dual_prompts False False" "plus_dtr True False" "plus_caa False True" "full True True"; do
    set -- ${ROW}
    NAME=$1; DTR=$2; CAA=$3
    VARIANT=${NAME} bash "${RUN}" DCAR "${CFG}" "${DOMAIN}" "${SHOTS}" \
        TRAINER.DCAR.USE_DTR ${DTR} TRAINER.DCAR.USE_CAA ${CAA} || STATUS=1
done
exit ${STATUS}
