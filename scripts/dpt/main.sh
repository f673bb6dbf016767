#!/bin/bash
# DPT few-shot: bash scripts/dpt/main.sh DATASET SHOTS   (e.g. oxford_pets 16; fdrd_pets 16 for retrieval)
#   Seeds 1 2 3 into output/DATASET/DPT/CFG_SHOTSshots/seedN; CFG=... (default vit_b32), DATA, SEEDS, PYTHON as in
#   scripts/lib/run_seeds.sh; extra KEY VALUE pairs override the config. On ImageNet the trainer warms the
#   visual prompts and generators up for 1 epoch instead of 10 (TRAINER.DPT.IMAGENET_WARMUP_EPOCH), as officially.
DATASET=${1:-}; SHOTS=${2:-}; shift $(( $# < 2 ? $# : 2 ))
exec bash "$(dirname "$0")/../lib/run_seeds.sh" DPT "${CFG:-vit_b32}" "${DATASET}" "${SHOTS}" "$@"
