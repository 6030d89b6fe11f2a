#!/usr/bin/env bash
# Set-up + main job: oracle evaluation on every task family, prints a result table.
#   bash scripts/main.sh                     # = molmomotion sim-eval --agent oracle --suite config/suites/main.yaml
#   bash scripts/main.sh --agent ... [args]  # any arguments replace the defaults (see `molmomotion sim-eval -h`)
# Runs from the repository root, so relative paths in the arguments are relative to it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh

export HF_HUB_OFFLINE=1
# The ROS wheels' .pth re-executes Python once with LD_LIBRARY_PATH set, guarded by this variable;
# inherited from another venv's Python it would stop ours from finding its own ROS libraries.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

if [[ $# -eq 0 ]]; then
    set -- --agent oracle --suite config/suites/main.yaml
fi
exec "$ROOT/.venv/bin/molmomotion" sim-eval "$@"
