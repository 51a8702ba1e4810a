#!/usr/bin/env bash
# Real-people and synthetic accuracy of a model, one JSON report each in OUTDIR:
#   lspet_val.json      LSPET validation split (training/lspet/val_images.txt, 500 images):
#                       single-person PCK@0.2 of the torso, per part, AUC
#   coco_mini.json      COCO-MINI val2017: OKS AP/AR, full and body-only (3stage solver)
#   pck_synthetic.json  200 held-out synthetic 480x640 images: candidate PCK@0.2
# Usage: training/lspet/evaluate.sh MODEL OUTDIR [DATA_DIR (default ../shared/data)]
set -euo pipefail
model=$1
out=$2
data=${3:-../shared/data}
mkdir -p "$out"
python -m deepercut eval --model "$model" --data "$data/lspet/joints.mat" \
    --test-images training/lspet/val_images.txt --json "$out/lspet_val.json"
python -m deepercut eval --model "$model" \
    --data "$data/coco-mini/annotations/person_keypoints_val2017.json" \
    --images "$data/coco-mini/val2017" --solver 3stage --json "$out/coco_mini.json"
python -m deepercut eval --model "$model" --images 200 --json "$out/pck_synthetic.json"
