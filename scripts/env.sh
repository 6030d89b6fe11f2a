# Sourced by the entry scripts: go to the repository root, set up, and export what every command needs.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1
# The ROS wheels' .pth re-executes Python once with LD_LIBRARY_PATH set, guarded by this variable;
# inherited from another venv's Python it would stop ours from finding its own ROS libraries.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
