#!/usr/bin/env bash
# Set-up + lint + the whole test suite.
#   bash scripts/test.sh                 # ruff check . ; pytest
#   bash scripts/test.sh -m "not slow"   # arguments go to pytest (e.g. -k name, -x, test/sim)
# Both steps always run; the exit status is non-zero if either fails (pytest's 5, "no tests
# collected", counts as a failure too).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"  # root, set-up, environment

lint_rc=0
"$ROOT/.venv/bin/ruff" check . || lint_rc=$?

test_rc=0
"$ROOT/.venv/bin/python" -m pytest "$@" || test_rc=$?

if [[ $lint_rc -ne 0 || $test_rc -ne 0 ]]; then
    echo "test.sh: FAILED (ruff exit ${lint_rc}, pytest exit ${test_rc})" >&2
    exit 1
fi
echo "test.sh: lint and tests passed" >&2
