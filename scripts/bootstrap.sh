#!/usr/bin/env bash
# Idempotent set-up of molmomotion_ros on Debian 12 / Ubuntu: system packages, .venv, Python deps.
#
#   bash scripts/bootstrap.sh            # from any directory; silent and ~1 s when nothing to do
#   bash scripts/bootstrap.sh --force    # reinstall the Python deps even if the stamp matches
#
# Steps:
#   1. apt packages (libusb-1.0-0 for open3d-cpu, espeak-ng + sox for the speech tests, cmake + g++
#      + make for step 4), skipped when `dpkg -s` shows them all installed. Uses sudo only when not root.
#   2. .venv created with $PYTHON (default python3; 3.11 is what lock.txt was resolved for).
#   3. pip/setuptools, then torch (pinned first, so nothing can pull a CUDA build), then all of
#      requirements/lock.txt (with itself as constraint), then `pip install --no-deps -e .`.
#      Skipped when .venv/.bootstrap-stamp matches the hash of lock.txt, setup.py, setup.cfg and
#      package.xml.
#   3b. The optional group requirements/ray.txt (Ray, for --executor ray and its tests), pinned apart
#      from lock.txt and installed with lock.txt as constraint; skipped when .venv/.bootstrap-ray-stamp
#      matches the hash of both files, left out with BOOTSTRAP_SKIP_RAY=1.
#   4. ROS interfaces that no wheel ships (control_msgs, tf2_msgs): scripts/build_interfaces.sh
#      generates them into .venv from interfaces/ (~1 min, once); skipped in milliseconds by its own
#      stamp, and left alone when a ROS install already provides them.
# Environment: PYTHON=python3.11 to choose the interpreter; BOOTSTRAP_SKIP_APT=1 to skip step 1
# (no root); BOOTSTRAP_SKIP_RAY=1 to skip step 3b; BOOTSTRAP_SKIP_INTERFACES=1 to skip step 4;
# BOOTSTRAP_VERBOSE=1 to show pip/apt/build output. Output is quiet unless something is installed;
# on failure, the tail of the log and a one-line error, exit status 1. --force also reinstalls the
# optional group and rebuilds the interfaces.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
LOCK="requirements/lock.txt"
STAMP="$VENV/.bootstrap-stamp"
RAY_GROUP="requirements/ray.txt"
RAY_STAMP="$VENV/.bootstrap-ray-stamp"
PYTHON="${PYTHON:-python3}"
# cmake, g++, make: scripts/build_interfaces.sh compiles control_msgs/tf2_msgs (step 4).
APT_PACKAGES=(libusb-1.0-0 espeak-ng sox cmake g++ make)
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bootstrap: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

LOG="$(mktemp "${TMPDIR:-/tmp}/molmomotion-bootstrap.XXXXXX")"
STEP="starting"
on_exit() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        if [[ -s "$LOG" ]]; then
            echo "---- last lines of the log ($LOG) ----" >&2
            tail -n 25 "$LOG" >&2
            echo "--------------------------------------" >&2
            echo "bootstrap: FAILED while ${STEP} (exit ${rc}); full log: ${LOG}" >&2
        else
            rm -f "$LOG"
            echo "bootstrap: FAILED while ${STEP} (exit ${rc})" >&2
        fi
    else
        rm -f "$LOG"
    fi
}
trap on_exit EXIT

say() { echo "bootstrap: $*" >&2; }
die() { STEP="$1"; exit 1; }
# Run a command with its output in the log (or on the terminal with BOOTSTRAP_VERBOSE=1).
run() {
    if [[ "${BOOTSTRAP_VERBOSE:-0}" == 1 ]]; then
        "$@" 2>&1 | tee -a "$LOG"
    else
        "$@" >>"$LOG" 2>&1
    fi
}

[[ -f "$LOCK" ]] || die "looking for $LOCK (run from a complete checkout)"

# ---------------------------------------------------------------- 1. system packages
need_venv_pkg=0
if [[ ! -x "$VENV/bin/python" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "looking for the Python interpreter '$PYTHON' (set PYTHON=/path/to/python3.11)"
    if ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
        need_venv_pkg=1   # Debian/Ubuntu ship venv/ensurepip separately, in python3-venv
    fi
fi

missing=()
if command -v dpkg >/dev/null 2>&1; then
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [[ $need_venv_pkg == 1 ]]; then
        missing+=("python3-venv")
    fi
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "${BOOTSTRAP_SKIP_APT:-0}" == 1 ]]; then
        say "BOOTSTRAP_SKIP_APT=1: not installing ${missing[*]} (some features/tests may fail)"
    else
        STEP="installing apt packages: ${missing[*]}"
        SUDO=()
        if [[ $(id -u) -ne 0 ]]; then
            command -v sudo >/dev/null 2>&1 \
                || die "installing apt packages ${missing[*]}: not root and no sudo (install them, or BOOTSTRAP_SKIP_APT=1)"
            SUDO=(sudo)
        fi
        say "installing apt packages: ${missing[*]}"
        run "${SUDO[@]}" apt-get update -qq
        run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi

