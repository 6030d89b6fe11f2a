"""The controller's joint-space helpers against the simulator: what the ROS node computes from
joint_states must be what the harness agent reads from PyBullet."""

import numpy as np
import pytest

from molmomotion_policies.controller import (
    ChunkCommand,
    arm_state_from_joints,
    chunk_joint_targets,
    gripper_segments,
    hold_times,
)
from molmomotion_policies.observation import PolicyError
from molmomotion_ros.planning.kinematics import PandaKinematics
from molmomotion_ros.robot import HOME_JOINTS_RAD
from molmomotion_sim.world import World


@pytest.fixture(scope="module")
def kinematics():
    return PandaKinematics()


def test_arm_state_from_joints_matches_the_simulator(kinematics):
    rng = np.random.default_rng(3)
    with World() as world:
        for _ in range(5):
            q = np.asarray(HOME_JOINTS_RAD) + rng.uniform(-0.3, 0.3, 7)
            world.hold_arm(q)
            for j in range(7):  # teleport: the comparison is about kinematics, not control
                world.client.resetJointState(world.robot_id, j, q[j])
            state = arm_state_from_joints(kinematics, world.joint_positions()[:7], world.joint_positions()[7:])
            np.testing.assert_allclose(state.ee_position_m, world.ee_pose()[:3], atol=1e-4)
            assert abs(np.angle(np.exp(1j * (state.ee_yaw_rad - world.ee_yaw())))) < 1e-3
            assert state.gripper_width_m == pytest.approx(world.gripper_width_m())


def test_chunk_joint_targets_reach_the_setpoints(kinematics):
    home = np.asarray(HOME_JOINTS_RAD)
    start = arm_state_from_joints(kinematics, home, [0.04, 0.04])
    setpoints = start.ee_position_m + np.array([[0.02, 0, 0], [0.04, 0.01, -0.02], [0.05, 0.02, -0.04]])
    yaws = start.ee_yaw_rad + np.array([0.0, 0.1, 0.2])
    targets, failures = chunk_joint_targets(kinematics, ChunkCommand(setpoints, yaws, np.zeros(3, bool)), home)
    assert failures == 0
    for q, p, yaw in zip(targets, setpoints, yaws, strict=True):
        reached = arm_state_from_joints(kinematics, q, [0, 0])
        np.testing.assert_allclose(reached.ee_position_m, p, atol=2e-3)
        assert abs(np.angle(np.exp(2j * (reached.ee_yaw_rad - yaw)))) < 0.03  # modulo a half turn
    assert np.max(np.abs(np.diff(np.vstack([home, targets]), axis=0))) < 0.3  # seeded: no posture jumps


def test_unreachable_setpoint_holds_the_previous_target(kinematics):
    home = np.asarray(HOME_JOINTS_RAD)
    chunk = ChunkCommand(np.array([[3.0, 0.0, 0.5]]), np.zeros(1), np.zeros(1, bool))
    targets, failures = chunk_joint_targets(kinematics, chunk, home)
    assert failures == 1
    np.testing.assert_array_equal(targets[0], home)


def test_gripper_segments_and_hold_times():
    assert gripper_segments(np.array([0, 0, 1, 1, 0], bool)) == [(0, 2, False), (2, 4, True), (4, 5, False)]
    assert gripper_segments(np.zeros(0, bool)) == []
    times = hold_times(3, 1 / 15, 1 / 240)
    assert times.shape == (6,) and np.all(np.diff(times) > 0)
    assert times[-1] == pytest.approx(0.2)
    with pytest.raises(PolicyError):
        hold_times(2, 1 / 15, 0.1)


def test_temporal_ensembling_averages_the_chunks_that_cover_a_sample():
    """With ensemble_decay > 0 a sample's set-point is the weighted mean (newest weighted most) of every held
    chunk's prediction for it, in the world frame; samples only the newest chunk covers are its own."""
    from molmomotion_policies.controller import AgentConfig, ArmState, PolicyController

    controller = PolicyController.__new__(PolicyController)  # the ensembling needs no network
    controller.config = AgentConfig(execute_steps=4, ensemble_decay=0.5)
    controller.reset("")
    first = ArmState(np.array([0.5, 0.0, 0.8]), 0.0, 0.08)
    pos_a = np.tile(np.array([0.01, 0.0, 0.0]), (8, 1)) * np.arange(1, 9)[:, None]  # 1 cm per sample along x
    out_a, _ = controller._ensemble(first, pos_a, np.zeros(8))
    assert np.allclose(out_a, pos_a)  # nothing held yet
    controller.samples_used = 4
    second = ArmState(first.ee_position_m + pos_a[3], 0.0, 0.08)  # where the first chunk's 4th sample took it
    pos_b = np.tile(np.array([0.0, 0.01, 0.0]), (8, 1)) * np.arange(1, 9)[:, None]  # now along y
    out_b, yaw_b = controller._ensemble(second, pos_b, np.full(8, 0.2))
    w_new, w_old = 1 / (1 + np.exp(-0.5)), np.exp(-0.5) / (1 + np.exp(-0.5))
    for j in range(4):  # samples 5..8: the first chunk's 5th..8th and the second's 1st..4th
        expected = w_new * (second.ee_position_m + pos_b[j]) + w_old * (first.ee_position_m + pos_a[4 + j])
        assert np.allclose(second.ee_position_m + out_b[j], expected)
        assert np.isclose(yaw_b[j], w_new * 0.2)
    assert np.allclose(out_b[4:], pos_b[4:]) and np.allclose(yaw_b[4:], 0.2)


@pytest.mark.parametrize("field, value, message", [
    ("execute_steps", 0, "must be positive"), ("execute_steps", 2.5, "whole number"),
    ("ensemble_decay", "abc", "must be a number"), ("ensemble_decay", -1.0, ">= 0"),
    ("max_step_m", float("nan"), "must be a number"),
])
def test_agent_config_refuses_bad_values_with_the_field_named(field, value, message):
    from molmomotion_policies.controller import AgentConfig

    with pytest.raises(PolicyError, match=message) as info:
        AgentConfig(**{field: value})
    assert field in str(info.value) or message == ">= 0"
