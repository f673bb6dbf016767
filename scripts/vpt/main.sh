#!/bin/bash
# VPT few-shot: bash scripts/vpt/main.sh DATASET SHOTS   (e.g. oxford_pets 16; fdrd_pets 16 for retrieval)
#   Seeds 1 2 3 into output/DATASET/VPT/CFG_SHOTSshots/seedN; CFG=... (default vit_b32), DATA, SEEDS, PYTHON as in
#   scripts/lib/run_seeds.sh; extra KEY VALUE pairs override the config. ImageNet uses the config's 10
#   warm-up epochs too: the official VPT trainer has no ImageNet rule.
DATASET=${1:-}; SHOTS=${2:-}; shift $(( $# < 2 ? $# : 2 ))
exec bash "$(dirname "$0")/../lib/run_seeds.sh" VPT "${CFG:-vit_b32}" "${DATASET}" "${SHOTS}" "$@"
