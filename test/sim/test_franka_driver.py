"""The emulated drivers of fake_franka, without ROS: joint_trajectory_controller's acceptance, sampling,
tolerances and result codes on an ideal (or a blocked) arm; franka_gripper's GripperCommand on the simulated
hand; the FR3's frames."""

from __future__ import annotations

import numpy as np
import pytest

from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.conversions.poses import xyz_quat_to_matrix
from molmomotion_ros.node_specs.fake_franka import FAKE_FRANKA, SIM_CAMERA_HAND_EYE
from molmomotion_ros.paths import config_path
from molmomotion_ros.robot import TABLE_TOP_Z_M
from molmomotion_sim.franka_driver import (
    GOAL_TOLERANCE_VIOLATED,
    INVALID_GOAL,
    PATH_TOLERANCE_VIOLATED,
    SUCCESSFUL,
    FrankaHandEmulation,
    FrankaNames,
    GoalRejected,
    SegmentTolerances,
    StateTolerance,
    ToleranceRequest,
    TrajectoryControllerEmulation,
    TrajectoryPoint,
    base_in_world,
    camera_transforms,
    goal_tolerances,
    optical_rotation,
    resolve_tolerance,
    robot_transforms,
    validate_trajectory,
)
from molmomotion_sim.world import ARM_JOINTS, FINGER_JOINTS, PHYSICS_HZ, World

JOINTS = FrankaNames().arm_joints
DT = 1.0 / PHYSICS_HZ
Q0 = np.array([0.0, -0.5, 0.0, -2.3, 0.0, 1.8, 0.785])
VMAX = np.full(7, 2.0)


def points(times, positions, velocities=None, accelerations=None):
    return [TrajectoryPoint(t, tuple(q), tuple(velocities[i]) if velocities is not None else (),
                            tuple(accelerations[i]) if accelerations is not None else ())
            for i, (t, q) in enumerate(zip(times, positions, strict=True))]


def command(times, positions, **kwargs):
    return validate_trajectory(JOINTS, points(times, positions, **kwargs), JOINTS)


# --- tolerances ------------------------------------------------------------------------------------
def test_tolerance_special_values():
    assert resolve_tolerance(0.1, 0.0) == 0.1  # unspecified: the default
    assert resolve_tolerance(0.1, 0.3) == 0.3
    assert resolve_tolerance(0.1, -1.0) == 0.0  # erased: not checked
    with pytest.raises(ValueError):
        resolve_tolerance(0.1, -0.5)


def test_goal_tolerances_fall_back_to_the_defaults_on_any_bad_entry():
    defaults = SegmentTolerances.from_constraints(7, trajectory=0.2, goal=0.05, goal_time_s=1.0)
    tolerances, warning = goal_tolerances(defaults, JOINTS, [ToleranceRequest("fr3_joint2", position=0.1)],
                                          [ToleranceRequest("fr3_joint7", position=-1.0)], 0.0)
    assert warning is None and tolerances.goal_time_s == 1.0
    assert tolerances.path[1].position == 0.1 and tolerances.path[0].position == 0.2
    assert tolerances.goal[6].position == 0.0 and tolerances.goal[6].velocity == 0.01  # stopped velocity stays
    for path, goal, time_s in (([ToleranceRequest("elbow", 0.1)], [], 0.0), ([], [ToleranceRequest("fr3_joint1", -2)],
                                                                             0.0), ([], [], -3.0)):
        tolerances, warning = goal_tolerances(defaults, JOINTS, path, goal, time_s)
        assert tolerances == defaults and warning


# --- acceptance ------------------------------------------------------------------------------------
def test_a_valid_goal_is_reordered_into_the_controller_joint_order():
    order = [6, 2, 0, 4, 1, 5, 3]
    q = Q0 + 0.1
    accepted = validate_trajectory([JOINTS[j] for j in order], points([1.0], [q[order]]), JOINTS,
                                   current_rad=Q0, velocity_limits_rad_s=VMAX)
    np.testing.assert_allclose(accepted.positions[0], q)
    assert accepted.start_s is None and accepted.velocities == (None,)


