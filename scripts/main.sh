#!/usr/bin/env bash
# Set-up + main job: simulated evaluation through the ROS 2 graph (one process per node, an isolated
# DDS domain), 5 test-seed episodes per task family, twice:
#   1. sim_eval: sim_node, speech_node, forecaster_node (shipped FM model), manipulation_node (planner)
#   2. sim_eval_policy: sim_node, forecaster_node, policy_node running the shipped closed-loop policy C
#      (encoder initialised from the motion forecaster, the forecast of the first frame as input)
# then prints both success tables side by side (`molmomotion results`). About 8 minutes on 2 cores.
#   bash scripts/main.sh                              # the above
#   bash scripts/main.sh sim-eval --agent planner-fm  # any arguments: a full `molmomotion` command line
# Runs from the repository root, so relative paths in the arguments are relative to it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"  # root, set-up, environment

if [[ $# -gt 0 ]]; then
    exec "$ROOT/.venv/bin/molmomotion" "$@"
fi
EPISODES="${MAIN_EPISODES:-5}"  # per family
"$ROOT/.venv/bin/molmomotion" launch sim_eval --episodes "$EPISODES" --isolated --out results/main-graph-eval.json
"$ROOT/.venv/bin/molmomotion" launch sim_eval_policy --policy C --episodes "$EPISODES" --isolated \
    --out results/main-policy-eval.json
echo
echo "Success through the ROS graph, test seeds (successes/episodes, rate [95% interval]):"
"$ROOT/.venv/bin/molmomotion" results results/main-graph-eval.json results/main-policy-eval.json \
    --labels "forecast (FM) + planner,forecast-conditioned policy C"
