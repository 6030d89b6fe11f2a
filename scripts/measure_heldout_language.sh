#!/usr/bin/env bash
# Issue 18's measurements: the held-out language test with the instruction parser, next to the package's own
# phrasings on the same scenes. Writes docs/results/{eval,forecast}-*language*; `molmomotion results` prints
# them side by side (README "Instructions in your own words"). About 45 min on 2 CPU cores.
#   bash scripts/measure_heldout_language.sh [EPISODES_PER_FAMILY] [FORECAST_EPISODES_PER_FAMILY]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
N="${1:-100}"
NF="${2:-25}"
OUT=docs/results
mm=("$ROOT/.venv/bin/molmomotion")

# planner-fm / planner-ar: held-out wording with the parser, and (the "before") without it.
for agent in planner-fm planner-ar; do
    "${mm[@]}" sim-eval --agent "$agent" --agent-arg instruction_parser=true --suite heldout_language \
        --episodes "$N" --out "$OUT/eval-heldout_language-$agent-parser.json" --no-progress
    "${mm[@]}" sim-eval --agent "$agent" --agent-arg instruction_parser=true --suite main \
        --episodes "$N" --out "$OUT/eval-main-$agent-parser.json" --no-progress
done
"${mm[@]}" sim-eval --agent planner-fm --suite heldout_language --episodes "$N" \
    --out "$OUT/eval-heldout_language-planner-fm.json" --no-progress

# Policy A (the motion-initialised policy of the success-rate experiment).
for suite in heldout_language main; do
    "${mm[@]}" sim-eval --agent policy --agent-arg checkpoint=A --agent-arg instruction_parser=true --suite "$suite" \
        --episodes "$N" --out "$OUT/eval-$suite-policy-A-parser.json" --no-progress
done

# Forecaster motion types on test-split episodes re-phrased with the held-out set (phrase fields recorded).
DATA=data/test-language
"${mm[@]}" generate-data --split test --episodes "$NF" --out "$DATA" --no-progress
for parser in "" "--instruction-parser"; do
    suffix=${parser:+-parser}
    "${mm[@]}" eval-forecast --models fm,ar --data "$DATA" --phrasings heldout $parser --no-progress \
        --out "$OUT/forecast-test-heldout$suffix"
done
"${mm[@]}" eval-forecast --models fm,ar --data "$DATA" --instruction-parser --no-progress --out "$OUT/forecast-test-parser"
