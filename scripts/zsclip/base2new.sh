#!/bin/bash
# Zero-shot CLIP on the base and on the new classes, nothing trained:
#   bash scripts/zsclip/base2new.sh DATASET [KEY VALUE ...]   (e.g. oxford_pets, fdrd_pets; fdrd: all 9 domains)
#   CFG: a recipe in configs/trainers/ZeroshotCLIP/ (default vit_b16, vit_b32 for FDRD domains);
#   OUTPUT, DATA, SEEDS, PYTHON as in scripts/lib/base2new.sh; KEY VALUE pairs override the recipe.
#   Table: python -m tools.paper_tables base2new output/base2new
case "${1:-}" in fdrd*) CFG=${CFG:-vit_b32} ;; *) CFG=${CFG:-vit_b16} ;; esac
ZERO_SHOT=1 exec bash "$(dirname "$0")/../lib/base2new.sh" ZeroshotCLIP "${CFG}" "${1:-}" "${@:2}"
