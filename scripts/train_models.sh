#!/usr/bin/env bash
# Re-create the shipped forecasting checkpoints from scratch (2 CPU cores: about 75 min in all).
#
#   bash scripts/train_models.sh            # data → base → fm + ar (in parallel) → eval tables
#
# 1. Motion data from the oracle (~15 min): 1500 train episodes per family, 100 per family for
#    validation, test and ood (data/ is git-ignored).
# 2. Base grounding encoder (1500 steps, ~11 min).
# 3. FM (2500 steps) and AR (2000 steps) forecasters from the base, side by side, 1 thread each (~35 min).
# 4. eval-forecast on the test and ood splits (tables + JSON + overlay PNGs under results/).
# Every step is deterministic for its seed; a step whose output exists is skipped (delete it to redo).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"  # root, set-up, environment
MM=".venv/bin/molmomotion"
CK="molmomotion_ros/checkpoints"

for spec in "train 1500" "validation 100" "test 100" "ood 100"; do
    set -- $spec
    [[ -f "data/$1/manifest.json" ]] || "$MM" generate-data --split "$1" --episodes "$2" --out "data/$1"
done
[[ -f "$CK/base.pt" ]] || "$MM" train --model base --data data/train --val data/validation --steps 1500 \
    --lr 2e-3 --val-every 250 --out "$CK/base.pt"
pids=()
for spec in "fm 2500" "ar 2000"; do
    set -- $spec
    head=$1
    if [[ ! -f "$CK/$head.pt" ]]; then
        OMP_NUM_THREADS=1 "$MM" train --model "$head" --data data/train --val data/validation --steps "$2" \
            --init "$CK/base.pt" --val-every 500 --out "$CK/$head.pt" --no-progress &
        pids+=($!)
    fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
for split in test ood; do
    "$MM" eval-forecast --models fm,ar,stationary,constant-velocity --split "$split" --out "results/forecast-$split"
done
