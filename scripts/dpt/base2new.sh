#!/bin/bash
# DPT base-to-new: train on the base classes (16 shots, seeds 1 2 3), test on base and on new:
#   bash scripts/dpt/base2new.sh DATASET [KEY VALUE ...]   (e.g. oxford_pets, fdrd_pets; fdrd: all 9 domains)
#   CFG: a recipe in configs/trainers/DPT/ (default vit_b32);
#   OUTPUT, DATA, SEEDS, PYTHON as in scripts/lib/base2new.sh; KEY VALUE pairs override the recipe.
#   Table: python -m tools.paper_tables base2new output/base2new
CFG=${CFG:-vit_b32}
exec bash "$(dirname "$0")/../lib/base2new.sh" DPT "${CFG}" "${1:-}" "${@:2}"
