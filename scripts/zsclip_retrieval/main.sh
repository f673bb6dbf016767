#!/bin/bash
# Zero-shot CLIP retrieval (no training): bash scripts/zsclip_retrieval/main.sh DATASET [KEY VALUE ...]
#   DATASET: fdrd (all 9 domains) or one domain config, e.g. fdrd_pets. CFG (default vit_b32), DATA, SEEDS
#   (default 1), PYTHON as in scripts/lib/run_seeds.sh; KEY VALUE pairs override the config.
EVAL_ONLY=1 SEEDS=${SEEDS:-1} exec bash "$(dirname "$0")/../lib/run_seeds.sh" ZeroshotCLIP "${CFG:-vit_b32}" "${1:-}" 0 "${@:2}"
