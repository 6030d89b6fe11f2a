import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # rosutil

from rosutil import ros_domain  # noqa: E402


@pytest.fixture
def ros_env():
    """This test's isolated ROS environment (random domain, localhost discovery), also applied to
    os.environ so in-process rclpy joins the same domain; yields the env dict for child processes."""
    import os

    with ros_domain():
        yield dict(os.environ)
