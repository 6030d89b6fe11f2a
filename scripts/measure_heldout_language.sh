#!/usr/bin/env bash
# Issue 18's measurements: the held-out language tests with the instruction parser, next to the package's own
# phrasings on the same scenes. Writes docs/results/{eval,forecast}-*language*; `molmomotion results` prints
# them side by side (README "Instructions in your own words"). About 45 min per set on 2 CPU cores.
#   bash scripts/measure_heldout_language.sh [EPISODES_PER_FAMILY] [FORECAST_EPISODES_PER_FAMILY]
# SETS="heldout heldout2 heldout3" (default all: heldout was seen while the parser grew; heldout2 was written blind
# to it, but its header (verb list) was read while the instruction reader was built; heldout3 was written blind to
# both);
# OWN=0 skips the own-phrasing runs (they do not depend on the set).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
N="${1:-100}"
NF="${2:-25}"
SETS="${SETS:-heldout heldout2 heldout3}"
OWN="${OWN:-1}"
OUT=docs/results
mm=("$ROOT/.venv/bin/molmomotion")

for set in $SETS; do
    suite="${set}_language"
    # planner-fm / planner-ar: held-out wording with the parser, and (the "before") planner-fm without it.
    for agent in planner-fm planner-ar; do
        "${mm[@]}" sim-eval --agent "$agent" --agent-arg instruction_parser=true --suite "$suite" \
            --episodes "$N" --out "$OUT/eval-$suite-$agent-parser.json" --no-progress
    done
    "${mm[@]}" sim-eval --agent planner-fm --suite "$suite" --episodes "$N" \
        --out "$OUT/eval-$suite-planner-fm.json" --no-progress
    # Policy A (the motion-initialised policy of the success-rate experiment).
    "${mm[@]}" sim-eval --agent policy --agent-arg checkpoint=A --agent-arg instruction_parser=true --suite "$suite" \
        --episodes "$N" --out "$OUT/eval-$suite-policy-A-parser.json" --no-progress
done

if [ "$OWN" = 1 ]; then
    for agent in planner-fm planner-ar; do
        "${mm[@]}" sim-eval --agent "$agent" --agent-arg instruction_parser=true --suite main \
            --episodes "$N" --out "$OUT/eval-main-$agent-parser.json" --no-progress
    done
    "${mm[@]}" sim-eval --agent policy --agent-arg checkpoint=A --agent-arg instruction_parser=true --suite main \
        --episodes "$N" --out "$OUT/eval-main-policy-A-parser.json" --no-progress
fi

# Forecaster motion types on test-split episodes re-phrased with each held-out set (phrase fields recorded).
DATA=data/test-language
[ -d "$DATA" ] || "${mm[@]}" generate-data --split test --episodes "$NF" --out "$DATA" --no-progress
for set in $SETS; do
    suffix=${set#heldout}
    for parser in "" "--instruction-parser"; do
        psuffix=${parser:+-parser}
        "${mm[@]}" eval-forecast --models fm,ar --data "$DATA" --phrasings "$set" $parser --no-progress \
            --out "$OUT/forecast-test-heldout$suffix$psuffix"
    done
done
if [ "$OWN" = 1 ]; then
    "${mm[@]}" eval-forecast --models fm,ar --data "$DATA" --instruction-parser --no-progress \
        --out "$OUT/forecast-test-parser"
fi
