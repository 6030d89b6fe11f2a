"""Where the package's data folders live, for a source checkout, a pip install and a colcon install."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_NAME = "molmomotion_ros"
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def share_dir() -> Path:
    """The folder that holds ``config/`` and ``launch/``.

    Order: a source checkout (editable install), an ament index (colcon install), then the
    ``share/molmomotion_ros`` folder that a regular pip install writes under ``sys.prefix``.
    """
    if (_SOURCE_ROOT / "config" / "camera.yaml").is_file():
        return _SOURCE_ROOT
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE_NAME))
    except Exception:  # ament_index is absent or does not know the package
        pass
    return Path(sys.prefix) / "share" / PACKAGE_NAME


def config_path(name: str) -> Path:
    return share_dir() / "config" / name
