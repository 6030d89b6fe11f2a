#!/usr/bin/env bash
# Generate the ROS 2 interface packages that no pip wheel ships -- control_msgs (FollowJointTrajectory,
# GripperCommand and what they use) and tf2_msgs -- from interfaces/ into the venv, with the rosidl
# generator and ament_cmake wheels that requirements/lock.txt pins (see interfaces/README.md).
#
#   bash scripts/build_interfaces.sh              # what bootstrap.sh runs; silent when nothing to do
#   bash scripts/build_interfaces.sh --force      # rebuild even if the stamp matches
#   bash scripts/build_interfaces.sh --uninstall  # remove what it installed from the venv
#
# Nothing is built when
#   - the venv's stamp (share/molmomotion_interfaces/stamp) matches the hash of interfaces/ (less its
#     README), this script, the venv's pyvenv.cfg and the generator-related pins of lock.txt; or
#   - control_msgs and tf2_msgs are importable, with loadable type support, from outside the venv
#     (a ROS install, e.g. /opt/ros/jazzy sourced): they are left alone and nothing is installed.
# Otherwise each package is configured, built (make -j$(nproc)) and installed into a staging folder,
# and only when both succeeded is the previous install (listed in share/molmomotion_interfaces/
# manifest.txt) replaced in the venv: lib/lib<pkg>__*.so, lib/pythonX.Y/site-packages/<pkg>,
# share/<pkg>, include/<pkg>, share/ament_index entries -- the layout of the ROS wheels, so the
# wheels' LD_LIBRARY_PATH set-up finds the libraries. About 1 min on 2 cores, ~8 MB.
# Needs cmake (>= 3.19), make, a C/C++ compiler and the Python headers of the venv's interpreter.
# Environment: VENV=/path/to/venv (default: <repo>/.venv); BUILD_INTERFACES_JOBS (default: nproc);
# BOOTSTRAP_VERBOSE=1 to show the build output.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOCK="requirements/lock.txt"
FORCE=0
UNINSTALL=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --uninstall) UNINSTALL=1 ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build_interfaces: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "build_interfaces: $*" >&2; }
VENV="$(cd "${VENV:-$ROOT/.venv}" 2>/dev/null && pwd)" || { say "no venv at ${VENV:-$ROOT/.venv} (run scripts/bootstrap.sh)"; exit 1; }
PY="$VENV/bin/python"
PACKAGES=(tf2_msgs control_msgs)
STATE="$VENV/share/molmomotion_interfaces"
STAMP="$STATE/stamp"
MANIFEST="$STATE/manifest.txt"
DIRS="$STATE/dirs.txt"

