#!/usr/bin/env bash
# Set-up + main job: oracle evaluation on every task family, prints a result table.
#   bash scripts/main.sh                     # = molmomotion sim-eval --agent oracle --suite config/suites/main.yaml
#   bash scripts/main.sh --agent ... [args]  # any arguments replace the defaults (see `molmomotion sim-eval -h`)
# Runs from the repository root, so relative paths in the arguments are relative to it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"  # root, set-up, environment

if [[ $# -eq 0 ]]; then
    set -- --agent oracle --suite config/suites/main.yaml
fi
exec "$ROOT/.venv/bin/molmomotion" sim-eval "$@"