# ---------------------------------------------------------------- 2. virtual environment
if [[ ! -x "$VENV/bin/python" ]]; then
    STEP="creating $VENV with $PYTHON"
    pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    case "$pyver" in
        3.11) ;;
        3.1[0-9]) say "warning: $PYTHON is Python $pyver; $LOCK was resolved for 3.11 (set PYTHON=python3.11)" ;;
        *) die "checking the Python version: $PYTHON is $pyver, need 3.10+ (3.11 recommended; set PYTHON=...)" ;;
    esac
    say "creating .venv with $PYTHON ($pyver)"
    rm -f "$STAMP"
    run "$PYTHON" -m venv "$VENV"
fi

# ---------------------------------------------------------------- 3. Python dependencies
STEP="hashing the dependency files"
stamp_value() {
    local f
    for f in "$LOCK" setup.py setup.cfg package.xml; do
        if [[ -f "$f" ]]; then
            printf '%s  %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
        else
            printf 'missing  %s\n' "$f"
        fi
    done | sha256sum | cut -d' ' -f1
}
want="$(stamp_value)"
have="$(cat "$STAMP" 2>/dev/null || true)"

if [[ $FORCE == 1 || "$want" != "$have" ]]; then
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
    t0=$SECONDS
    # Versions come from lock.txt only; this script pins nothing itself.
    pin_of() { grep -iE "^$1==" "$LOCK" | head -n1; }
    tooling=("$(pin_of pip)" "$(pin_of setuptools)")
    torch_pin="$(pin_of torch)"
    [[ -n "$torch_pin" ]] || die "reading the torch pin from $LOCK (expected a line 'torch==X.Y.Z')"

    say "installing Python dependencies from $LOCK (a cold run takes 1-2 min) ..."
    rm -f "$STAMP"
    STEP="installing ${tooling[*]}"
    run "${PIP[@]}" install -q "${tooling[@]}"
    STEP="installing $torch_pin (before anything that depends on torch)"
    run "${PIP[@]}" install -q "$torch_pin" -c "$LOCK"
    STEP="installing $LOCK"
    run "${PIP[@]}" install -q -r "$LOCK" -c "$LOCK"
    STEP="installing molmomotion_ros itself (pip install --no-deps --no-build-isolation -e .)"
    run "${PIP[@]}" install -q --no-deps --no-build-isolation -e .
    STEP="checking the installed set (pip check)"
    run "${PIP[@]}" check
    STEP="writing $STAMP"
    echo "$want" >"$STAMP"
    say "done in $((SECONDS - t0)) s ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo 'torch ?'))"
fi

# ---------------------------------------------------------------- 3b. optional group: Ray
if [[ "${BOOTSTRAP_SKIP_RAY:-0}" != 1 && -f "$RAY_GROUP" ]]; then
    STEP="hashing $RAY_GROUP"
    ray_want="$(cat "$LOCK" "$RAY_GROUP" | sha256sum | cut -d' ' -f1)"
    ray_have="$(cat "$RAY_STAMP" 2>/dev/null || true)"
    if [[ $FORCE == 1 || "$ray_want" != "$ray_have" ]]; then
        PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
        say "installing the optional group $RAY_GROUP ..."
        rm -f "$RAY_STAMP"
        STEP="installing $RAY_GROUP (with $LOCK as constraint)"
        run "${PIP[@]}" install -q -r "$RAY_GROUP" -c "$LOCK"
        STEP="checking the installed set (pip check)"
        run "${PIP[@]}" check
        echo "$ray_want" >"$RAY_STAMP"
    fi
fi

# ---------------------------------------------------------------- 4. ROS interfaces no wheel ships
if [[ "${BOOTSTRAP_SKIP_INTERFACES:-0}" != 1 ]]; then
    STEP="generating control_msgs and tf2_msgs (scripts/build_interfaces.sh)"
    if [[ $FORCE == 1 ]]; then
        VENV="$VENV" bash "$ROOT/scripts/build_interfaces.sh" --force
    else
        VENV="$VENV" bash "$ROOT/scripts/build_interfaces.sh"
    fi
fi
