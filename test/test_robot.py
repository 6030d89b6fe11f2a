"""The robot description (config/robot.yaml → molmomotion_ros.robot): one home for joint names, home pose,
gripper and cell, and the harness and the planner use it."""

import numpy as np
import pytest
import yaml

from molmomotion_ros.paths import config_path
from molmomotion_ros.planning.kinematics import PandaKinematics
from molmomotion_ros.planning.limits import JointLimits
from molmomotion_ros.robot import ROBOT, RobotDescription, RobotDescriptionError


def test_the_description_agrees_with_the_joint_limits():
    limits = JointLimits.from_yaml()
    assert ROBOT.arm_joint_names == limits.joint_names
    assert np.all(limits.within_position_limits(np.asarray(ROBOT.home_joints_rad)))
    assert ROBOT.base_position_m == (0.0, 0.0, ROBOT.table_top_z_m)


def test_the_harness_resets_to_the_described_robot():
    from molmomotion_sim.world import World

    with World() as world:
        arm, fingers = world.joint_positions()[:7], world.gripper_width_m()
        ee_m = world.ee_pose()[:3]
    np.testing.assert_allclose(arm, ROBOT.home_joints_rad, atol=1e-3)
    # The planner's kinematics stands the arm where the description says: same grasp target as the harness.
    np.testing.assert_allclose(PandaKinematics().fk(np.asarray(ROBOT.home_joints_rad))[:3, 3], ee_m, atol=1e-3)
    assert fingers == pytest.approx(2 * ROBOT.gripper_open_m, abs=2e-3)


@pytest.mark.parametrize("change, words", [
    (lambda raw: raw["robot"].pop("finger_joints"), "finger_joints"),
    (lambda raw: raw["robot"].update(home_rad=[0.0, 1.0]), "one value per arm joint"),
    (lambda raw: raw["cell"].update(workspace_x_m=[0.7, 0.3]), "low < high"),
])
def test_a_malformed_description_is_refused_with_the_field(tmp_path, change, words):
    raw = yaml.safe_load(config_path("robot.yaml").read_text())
    change(raw)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RobotDescriptionError, match=words):
        RobotDescription.from_yaml(path)
