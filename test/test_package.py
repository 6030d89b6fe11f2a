"""Packaging and repository hygiene: package.xml vs setup.py, import isolation, installed entry
point, config files, dependency lock, file sizes. Fast; no ROS graph, no simulation."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_BYTES = 25 * 1024 * 1024
SKIP_DIRS = {".git", ".venv", "build", "install", "log", "__pycache__", ".pytest_cache", ".ruff_cache"}


def _setup_py_metadata() -> dict[str, str]:
    """name and version passed to setup() in setup.py, resolving module-level string constants."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    constants: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    constants[target.id] = node.value.value
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            out = {}
            for kw in node.keywords:
                if kw.arg in ("name", "version"):
                    if isinstance(kw.value, ast.Constant):
                        out[kw.arg] = kw.value.value
                    elif isinstance(kw.value, ast.Name):
                        out[kw.arg] = constants[kw.value.id]
            return out
    raise AssertionError("no setup(...) call in setup.py")


def test_package_xml_matches_setup_py():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    meta = _setup_py_metadata()
    assert root.findtext("name") == meta["name"] == "molmomotion_ros"
    assert root.findtext("version") == meta["version"]
    assert root.findtext("license") == "Apache-2.0"
    assert root.findtext("export/build_type") == "ament_python"
    # the installed distribution is the one in this checkout (a stale install would differ)
    assert importlib.metadata.version("molmomotion_ros") == meta["version"]


def test_ament_resource_marker_exists():
    assert (ROOT / "resource" / "molmomotion_ros").is_file()


@pytest.mark.parametrize("module", ["molmomotion_ros", "molmomotion_ros.camera", "molmomotion_sim.world"])
def test_core_imports_without_rclpy(module):
    """The core library must import on machines without ROS: only molmomotion_ros.nodes may use rclpy."""
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "bad = sorted(m for m in sys.modules if m == 'rclpy' or m.startswith('rclpy.'))\n"
        "print('RCLPY_MODULES=' + ','.join(bad))\n"
    )
    # Same interpreter as the test run (see NOTES: a different venv's Python cannot import rclpy).
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr
    report = [line for line in proc.stdout.splitlines() if line.startswith("RCLPY_MODULES=")]
    assert report, proc.stdout + proc.stderr
    assert report[-1] == "RCLPY_MODULES=", f"importing {module} imported rclpy: {report[-1][:200]}"


def test_console_script_entry_point_declared():
    eps = importlib.metadata.entry_points(group="console_scripts")
    targets = {ep.name: ep.value for ep in eps if ep.name == "molmomotion"}
    assert targets == {"molmomotion": "molmomotion_ros.cli:main"}


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not in a venv (colcon installs to lib/molmomotion_ros)")
def test_console_script_installed_next_to_interpreter():
    script = Path(sys.executable).parent / "molmomotion"
    assert script.is_file(), f"{script} missing: run scripts/bootstrap.sh"
    assert os.access(script, os.X_OK)


def _config_files() -> list[Path]:
    """Every file under config/ except documentation (README.md and the like)."""
    return sorted(
        p for p in (ROOT / "config").rglob("*") if p.is_file() and p.suffix != ".md" and "__pycache__" not in p.parts
    )


def test_config_dir_is_not_empty():
    assert _config_files(), "config/ holds no files"


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_config_file_parses(path):
    if path.suffix == ".xml":  # e.g. a Fast DDS profile
        ET.parse(path)
        return
    assert path.suffix in (".yaml", ".yml"), f"{path.name}: config/ holds YAML (or XML) files only"
    with path.open() as f:
        docs = list(yaml.safe_load_all(f))
    assert docs and all(d is not None for d in docs), f"{path.name} is empty"


def test_setup_py_installs_every_config_folder():
    """A config folder setup.py does not glob (say config/phrasings) is missing from pip and colcon installs."""
    setup = (ROOT / "setup.py").read_text()
    missing = sorted({f"{p.parent.relative_to(ROOT).as_posix()}/*{p.suffix}" for p in _config_files()}
                     - set(re.findall(r'glob\("([^"]+)"\)', setup)))
    assert missing == [], f"setup.py data_files lacks {missing}"


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert m, f"lock.txt: not an exact pin: {line!r}"
        pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_lock_pins_every_direct_dependency():
    pins = _lock_pins()
    assert pins.get("torch") == "2.13.0"
    direct = []
    for line in (ROOT / "requirements" / "direct.txt").read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            direct.append(re.sub(r"[-_.]+", "-", name).lower())
    assert direct
    assert [n for n in direct if n not in pins] == []


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not in a venv: a ROS install brings its own versions")
def test_installed_versions_match_lock():
    mismatched = []
    for name, version in _lock_pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            mismatched.append(f"{name} (not installed)")
            continue
        if installed.split("+")[0] != version:
            mismatched.append(f"{name} {installed} != {version}")
    assert mismatched == [], "run scripts/bootstrap.sh: " + ", ".join(mismatched)


def _repository_files() -> list[Path]:
    """Files that are (or would be) committed: tracked plus untracked-but-not-ignored."""
    if shutil.which("git") and (ROOT / ".git").exists():
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
        if proc.returncode == 0:
            return [ROOT / p for p in proc.stdout.decode().split("\0") if p]
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        files.extend(Path(dirpath) / f for f in filenames)
    return files


def test_no_large_files_in_repository():
    files = _repository_files()
    assert files
    big = [
        f"{p.relative_to(ROOT)} ({p.stat().st_size / 2**20:.1f} MiB)"
        for p in files
        if p.is_file() and not p.is_symlink() and p.stat().st_size > MAX_FILE_BYTES
    ]
    assert big == [], "files over 25 MB belong outside git (data/, results/ are ignored): " + ", ".join(big)


# ROS packages our code may import (a ROS install provides them; the venv gets them from the wheels).
ROS_PYTHON_PACKAGES = {"rclpy", "ament_index_python", "launch", "launch_ros", "builtin_interfaces", "rcl_interfaces",
                       "rosgraph_msgs", "lifecycle_msgs", "std_msgs", "sensor_msgs", "geometry_msgs", "trajectory_msgs",
                       "visualization_msgs", "std_srvs", "diagnostic_msgs", "control_msgs", "tf2_msgs", "tf2_ros",
                       "action_msgs", "unique_identifier_msgs"}


def _imported_top_level_names() -> set[str]:
    names = set()
    for folder in ("molmomotion_ros", "sim", "policies", "launch", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def test_package_xml_declares_exactly_the_ros_packages_the_code_imports():
    declared = {e.text for e in ET.parse(ROOT / "package.xml").getroot().findall("exec_depend")}
    imported = _imported_top_level_names() & ROS_PYTHON_PACKAGES
    assert imported - declared == set(), f"imported but not in package.xml: {sorted(imported - declared)}"
    ros_declared = {d for d in declared if not d.startswith("python3-")}
    assert ros_declared - imported == set(), f"in package.xml but never imported: {sorted(ros_declared - imported)}"
