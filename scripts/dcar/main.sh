#!/bin/bash
# DCAR: bash scripts/dcar/main.sh DATASET SHOTS
#   DATASET: fdrd (all 9 domains) or one domain config, e.g. fdrd_pets; SHOTS: 1/2/4/8/16 or all
#   CFG=... picks another recipe in configs/trainers/DCAR/ (default vit_b32); DATA, SEEDS, PYTHON as in
#   scripts/lib/run_seeds.sh. Extra KEY VALUE pairs after SHOTS override the config.
exec bash "$(dirname "$0")/../lib/run_seeds.sh" DCAR "${CFG:-vit_b32}" "$1" "$2" "${@:3}"
