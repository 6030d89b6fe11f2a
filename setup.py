"""ament_python package: `pip install -e .` in a venv, or `colcon build` on a ROS 2 install."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "molmomotion_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"])
    + ["molmomotion_sim", "molmomotion_sim.tasks", "molmomotion_policies"],
    # sim/ and policies/ live at the top level but import under names that cannot collide.
    package_dir={"molmomotion_sim": "sim", "molmomotion_policies": "policies"},
    package_data={"molmomotion_sim.tasks": ["README.md"], PACKAGE: ["checkpoints/*.pt", "checkpoints/*.npz"],
                  "molmomotion_policies": ["checkpoints/*.pt", "protocol.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/suites", glob("config/suites/*.yaml")),
        (f"share/{PACKAGE}/config/phrasings", glob("config/phrasings/*.yaml")),
    ],
    install_requires=["setuptools"],
    # Optional: `--executor ray` (molmomotion_ros.execution). requirements/ray.txt pins the tested version.
    extras_require={"ray": ["ray[client]>=2.40"]},
    zip_safe=True,
    maintainer="molmomotion_ros developers",
    maintainer_email="molmomotion-ros@users.noreply.github.com",
    description="Forecast-driven manipulation for ROS 2: MolmoMotion-style point-trajectory "
    "forecasting, planning, policies and a PyBullet pick-and-place harness.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "molmomotion = molmomotion_ros.cli:main",
            # ROS 2 nodes (lib/molmomotion_ros/<name> on colcon installs, for `ros2 run`/launch files)
            "forecaster_node = molmomotion_ros.nodes.forecaster_node:main",
            "speech_node = molmomotion_ros.nodes.speech_node:main",
            "sim_node = molmomotion_ros.nodes.sim_node:main",
            "manipulation_node = molmomotion_ros.nodes.manipulation_node:main",
            "policy_node = molmomotion_ros.nodes.policy_node:main",
            "episode_runner = molmomotion_ros.nodes.episode_runner:main",
            "fake_franka = molmomotion_ros.nodes.fake_franka_node:main",
        ],
    },
)
