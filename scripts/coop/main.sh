#!/bin/bash
# CoOp few-shot training, CoOp's argument order and output layout:
#   bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
#   e.g. bash scripts/coop/main.sh oxford_pets vit_b16 end 16 16 False
# -> output/DATASET/CoOp/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seed{1,2,3}. DATA (dataset root) comes from the
# environment; finished seeds (results.json present) are skipped, unfinished ones resume; KEY VALUE pairs
# after CSC override the config.
DATASET=$1
CFG=$2      # config file in configs/trainers/CoOp
CTP=$3      # class token position (end, middle or front)
NCTX=$4     # number of context tokens
SHOTS=$5    # number of shots (1, 2, 4, 8, 16)
CSC=$6      # class-specific context (False or True)

VARIANT=nctx${NCTX}_csc${CSC}_ctp${CTP} exec bash "$(dirname "$0")/../lib/run_seeds.sh" CoOp "${CFG}" "${DATASET}" \
    "${SHOTS}" TRAINER.COOP.N_CTX "${NCTX}" TRAINER.COOP.CSC "${CSC}" TRAINER.COOP.CLASS_TOKEN_POSITION "${CTP}" "${@:7}"