@pytest.mark.parametrize("names, pts, kwargs, reason", [
    (JOINTS[:6], points([1.0], [Q0[:6]]), {}, "partial joint goals are not allowed"),
    ((*JOINTS[:6], "panda_joint7"), points([1.0], [Q0]), {}, "incoming joint panda_joint7 doesn't match"),
    (JOINTS, [], {}, "empty trajectory"),
    (JOINTS, points([1.0, 1.0], [Q0, Q0]), {}, "not strictly increasing"),
    (JOINTS, points([1.0], [Q0], velocities=[np.full(7, 0.1)]), {}, "is not zero"),
    (JOINTS, [TrajectoryPoint(1.0, tuple(Q0[:5]))], {}, "mismatch between joint_names size (7) and positions (5)"),
    (JOINTS, points([1.0], [Q0]), {"start_s": 5.0, "now_s": 7.0}, "ends in the past"),
    (JOINTS, points([0.0], [Q0 + 0.2]), {"current_rad": Q0, "velocity_limits_rad_s": VMAX,
                                          "start_tolerance_rad": 0.05}, "must start where the arm is"),
    (JOINTS, points([0.05], [Q0 + 0.2]), {"current_rad": Q0, "velocity_limits_rad_s": VMAX,
                                           "start_tolerance_rad": 0.05}, "must start where the arm is"),
    (JOINTS, points([1.0], [Q0 + np.array([0, 0, 0, 0, 0, 0, 3.0])]), {"upper_rad": np.full(7, 2.9)},
     "beyond its upper limit"),
    (JOINTS, points([1.0], [Q0 + np.nan]), {}, "NaN"),
])
def test_goals_joint_trajectory_controller_rejects(names, pts, kwargs, reason):
    with pytest.raises(GoalRejected, match=reason.replace("(", r"\(").replace(")", r"\)")):
        validate_trajectory(names, pts, JOINTS, **kwargs)


def test_a_far_first_point_is_fine_with_the_time_to_reach_it():
    validate_trajectory(JOINTS, points([0.5], [Q0 + 0.9]), JOINTS, current_rad=Q0, velocity_limits_rad_s=VMAX,
                        start_tolerance_rad=0.05)
    validate_trajectory(JOINTS, points([0.0], [Q0 + 0.04]), JOINTS, current_rad=Q0, velocity_limits_rad_s=VMAX,
                        start_tolerance_rad=0.05)


# --- the control loop on an ideal arm, or one blocked by an obstacle ---------------------------------
class Arm:
    """Follows the set-point exactly one cycle late; ``block`` freezes joint 1 beyond a position."""

    def __init__(self, q=Q0, block: float | None = None):
        self.q, self.qd, self.block = np.array(q, dtype=float), np.zeros(7), block

    def run(self, controller, t0: float, seconds: float):
        ended, t = [], t0
        for _ in range(int(round(seconds * PHYSICS_HZ))):
            setpoint, events = controller.update(t, self.q, self.qd)
            ended += events
            new = setpoint.copy()
            if self.block is not None:
                new[1] = min(new[1], self.block)
            self.qd, self.q = (new - self.q) / DT, new
            t += DT
        return ended, t


def controller(**constraints) -> TrajectoryControllerEmulation:
    return TrajectoryControllerEmulation(JOINTS, SegmentTolerances.from_constraints(7, **constraints), DT)


def test_a_goal_succeeds_once_the_arm_has_stopped_at_the_last_point_and_is_then_held():
    c, arm = controller(), Arm()
    target = Q0 + 0.3
    c.command(command([0.5, 1.0], [Q0 + 0.15, target]), goal="g")
    ended, t = arm.run(c, 10.0, 0.9)
    assert not ended and c.feedback.goal == "g" and c.feedback.desired.before_last_point
    ended, t = arm.run(c, t, 0.3)
    assert [(e.goal, e.succeeded, e.code, e.message) for e in ended] == [("g", True, SUCCESSFUL,
                                                                          "Goal successfully reached!")]
    np.testing.assert_allclose(arm.q, target, atol=1e-9)
    assert c.is_holding and c.active_goal is None


def test_the_first_point_is_reached_from_where_the_arm_was_when_the_goal_arrived():
    c, arm = controller(), Arm()
    c.command(command([1.0], [Q0 + 0.4]))
    arm.run(c, 0.0, 0.5 + DT)
    np.testing.assert_allclose(arm.q, Q0 + 0.2, atol=0.01)  # linear from the arm's position at arrival


def test_cubic_and_quintic_segments_pass_through_points_with_their_velocities():
    v = np.full((2, 7), 0.0)
    v[0] = 0.4
    for kwargs in ({"velocities": np.vstack([v[0], v[1]])},
                   {"velocities": np.vstack([v[0], v[1]]), "accelerations": np.zeros((2, 7))}):
        c, arm = controller(), Arm()
        c.command(command([0.5, 1.5], [Q0 + 0.1, Q0 + 0.5], **kwargs))
        _, t = arm.run(c, 0.0, 0.5)  # the set-point at the end of this run is the one for t = 0.5 + DT
        sample = c._trajectory.sample(0.5)
        np.testing.assert_allclose(sample.positions, Q0 + 0.1, atol=1e-9)
        np.testing.assert_allclose(sample.velocities, v[0], atol=1e-9)
        mid = c._trajectory.sample(1.0).positions
        assert np.all(mid > Q0 + 0.1) and np.all(mid < Q0 + 0.5)


