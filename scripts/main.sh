#!/usr/bin/env bash
# Set-up + main job: the simulated evaluation through the ROS 2 graph (sim_node, speech_node,
# forecaster_node with the shipped FM model, manipulation_node, episode runner; one process each,
# an isolated DDS domain), 5 test-seed episodes per task family; prints the success table.
#   bash scripts/main.sh                             # = molmomotion launch sim_eval --episodes 5 --isolated
#   bash scripts/main.sh sim-eval --agent planner-fm  # any arguments: a full `molmomotion` command line
# Runs from the repository root, so relative paths in the arguments are relative to it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"  # root, set-up, environment

if [[ $# -eq 0 ]]; then
    set -- launch sim_eval --episodes 5 --isolated --out results/main-graph-eval.json
fi
exec "$ROOT/.venv/bin/molmomotion" "$@"
