#!/usr/bin/env bash
# Issue 19's re-forecast measurements: a sim_eval graph run recorded one bag per episode (with sim/ground_truth),
# then (1) `reforecast` with the graph's own model and seed (the recorded forecasts must come out again), (2)
# `eval-forecast --bag` of every backend on the recording, and (3) `eval-forecast` on a dataset generated from the
# same test seeds, for the agreement of the two scorings. Writes docs/results/reforecast/ (README "Recording").
#   bash scripts/measure_reforecast.sh [EPISODES_PER_FAMILY]      # default 2: ~6 min on 2 CPU cores
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
N="${1:-2}"
OUT=docs/results/reforecast
WORK="$(mktemp -d "${TMPDIR:-/tmp}/measure_reforecast.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mm=("$ROOT/.venv/bin/molmomotion")
MODELS=fm,ar,stationary,constant-velocity
mkdir -p "$OUT"

"${mm[@]}" launch sim_eval --episodes "$N" --out "$OUT/graph-episodes.json" --log-dir "$WORK/logs" --no-progress \
    --record "$WORK/bags"
"${mm[@]}" reforecast "$WORK/bags" --model fm --out "$WORK/reforecast-fm" --no-video --no-progress
cp "$WORK/reforecast-fm/reforecast.json" "$OUT/reforecast-fm.json"
"${mm[@]}" eval-forecast --bag "$WORK/bags" --models "$MODELS" --instruction-parser --out "$WORK/eval-bag" \
    --no-progress
cp "$WORK/eval-bag/forecast-eval.json" "$OUT/eval-forecast-bag.json"
"${mm[@]}" generate-data --split test --episodes "$N" --out "$WORK/data"
"${mm[@]}" eval-forecast --data "$WORK/data" --models "$MODELS" --instruction-parser --out "$WORK/eval-data" \
    --no-progress
cp "$WORK/eval-data/forecast-eval.json" "$OUT/eval-forecast-dataset.json"
"$ROOT/.venv/bin/python" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
bag, data = (json.loads((out / f"eval-forecast-{name}.json").read_text()) for name in ("bag", "dataset"))
re = json.loads((out / "reforecast-fm.json").read_text())["summary"]
print(f"reforecast fm on the recording: {re['compared_to_recorded']} recorded forecasts made again, largest "
      f"difference {re['max_diff_to_recorded_m']:.2e} m")
k = bag["num_samples"]
print(f"{'backend':<18} {'ADE@1 bag':>10} {'ADE@1 data':>10} {'ADE best@' + str(k) + ' bag':>15} "
      f"{'data':>8} {'FDE best@' + str(k) + ' bag':>15} {'data':>8}")
for name, s in bag["summary"].items():
    d = data["summary"][name]
    print(f"{name:<18} {s['k1']['ade_best']:>10.4f} {d['k1']['ade_best']:>10.4f} "
          f"{s[f'k{k}']['ade_best']:>15.4f} {d[f'k{k}']['ade_best']:>8.4f} "
          f"{s[f'k{k}']['fde_best']:>15.4f} {d[f'k{k}']['fde_best']:>8.4f}")
print(f"recording: {bag['episodes']} requests from {bag['bags']} episode bags; dataset: {data['episodes']} episodes "
      "(the same test seeds; the dataset's query points are sampled on the target, the graph's chosen by grounding)")
EOF
