#!/bin/bash
# Cross-dataset transfer (CoCoOp's and MaPLe's protocol): train on ImageNet (16 shots, all classes, seeds 1 2 3),
# then evaluate each trained model on the other 10 datasets without further training (--eval-only --model-dir, at
# the epoch its results.json records), into CoOp's output/evaluation/TRAINER/CFG_16shots/<target>/seedN.
#   bash scripts/transfer/cross_dataset.sh TRAINER [KEY VALUE ...]    (e.g. CoOp, MaPLe, DPT; ZeroshotCLIP: no
#   training, every dataset evaluated as is). CFG: the recipe (default: vit_b16 for CoOp, CLIPAdapter and
#   ZeroshotCLIP, vit_b16_c2_ep5_batch4_2ctx for MaPLe, vit_b32 otherwise); TARGETS narrows the targets; DATA,
#   SEEDS, PYTHON as in scripts/lib/run_seeds.sh; KEY VALUE pairs override the recipe of every run.
#   Table: python -m tools.paper_tables crossdataset output/
set -u
HERE=$(dirname "$0")
TRAINER=${1:-}
if [ -z "${TRAINER}" ]; then
    echo "error: usage: bash scripts/transfer/cross_dataset.sh TRAINER [KEY VALUE ...] (e.g. CoOp)" >&2
    exit 2
fi
shift
case "${TRAINER}" in
    CoOp | CLIPAdapter | ZeroshotCLIP) CFG=${CFG:-vit_b16} ;;
    MaPLe) CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx} ;;
    *) CFG=${CFG:-vit_b32} ;;
esac
TARGETS=${TARGETS:-"caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat
    ucf101"}
STATUS=0
if [ "${TRAINER}" = "ZeroshotCLIP" ]; then
    for D in imagenet ${TARGETS}; do
        EVAL_ONLY=1 SEEDS=${SEEDS:-1} bash "${HERE}/../lib/run_seeds.sh" ZeroshotCLIP "${CFG}" "${D}" 0 "$@" || STATUS=1
    done
    exit ${STATUS}
fi
bash "${HERE}/../lib/run_seeds.sh" "${TRAINER}" "${CFG}" imagenet 16 "$@"
RC=$?
[ ${RC} -eq 2 ] && exit 2  # a bad argument or recipe: every evaluation would fail the same way
[ ${RC} -ne 0 ] && STATUS=1
for TARGET in ${TARGETS}; do
    EVAL_FROM=imagenet bash "${HERE}/../lib/run_seeds.sh" "${TRAINER}" "${CFG}" "${TARGET}" 16 "$@" || STATUS=1
done
exit ${STATUS}
