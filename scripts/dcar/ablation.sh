#!/bin/bash
# DCAR ablation: bash scripts/dcar/ablation.sh DATASET SHOTS [KEY VALUE ...]   (e.g. fdrd_dtd 16)
#   Runs every row that `python -m tools.dcar_ablation` derives from the recipe (CFG, default vit_b32, with the
#   given overrides): the full model, each component removed from it (or added, when the recipe has it off),
#   the build-up from plain dual prompts, and the literal readings of DCAR's Fig. 2. Seeds SEEDS (default
#   "1 2 3"), into output/DATASET/DCAR/CFG[@BACKBONE]_SHOTSshots/<row>/seedN through scripts/lib/run_seeds.sh
#   (DATA, PYTHON as there; @BACKBONE when MODEL.BACKBONE.NAME overrides the recipe's, e.g. vit_b32@vit_b16).
#   The overrides go to every run; a row's own TRAINER.DCAR keys follow them, so a row is "the recipe with
#   your overrides, then this row's change".
#   Table: python -m tools.paper_tables ablation output/DATASET/DCAR/CFG[@BACKBONE]_SHOTSshots --std
set -u
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
DATASET=${1:-}; SHOTS=${2:-}
if [ -z "${DATASET}" ] || [ -z "${SHOTS}" ]; then
    echo "error: usage: bash scripts/dcar/ablation.sh DATASET SHOTS [KEY VALUE ...] (e.g. fdrd_dtd 16)" >&2
    exit 2
fi
shift 2
CFG=${CFG:-vit_b32}
ROWS=$("${PYTHON}" -m tools.dcar_ablation --config-file "configs/trainers/DCAR/${CFG}.yaml" "$@") || exit 2
STATUS=0
while IFS=$'\t' read -r NAME CHANGES; do
    read -r -a CHANGE <<< "${CHANGES}"
    echo "== ablation row ${NAME}: ${CHANGES:-the recipe as it is}"
    VARIANT=${NAME} bash scripts/lib/run_seeds.sh DCAR "${CFG}" "${DATASET}" "${SHOTS}" "$@" "${CHANGE[@]}" || STATUS=1
done <<< "${ROWS}"
exit ${STATUS}