def test_a_blocked_arm_violates_the_path_tolerance_and_the_controller_holds_where_it_is():
    c, arm = controller(), Arm(block=Q0[1] + 0.1)
    tolerances, _ = goal_tolerances(c.defaults, JOINTS, [ToleranceRequest(n, position=0.05) for n in JOINTS], [], 0.0)
    c.command(command([1.0], [Q0 + 0.4]), goal="g", tolerances=tolerances)
    ended, _ = arm.run(c, 0.0, 1.0)
    assert [(e.code, e.succeeded) for e in ended] == [(PATH_TOLERANCE_VIOLATED, False)]
    assert c.is_holding
    held = arm.q.copy()
    arm.run(c, 2.0, 0.2)
    np.testing.assert_allclose(arm.q, held, atol=1e-12)


def test_goal_tolerance_waits_for_goal_time_then_aborts_or_waits_forever_without_one():
    for goal_time_s, expected in ((0.5, [GOAL_TOLERANCE_VIOLATED]), (0.0, [])):
        c, arm = controller(goal_time_s=goal_time_s), Arm(block=Q0[1] + 0.1)
        tolerances, _ = goal_tolerances(c.defaults, JOINTS, [], [ToleranceRequest(n, position=0.02) for n in JOINTS],
                                        0.0)
        c.command(command([1.0], [Q0 + 0.4]), goal="g", tolerances=tolerances)
        ended, t = arm.run(c, 0.0, 1.45)
        assert not ended  # within goal_time after the last point
        ended, _ = arm.run(c, t, 2.0)
        assert [e.code for e in ended] == expected
        if expected:
            assert "goal_time_tolerance exceeding by" in ended[0].message
        else:
            assert c.active_goal == "g"  # joint_trajectory_controller's goal_time 0: it waits indefinitely


def test_the_first_sample_checks_the_path_tolerance_even_for_a_single_point():
    c, arm = controller(trajectory=0.01), Arm()
    c.command(command([0.0], [Q0 + 0.03]), goal="g", tolerances=c.defaults)
    ended, _ = arm.run(c, 0.0, DT)
    assert [e.code for e in ended] == [PATH_TOLERANCE_VIOLATED]


def test_a_new_goal_preempts_the_active_one_and_cancel_holds_the_arm():
    c, arm = controller(), Arm()
    c.command(command([2.0], [Q0 + 0.5]), goal="first")
    ended, t = arm.run(c, 0.0, 0.5)
    c.command(command([2.0], [Q0 - 0.5]), goal="second")
    ended, t = arm.run(c, t, DT)
    assert [(e.goal, e.code) for e in ended] == [("first", INVALID_GOAL)]
    assert not c.cancel("first", arm.q)
    arm.run(c, t, 0.5)
    assert c.cancel("second", arm.q)
    held = arm.q.copy()
    ended, _ = arm.run(c, t + 1.0, 0.5)
    assert not ended and c.active_goal is None
    np.testing.assert_allclose(arm.q, held, atol=1e-12)


def test_a_stopped_velocity_is_part_of_the_goal():
    assert not StateTolerance(position=0.0, velocity=0.01).holds(0.0, 0.02)
    assert StateTolerance().holds(5.0, 5.0)  # zero: unchecked


# --- the hand on the simulated fingers -------------------------------------------------------------
def _run_hand(world: World, hand: FrankaHandEmulation, seconds: float) -> list:
    """Step the hand for ``seconds``; the goals that ended, each with ``at_s`` (when) set on the list."""
    ended, start_s = [], world.time_s
    for _ in range(int(seconds * PHYSICS_HZ)):
        states = world.client.getJointStates(world.robot_id, FINGER_JOINTS)
        finger, force, events = hand.update(world.time_s, sum(s[0] for s in states), sum(s[1] for s in states), DT)
        world.command_gripper(closed=hand.grasping, opening_m=finger, force_n=force)
        world.step()
        ended += [(world.time_s - start_s, e) for e in events]
    return ended


def _width(world: World) -> float:
    return float(sum(s[0] for s in world.client.getJointStates(world.robot_id, FINGER_JOINTS)))


@pytest.fixture(scope="module")
def world():
    with World() as w:
        yield w