# Remove the previous install: the files in the manifest (paths relative to the venv), bytecode
# Python wrote next to our modules since, then the folders the install created, if left empty.
uninstall() {
    [[ -f "$MANIFEST" ]] || return 0
    local rel
    while IFS= read -r rel; do
        [[ -n "$rel" && "$rel" != /* && "$rel" != *..* ]] || continue
        rm -f "$VENV/$rel"
    done <"$MANIFEST"
    for rel in $(grep -oE '^lib/python[0-9.]+/site-packages/[A-Za-z0-9_]+/' "$MANIFEST" | sort -u); do
        if [[ -d "$VENV/$rel" ]]; then find "$VENV/$rel" -depth -type d -name __pycache__ -exec rm -rf {} +; fi
    done
    if [[ -f "$DIRS" ]]; then
        LC_ALL=C sort -r "$DIRS" | while IFS= read -r rel; do
            [[ -n "$rel" && "$rel" != /* && "$rel" != *..* ]] || continue
            rmdir "$VENV/$rel" 2>/dev/null || true
        done
    fi
    rm -f "$MANIFEST" "$DIRS" "$STAMP"
    rmdir "$STATE" 2>/dev/null || true
}

if [[ $UNINSTALL == 1 ]]; then
    uninstall
    say "removed control_msgs and tf2_msgs from $VENV"
    exit 0
fi

# ---------------------------------------------------------------- skip when up to date
stamp_value() {
    {
        find interfaces -type f ! -name README.md -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
        sha256sum <"$VENV/pyvenv.cfg" | cut -d' ' -f1
        grep -iE '^(ros-|numpy|catkin|empy|lark|setuptools)' "$LOCK" || true
    } | sha256sum | cut -d' ' -f1
}
want="$(stamp_value)"
if [[ $FORCE == 0 && -f "$MANIFEST" && "$(cat "$STAMP" 2>/dev/null || true)" == "$want" ]]; then
    exit 0
fi

# ---------------------------------------------------------------- provided by a ROS install?
# Prints the folder of each package when both import and their type support loads (as rclpy needs).
where="$(env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE "$PY" - <<'EOF' 2>/dev/null || true
import importlib, os
from rosidl_generator_py import import_type_support
for name in ("control_msgs", "tf2_msgs"):
    module = importlib.import_module(name)
    import_type_support(name)
    print(os.path.realpath(os.path.dirname(module.__file__)))
importlib.import_module("control_msgs.action").FollowJointTrajectory
importlib.import_module("control_msgs.action").GripperCommand
importlib.import_module("tf2_msgs.msg").TFMessage
EOF
)"
if [[ $FORCE == 0 && -n "$where" ]] && ! grep -qF "$(realpath "$VENV")/" <<<"$where"; then
    if [[ -f "$MANIFEST" ]]; then uninstall; fi  # ours would shadow or mix with theirs
    say "control_msgs and tf2_msgs come from $(tr '\n' ' ' <<<"$where")-- not building them"
    exit 0
fi

# ---------------------------------------------------------------- build
for tool in cmake make c++ cc; do
    command -v "$tool" >/dev/null 2>&1 || { say "needs '$tool' to build control_msgs/tf2_msgs (Debian/Ubuntu: apt-get install cmake g++ make)"; exit 1; }
done
"$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || { say "needs the Python headers of $PY (Debian/Ubuntu: apt-get install python3.X-dev)"; exit 1; }
[[ -f "$VENV/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" \
   && -f "$VENV/share/ament_cmake/cmake/ament_cmakeConfig.cmake" ]] \
    || { say "the rosidl generator / ament_cmake wheels of $LOCK are not in $VENV (run scripts/bootstrap.sh)"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/molmomotion-interfaces.XXXXXX")"
LOG="$WORK/build.log"
STAGE="$WORK/stage"
JOBS="${BUILD_INTERFACES_JOBS:-$(nproc 2>/dev/null || echo 2)}"
on_exit() {
    local rc=$?
    if [[ $rc -ne 0 && -s "$LOG" ]]; then
        cp "$LOG" "${TMPDIR:-/tmp}/molmomotion-interfaces-build.log" 2>/dev/null || true
        echo "---- last lines of the build log (${TMPDIR:-/tmp}/molmomotion-interfaces-build.log) ----" >&2
        tail -n 30 "$LOG" >&2
        echo "build_interfaces: FAILED (exit $rc); the venv was left as it was" >&2
    fi
    rm -rf "$WORK"
}
trap on_exit EXIT
run() {
    if [[ "${BOOTSTRAP_VERBOSE:-0}" == 1 ]]; then "$@" 2>&1 | tee -a "$LOG"; else "$@" >>"$LOG" 2>&1; fi
}

say "generating control_msgs and tf2_msgs into $VENV (~1 min, once) ..."
t0=$SECONDS
# Only the venv: no ROS install's paths (a sourced /opt/ros would mix distributions and Pythons).
BUILD_ENV=(env -u PYTHONPATH -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u COLCON_PREFIX_PATH
           "PATH=$VENV/bin:$PATH" "CMAKE_PREFIX_PATH=$VENV" "AMENT_PREFIX_PATH=$VENV")
for pkg in "${PACKAGES[@]}"; do
    run "${BUILD_ENV[@]}" cmake -S "interfaces/$pkg" -B "$WORK/build/$pkg" \
        -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
        -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY"
    run "${BUILD_ENV[@]}" cmake --build "$WORK/build/$pkg" -j "$JOBS"
    run "${BUILD_ENV[@]}" env DESTDIR="$STAGE" cmake --install "$WORK/build/$pkg"
done

# ---------------------------------------------------------------- install into the venv
root="$STAGE$VENV"
[[ -d "$root/lib" ]] || { echo "staging folder $root has no lib/" >>"$LOG"; exit 1; }
uninstall
(cd "$root" && find . -type f -o -type l) | sed 's#^\./##' | LC_ALL=C sort >"$WORK/manifest.txt"
# Folders this install creates (not those it shares with the wheels, e.g. lib/ or share/ament_index).
(cd "$root" && find . -mindepth 1 -type d) | sed 's#^\./##' | LC_ALL=C sort | while IFS= read -r rel; do
    [[ -e "$VENV/$rel" ]] || echo "$rel"
done >"$WORK/dirs.txt"
echo "share/molmomotion_interfaces" >>"$WORK/dirs.txt"
cp -a "$root/." "$VENV/"
mkdir -p "$STATE"
cp "$WORK/manifest.txt" "$MANIFEST"
cp "$WORK/dirs.txt" "$DIRS"

# The result must import and load its type support from the venv, as rclpy will.
run env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u PYTHONPATH "$PY" -c '
from rosidl_generator_py import import_type_support
from control_msgs.action import FollowJointTrajectory, GripperCommand
from tf2_msgs.msg import TFMessage
for name in ("control_msgs", "tf2_msgs"):
    import_type_support(name)
print("control_msgs and tf2_msgs import and load their type support")'
echo "$want" >"$STAMP"
say "done in $((SECONDS - t0)) s ($(wc -l <"$MANIFEST") files, $(cd "$root" && du -sh . | cut -f1))"
