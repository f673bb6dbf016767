#!/bin/bash
# Cross-domain transfer on FDRD retrieval: train on one domain (16 shots, seeds 1 2 3, the usual
# output/SOURCE/TRAINER/CFG_16shots/seedN), then evaluate each trained model on every other domain without
# further training (--eval-only --model-dir, at the epoch its results.json records), into
# output/cross_domain/SOURCE/<target>/TRAINER/CFG_16shots/seedN.
#   bash scripts/transfer/cross_domain.sh TRAINER SOURCE [KEY VALUE ...]    (e.g. DCAR fdrd_dtd)
#   CFG: the recipe (default fdrd_vit_b32 for CoOp, CLIPAdapter and MaPLe, vit_b32 otherwise); FDRD_DOMAINS: the
#   domains (default all 9; the source is left out of the targets). A target without caption files is skipped
#   and listed at the end (exit 1), as in every multi-domain script: name the domains you have in FDRD_DOMAINS.
#   DATA, SEEDS, PYTHON, OUTPUT as in scripts/lib/run_seeds.sh; KEY VALUE pairs override the recipe of every run.
#   Zero-shot CLIP trains nothing to transfer: its row comes from scripts/zsclip_retrieval/main.sh fdrd.
#   Table: python -m tools.paper_tables crossdataset output/ --task retrieval
set -u
cd "$(dirname "$0")/../.."
TRAINER=${1:-}; SOURCE=${2:-}
if [ -z "${TRAINER}" ] || [ -z "${SOURCE}" ]; then
    echo "error: usage: bash scripts/transfer/cross_domain.sh TRAINER SOURCE [KEY VALUE ...] (e.g. DCAR fdrd_dtd)" >&2
    exit 2
fi
shift 2
case "${TRAINER}" in
    CoOp | CLIPAdapter | MaPLe) CFG=${CFG:-fdrd_vit_b32} ;;
    ZeroshotCLIP) echo "error: zero-shot CLIP trains nothing to transfer; run scripts/zsclip_retrieval/main.sh fdrd" >&2
                  exit 2 ;;
    *) CFG=${CFG:-vit_b32} ;;
esac
ALL=${FDRD_DOMAINS:-"fdrd_caltech101 fdrd_pets fdrd_cars fdrd_flowers fdrd_food101 fdrd_aircraft fdrd_sun397 fdrd_dtd
    fdrd_ucf101"}
TARGETS=$(for D in ${ALL}; do [ "${D}" != "${SOURCE}" ] && echo "${D}"; done)
if [ -z "${TARGETS}" ]; then
    echo "error: FDRD_DOMAINS (${ALL}) holds no domain besides the source ${SOURCE}: nothing to transfer to" >&2
    exit 2
fi
STATUS=0
bash scripts/lib/run_seeds.sh "${TRAINER}" "${CFG}" "${SOURCE}" 16 "$@"
RC=$?
[ ${RC} -eq 2 ] && exit 2  # a bad argument or recipe: every evaluation would fail the same way
[ ${RC} -ne 0 ] && STATUS=1
ROOT=${OUTPUT:-output}
OUTPUT=${ROOT}/cross_domain/${SOURCE} TRAINED=${ROOT} EVAL_FROM=${SOURCE} FDRD_DOMAINS="${TARGETS}" \
    bash scripts/lib/run_seeds.sh "${TRAINER}" "${CFG}" fdrd 16 "$@" || STATUS=1
exit ${STATUS}