def test_closing_on_nothing_reaches_the_goal_and_opening_moves(world):
    world.reset()
    hand = FrankaHandEmulation()
    hand.start("close", 0.0, 20.0, world.time_s, _width(world))
    assert hand.grasping
    ended = _run_hand(world, hand, 2.0)
    assert [(e.goal, e.reached_goal) for _, e in ended] == [("close", True)] and ended[0][1].width_m < 0.005
    hand.start("open", 0.04, 0.0, world.time_s, _width(world))
    assert not hand.grasping
    ended = _run_hand(world, hand, 2.0)
    assert [(e.goal, e.reached_goal) for _, e in ended] == [("open", True)]
    assert abs(ended[0][1].width_m - 0.08) < 0.002
    assert 0.8 < ended[0][0] < 1.2  # 0.08 m at franka_gripper's default 0.1 m/s, then the fingers settle


@pytest.mark.parametrize("position_m, reached", [(0.0, False), (0.02, True)])
def test_a_grasp_reaches_its_goal_only_if_the_object_is_within_the_epsilons(world, position_m, reached):
    """libfranka's grasp: closing on a 4 cm cube to 0 m fails (the fingers stop at 4 cm); to 4 cm it holds."""
    world.reset()
    cube = world.add_object("cube", "red", [0.5, 0.0])
    world.settle()
    world.move_ee(world.object_center(cube), yaw_rad=0.0)
    hand = FrankaHandEmulation()
    hand.start("grasp", position_m, 30.0, world.time_s, _width(world))
    ended = [e for _, e in _run_hand(world, hand, 2.0)]
    assert len(ended) == 1 and ended[0].reached_goal is reached
    assert abs(ended[0].width_m - 0.04) < 0.004  # on the cube either way
    assert hand.force_n == 30.0 and world.touches_gripper(cube)


def test_out_of_range_positions(world):
    hand = FrankaHandEmulation()
    assert hand.out_of_range(0.041) and hand.out_of_range(-0.001) and hand.out_of_range(float("nan"))
    assert not hand.out_of_range(0.04) and not hand.out_of_range(0.0)


# --- frames ------------------------------------------------------------------------------------------
def test_the_fixed_frames_are_franka_descriptions(world):
    world.reset()
    static = {(p, c): T for p, c, T in robot_transforms(world, FrankaNames(), static=True)}
    assert set(static) == {("base", "fr3_link0"), ("fr3_link7", "fr3_link8"), ("fr3_link8", "fr3_hand"),
                           ("fr3_hand", "fr3_hand_tcp")}
    np.testing.assert_allclose(static["fr3_link7", "fr3_link8"][:3, 3], [0, 0, 0.107], atol=1e-6)
    c, s = np.cos(-np.pi / 4), np.sin(-np.pi / 4)
    np.testing.assert_allclose(static["fr3_link8", "fr3_hand"][:3, :3], [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(static["fr3_hand", "fr3_hand_tcp"][:3, 3], [0, 0, 0.1034])


def test_the_moving_chain_composes_to_the_simulated_hand(world):
    world.reset()
    world.hold_arm(Q0 + np.array([0.3, 0.2, -0.1, 0.3, 0.2, -0.3, 0.5]))
    world.step(240)
    transforms = robot_transforms(world, FrankaNames(), static=False) + robot_transforms(world, FrankaNames(), True)
    parent_of = {c: (p, T) for p, c, T in transforms}
    T, frame = np.eye(4), "fr3_hand"
    while frame != "base":
        parent, T_parent_child = parent_of[frame]
        T, frame = T_parent_child @ T, parent
    hand = world.client.getLinkState(world.robot_id, 8, computeForwardKinematics=True)
    np.testing.assert_allclose((base_in_world() @ T)[:3, 3], hand[4], atol=1e-6)
    assert {"fr3_leftfinger", "fr3_rightfinger"} <= set(parent_of)
    assert sorted(c for c in parent_of if c.startswith("fr3_link")) == [f"fr3_link{i}" for i in range(9)]


def test_the_default_hand_eye_is_the_simulators_camera():
    camera = PinholeCamera.from_yaml(config_path("camera.yaml"))
    offset = dict((p.name, p.default) for p in FAKE_FRANKA.parameters)["color_offset_m"]
    T_link_color = camera_transforms("camera", offset)[0][2] @ optical_rotation()
    T_world_optical = base_in_world() @ xyz_quat_to_matrix(SIM_CAMERA_HAND_EYE) @ T_link_color
    np.testing.assert_allclose(T_world_optical, camera.T_world_cam, atol=2e-6)
    assert T_world_optical[2, 3] > TABLE_TOP_Z_M


def test_arm_joint_indices_match_the_names():
    assert len(ARM_JOINTS) == len(FrankaNames().arm_joints) and len(FINGER_JOINTS) == 2
