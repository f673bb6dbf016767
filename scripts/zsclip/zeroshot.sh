#!/bin/bash
# Zero-shot CLIP: bash scripts/zsclip/zeroshot.sh DATASET CFG [KEY VALUE ...]
#   e.g. oxford_pets vit_b16, or fdrd_pets vit_b32 (fdrd: all 9 domains). CFG: rn50, rn101, vit_b32 or vit_b16
#   in configs/trainers/ZeroshotCLIP/. -> output/DATASET/ZeroshotCLIP/CFG_0shots/seed1 (no training: one seed,
#   SEEDS=... for more). DATA, PYTHON as in scripts/lib/run_seeds.sh; KEY VALUE pairs override the config.
EVAL_ONLY=1 SEEDS=${SEEDS:-1} exec bash "$(dirname "$0")/../lib/run_seeds.sh" ZeroshotCLIP "${2:-}" "${1:-}" 0 "${@:3}"
