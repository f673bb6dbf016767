#!/bin/bash
# CLIPAdapter base-to-new: train on the base classes (16 shots, seeds 1 2 3), test on base and on new:
#   bash scripts/clip_adapter/base2new.sh DATASET [KEY VALUE ...]   (e.g. oxford_pets, fdrd_pets; fdrd: all 9 domains)
#   CFG: a recipe in configs/trainers/CLIPAdapter/ (default vit_b16, fdrd_vit_b32 for FDRD domains);
#   OUTPUT, DATA, SEEDS, PYTHON as in scripts/lib/base2new.sh; KEY VALUE pairs override the recipe.
#   Table: python -m tools.paper_tables base2new output/base2new
case "${1:-}" in fdrd*) CFG=${CFG:-fdrd_vit_b32} ;; *) CFG=${CFG:-vit_b16} ;; esac
exec bash "$(dirname "$0")/../lib/base2new.sh" CLIPAdapter "${CFG}" "${1:-}" "${@:2}"
