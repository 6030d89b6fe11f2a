"""Kinematics, collision checking and motion planning with the real OMPL and PyBullet."""

from pathlib import Path

import numpy as np
import pybullet
import pybullet_data
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from molmomotion_ros.planning.collision import (
    CollisionChecker,
    PointCloudChecker,
    PyBulletSceneChecker,
    joint_limit_reason,
)
from molmomotion_ros.planning.kinematics import (
    IKError,
    PandaKinematics,
    pose_error,
)
from molmomotion_ros.planning.limits import JointLimits
from molmomotion_ros.planning.planner import (
    DEFAULT_WORKSPACE,
    OMPL_PLANNERS,
    MotionPlanner,
    PlannerConfig,
    PlannerConfigError,
    PlannerUnavailableError,
    PlanStatus,
    WorkspaceBounds,
)
from molmomotion_ros.robot import (
    GRIPPER_OPEN_M,
    HOME_JOINTS_RAD,
    ROBOT_BASE_M,
    TABLE_TOP_Z_M,
    WORKSPACE_X_M,
    WORKSPACE_Y_M,
)
from molmomotion_sim import world as harness

ROOT = Path(__file__).resolve().parents[2]
LIMITS = JointLimits.from_yaml()
HOME = np.array(HOME_JOINTS_RAD)
# Two arm postures that differ only in the base joint; a box on the arc between them blocks the straight line.
Q_LEFT = np.array([0.6, 0.3, 0.0, -2.0, 0.0, 2.3, 0.785])
Q_RIGHT = np.array([-0.6, 0.3, 0.0, -2.0, 0.0, 2.3, 0.785])


@pytest.fixture(scope="module")
def kinematics():
    return PandaKinematics()


@pytest.fixture
def checker():
    checker = PyBulletSceneChecker()
    yield checker
    checker.close()


@pytest.fixture
def planner(kinematics, checker):
    return MotionPlanner(PlannerConfig(planning_time_s=0.5), checker=checker, kinematics=kinematics)


def top_down(position_m, yaw_rad=0.0) -> np.ndarray:
    """The grasp target at ``position_m`` pointing down (the harness's ``down_orientation``)."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    T = np.eye(4)
    T[:3, :3] = [[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]]
    T[:3, 3] = position_m
    return T


def assert_path_valid(checker, path, step_rad=0.005):
    for a, b in zip(path[:-1], path[1:], strict=True):
        n = max(1, int(np.ceil(np.max(np.abs(b - a)) / step_rad)))
        for i in range(n + 1):
            q = a + (b - a) * (i / n)
            assert checker.reason(q) is None, f"{checker.reason(q)} at {q}"


# --- kinematics -------------------------------------------------------------------------------
def test_the_planning_workspace_holds_the_cells():
    assert DEFAULT_WORKSPACE.x_m[0] <= WORKSPACE_X_M[0] and WORKSPACE_X_M[1] <= DEFAULT_WORKSPACE.x_m[1]
    assert DEFAULT_WORKSPACE.y_m[0] <= WORKSPACE_Y_M[0] and WORKSPACE_Y_M[1] <= DEFAULT_WORKSPACE.y_m[1]
    assert DEFAULT_WORKSPACE.z_m[0] == TABLE_TOP_Z_M


def test_fk_matches_pybullet(kinematics):
    client = pybullet.connect(pybullet.DIRECT)
    try:
        robot = pybullet.loadURDF(str(kinematics.urdf_path), ROBOT_BASE_M, useFixedBase=True,
                                  physicsClientId=client)
        rng = np.random.default_rng(3)
        for _ in range(5):
            q = kinematics.random_configuration(rng)
            for joint, value in enumerate(q):
                pybullet.resetJointState(robot, joint, value, physicsClientId=client)
            for joint in harness.FINGER_JOINTS:
                pybullet.resetJointState(robot, joint, GRIPPER_OPEN_M, physicsClientId=client)
            state = pybullet.getLinkState(robot, harness.EE_LINK, computeForwardKinematics=True,
                                          physicsClientId=client)
            T = kinematics.fk(q)
            np.testing.assert_allclose(T[:3, 3], state[4], atol=1e-6)
            R = np.asarray(pybullet.getMatrixFromQuaternion(state[5])).reshape(3, 3)
            np.testing.assert_allclose(T[:3, :3], R, atol=1e-6)
    finally:
        pybullet.disconnect(client)
    assert pybullet_data.getDataPath() in str(kinematics.urdf_path)


def test_ik_round_trip(kinematics):
    rng = np.random.default_rng(7)
    for _ in range(20):
        q = kinematics.random_configuration(rng)
        T = kinematics.fk(q)
        solution = kinematics.ik(T, seeds=[HOME])
        position_m, angle_rad = pose_error(kinematics.fk(solution), T)
        assert position_m <= 1e-3 and angle_rad <= np.radians(0.5)
        assert LIMITS.within_position_limits(solution)


def test_ik_prefers_the_solution_nearest_the_first_seed(kinematics):
    q = np.array([0.3, 0.2, -0.2, -2.0, 0.1, 2.1, 0.5])
    assert np.max(np.abs(kinematics.ik(kinematics.fk(q), seeds=[q + 0.05]) - q)) < 1e-2


def test_ik_refuses_an_unreachable_pose(kinematics):
    with pytest.raises(IKError, match="no IK solution within the joint limits"):
        kinematics.ik(top_down([2.0, 0.0, 0.8]), n_random_seeds=2)


# --- collision checking -----------------------------------------------------------------------
def test_home_is_valid_and_limits_are_reported(checker):
    assert isinstance(checker, CollisionChecker)
    assert checker.is_valid(HOME)
    outside = HOME.copy()
    outside[3] = 0.1  # joint 4 must stay below -0.0698
    assert "panda_joint4" in checker.reason(outside)
    assert "panda_joint4" in joint_limit_reason(outside, LIMITS)


def test_checker_finds_table_box_and_self_collisions(checker, kinematics):
    low = kinematics.ik(top_down([0.5, 0.0, TABLE_TOP_Z_M + 0.002]), seeds=[HOME])
    assert "collides with table" in checker.reason(low)
    box = checker.add_box(kinematics.fk(HOME)[:3, 3], [0.06, 0.06, 0.06], name="crate")  # wider than the open hand
    assert "collides with crate" in checker.reason(HOME)
    checker.remove(box)
    assert checker.is_valid(HOME)
    folded = np.array([0.0, 0.0, 0.0, -3.0, 0.0, 0.0, 0.0])  # wrist folded back onto the upper arm
    assert "self-collision" in checker.reason(folded)


def test_slack_relaxes_the_margins(checker, kinematics):
    """A box 3.5 mm from the hand is inside the 5 mm scene margin, but not inside 5 - 2 mm."""
    center = kinematics.fk(HOME)[:3, 3] + [0.15, 0.0, 0.0]
    box = checker.add_box(center, [0.05, 0.05, 0.05])
    contacts = checker.client.getClosestPoints(checker.robot_id, box, 1.0)
    nearest = min(contacts, key=lambda c: c[8])
    checker.remove(box)
    checker.add_box(center + np.asarray(nearest[7]) * (nearest[8] - 0.0035), [0.05, 0.05, 0.05])
    assert "distance 3.5 mm" in checker.reason(HOME)
    assert checker.reason(HOME, slack_m=0.002) is None


def test_checker_mirrors_a_harness_world(kinematics):
    with harness.World() as world:
        cube = world.add_object("cube", "red", (0.5, 0.1))
        bowl = world.add_object("bowl", "blue", (0.45, -0.15), yaw_rad=0.4)
        checker = PyBulletSceneChecker(world)
        try:
            for source in (cube.body_id, bowl.body_id):
                [(_, body)] = checker._mirrored[source]
                src_box, copy_box = np.array(world.client.getAABB(source)), np.array(checker.client.getAABB(body))
                np.testing.assert_allclose(src_box.mean(0), copy_box.mean(0), atol=1e-3)
            assert checker.is_valid(HOME)
            # Float the cube into the palm at home: after a sync the home posture collides with it.
            palm = kinematics.fk(HOME)[:3, 3] + [0.0, 0.0, 0.07]
            world.client.resetBasePositionAndOrientation(cube.body_id, palm, [0, 0, 0, 1])
            checker.sync_from_world(world)
            assert "red cube" in checker.reason(HOME)
            checker.sync_from_world(world, ignore_bodies=[cube.body_id])  # e.g. the object being grasped
            assert checker.is_valid(HOME)
            world.remove_object(bowl)
            checker.sync_from_world(world)
            assert bowl.body_id not in checker._mirrored and "red cube" in checker.reason(HOME)
        finally:
            checker.close()


def test_a_carried_object_is_checked(checker, kinematics):
    q = kinematics.ik(top_down([0.5, 0.0, TABLE_TOP_Z_M + 0.06]), seeds=[HOME])
    assert checker.is_valid(q)
    T_ee_object = np.eye(4)
    T_ee_object[2, 3] = 0.04  # a 6 cm box held 4 cm beyond the grasp target (z points down, out of the hand)
    checker.attach([0.03, 0.03, 0.03], T_ee_object)
    assert "carried object collides with table" in checker.reason(q)
    checker.detach()
    assert checker.is_valid(q)


def box_cloud(center, half, n=3000, seed=0):
    """Points on the surface of a box (world frame), as a depth camera would see them (all faces)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 1, (n, 3))
    face = rng.integers(0, 3, n)
    points[np.arange(n), face] = np.sign(points[np.arange(n), face])
    return np.asarray(center) + points * half


def test_point_cloud_checker(kinematics):
    checker = PointCloudChecker(kinematics)
    try:
        assert isinstance(checker, CollisionChecker)
        assert checker.is_valid(HOME)
        assert "table plane" in checker.reason(kinematics.ik(top_down([0.5, 0.0, TABLE_TOP_Z_M]), seeds=[HOME]))
        palm = kinematics.fk(HOME)[:3, 3] + [0.0, 0.0, 0.07]
        points = box_cloud(palm, [0.04, 0.04, 0.04])
        assert checker.set_points(points) > 0
        assert "point cloud" in checker.reason(HOME)
        T_world_cam = np.eye(4)
        T_world_cam[:3, 3] = [0.5, 0.0, 1.5]
        T_world_cam[:3, :3] = np.diag([1.0, -1.0, -1.0])  # looking down
        points_cam = (points - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]
        checker.set_points(points_cam, T_world_cam)
        assert "point cloud" in checker.reason(HOME)
        checker.set_points(points, q_robot=HOME)  # the camera sees the hand itself: those points are dropped
        assert checker.is_valid(HOME)
        assert "panda_joint4" in checker.reason(np.array([0, 0, 0, 0.1, 0, 1.8, 0.785]))  # limits still apply
    finally:
        checker.self_checker.close()


def test_plans_around_a_perceived_obstacle(kinematics):
    checker = PointCloudChecker(kinematics)
    try:
        blocking = kinematics.fk(np.array([0.0, 0.3, 0.0, -2.0, 0.0, 2.3, 0.785]))[:3, 3]
        checker.set_points(box_cloud([blocking[0], 0.0, TABLE_TOP_Z_M + 0.2], [0.03, 0.03, 0.2]))
        # RRTConnect stops at its first path; the budget matters only on a loaded machine (1 s once failed there)
        planner = MotionPlanner(PlannerConfig(planning_time_s=5.0), checker=checker, kinematics=kinematics)
        assert checker.is_valid(Q_LEFT) and checker.is_valid(Q_RIGHT)
        assert not planner.segment_valid(Q_LEFT, Q_RIGHT)
        result = planner.plan_to_joints(Q_LEFT, Q_RIGHT)
        assert result.success, result.reason
        assert_path_valid(checker, result.path_rad, step_rad=0.01)
    finally:
        checker.self_checker.close()


# --- planning ---------------------------------------------------------------------------------
def test_plans_around_an_obstacle(planner, checker, kinematics):
    blocking = kinematics.fk(np.array([0.0, 0.3, 0.0, -2.0, 0.0, 2.3, 0.785]))[:3, 3]
    checker.add_box([blocking[0], 0.0, TABLE_TOP_Z_M + 0.2], [0.05, 0.05, 0.2], name="post")
    assert checker.is_valid(Q_LEFT) and checker.is_valid(Q_RIGHT)
    assert not planner.segment_valid(Q_LEFT, Q_RIGHT)
    result = planner.plan_to_joints(Q_LEFT, Q_RIGHT)
    assert result.success, result.reason
    assert not result.straight_line and len(result.path_rad) >= 3
    np.testing.assert_array_equal(result.path_rad[[0, -1]], [Q_LEFT, Q_RIGHT])
    assert_path_valid(checker, result.path_rad)
    trajectory = result.trajectory
    assert trajectory.violations(planner.limits) == []
    np.testing.assert_allclose(trajectory.positions_rad[[0, -1]], [Q_LEFT, Q_RIGHT], atol=1e-9)
    assert all(checker.is_valid(q) for q in trajectory.positions_rad)


def test_a_free_joint_goal_takes_the_straight_line(planner):
    result = planner.plan_to_joints(HOME, Q_LEFT)
    assert result.success and result.straight_line and len(result.path_rad) == 2


def test_pose_goal_is_reached(planner, kinematics):
    goal = top_down([0.55, -0.12, 0.75], yaw_rad=0.6)
    result = planner.plan_to_pose(HOME, goal)
    assert result.success, result.reason
    for q in (result.path_rad[-1], result.trajectory.positions_rad[-1], result.goal_rad):
        position_m, angle_rad = pose_error(kinematics.fk(q), goal)
        assert position_m <= 0.005 and angle_rad <= np.radians(2.0)


def test_unreachable_and_out_of_bounds_goals_are_refused(planner, checker, kinematics):
    far = planner.plan_to_pose(HOME, top_down([2.0, 0.0, 0.8]))
    assert far.status is PlanStatus.GOAL_OUTSIDE_WORKSPACE and "outside the workspace bounds" in far.reason
    assert not far.success and far.trajectory is None and far.path_rad.shape == (0, 7)
    wide = MotionPlanner(PlannerConfig(workspace=WorkspaceBounds((-3, 3), (-3, 3), (0, 3)), ik_random_seeds=2),
                         checker=checker, kinematics=kinematics)
    result = wide.plan_to_pose(HOME, top_down([2.0, 0.0, 0.8]))
    assert result.status is PlanStatus.GOAL_UNREACHABLE and "unreachable" in result.reason
    corner = planner.plan_to_pose(HOME, top_down([0.82, 0.38, 1.2]))  # in the box, beyond the arm's reach
    assert corner.status is PlanStatus.GOAL_UNREACHABLE
    beyond = HOME.copy()
    beyond[0] = 3.0
    result = planner.plan_to_joints(HOME, beyond)
    assert result.status is PlanStatus.GOAL_OUTSIDE_LIMITS and "panda_joint1" in result.reason


def test_goals_in_collision_and_invalid_starts_are_refused(planner, checker, kinematics):
    checker.add_box([0.5, -0.1, 0.7], [0.04, 0.04, 0.04], name="obstacle")
    result = planner.plan_to_pose(HOME, top_down([0.5, -0.1, 0.7]))
    assert result.status is PlanStatus.GOAL_IN_COLLISION and "obstacle" in result.reason
    q_inside = kinematics.ik(top_down([0.5, -0.1, 0.7]), seeds=[HOME])
    result = planner.plan_to_joints(HOME, q_inside)
    assert result.status is PlanStatus.GOAL_IN_COLLISION and "obstacle" in result.reason
    result = planner.plan_to_joints(q_inside, HOME)
    assert result.status is PlanStatus.INVALID_START and "start state is invalid" in result.reason


class JointWallChecker:
    """A configuration space cut in two by a wall at joint 1 = 0: no path crosses it."""

    def reason(self, q7, slack_m=0.0):
        return "the wall" if abs(q7[0]) < 0.1 else joint_limit_reason(q7, LIMITS)

    def is_valid(self, q7):
        return self.reason(q7) is None


def test_no_path_is_reported_after_the_time_budget(kinematics):
    planner = MotionPlanner(PlannerConfig(planning_time_s=0.1), checker=JointWallChecker(), kinematics=kinematics)
    result = planner.plan_to_joints(Q_RIGHT, Q_LEFT)
    assert result.status is PlanStatus.NO_PATH and "no collision-free path within 0.10 s" in result.reason
    assert 0.1 <= result.planning_time_s < 1.0


@pytest.mark.parametrize("planner_id", OMPL_PLANNERS)
def test_every_configured_ompl_planner_solves(planner_id, checker, kinematics):
    planner = MotionPlanner(PlannerConfig(planner_id=planner_id), checker=checker, kinematics=kinematics)
    # RRT* spends all of its budget rewiring (the others stop at the first path); with OMPL's unseeded sampling a
    # fresh-clone run once found no path within 1 s, so it gets 3 s.
    path = planner.backend.solve(HOME, [Q_LEFT], 3.0 if planner_id == "RRTstar" else 1.0)
    assert path is not None
    np.testing.assert_allclose(path[[0, -1]], [HOME, Q_LEFT], atol=1e-9)
    assert_path_valid(checker, path, step_rad=0.01)


def test_velocity_scaling_slows_the_trajectory(planner):
    fast = planner.plan_to_joints(HOME, Q_LEFT, velocity_scaling=1.0)
    slow = planner.plan_to_joints(HOME, Q_LEFT, velocity_scaling=0.25)
    assert slow.trajectory.duration_s > 2 * fast.trajectory.duration_s
    assert slow.trajectory.violations(LIMITS.scaled(0.25)) == []


def test_acceleration_scaling_limits_acceleration_and_jerk_apart_from_velocity(planner):
    as_velocity = planner.plan_to_joints(HOME, Q_LEFT, velocity_scaling=0.5)
    gentle = planner.plan_to_joints(HOME, Q_LEFT, velocity_scaling=0.5, acceleration_scaling=0.1)
    assert gentle.trajectory.duration_s > 1.3 * as_velocity.trajectory.duration_s
    assert gentle.trajectory.violations(LIMITS.scaled(0.5, 0.1)) == []
    assert as_velocity.trajectory.violations(LIMITS.scaled(0.5, 0.1)) != []  # it used the larger limits
    peak = np.max(np.abs(gentle.trajectory.accelerations_rad_s2) / LIMITS.acceleration_rad_s2)
    assert 0.05 < peak <= 0.1 + 1e-6


def reachable_goal(kinematics, checker, rng) -> np.ndarray:
    """A grasp-target pose inside the workspace, 2 cm or more above the table, of a valid configuration."""
    while True:
        q = kinematics.random_configuration(rng)
        T = kinematics.fk(q)
        if (DEFAULT_WORKSPACE.contains(T[:3, 3]) and T[2, 3] > TABLE_TOP_Z_M + 0.02
                and checker.is_valid(q)):
            return T


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_reachable_goals_give_trajectories_within_the_limits(seed, kinematics):
    checker = PyBulletSceneChecker()
    try:
        planner = MotionPlanner(PlannerConfig(planning_time_s=0.5), checker=checker, kinematics=kinematics)
        goal = reachable_goal(kinematics, checker, np.random.default_rng(seed))
        result = planner.plan_to_pose(HOME, goal)
        assert result.success, result.reason
        assert result.trajectory.violations(planner.limits) == []
        position_m, angle_rad = pose_error(kinematics.fk(result.trajectory.positions_rad[-1]), goal)
        assert position_m <= 0.005 and angle_rad <= np.radians(2.0)
    finally:
        checker.close()


# --- configuration and backends ---------------------------------------------------------------
def test_the_shipped_config_is_the_default():
    assert PlannerConfig.from_yaml() == PlannerConfig()
    assert PlannerConfig.from_yaml(planning_time_s=0.2).planning_time_s == 0.2


@pytest.mark.parametrize("fields", [{"backend": "chomp"}, {"planner_id": "RRT*"}, {"planning_time_s": 0.0},
                                    {"velocity_scaling": 1.5}, {"ik_max_solutions": 0}])
def test_bad_configs_are_refused(fields):
    with pytest.raises(PlannerConfigError):
        PlannerConfig(**fields)
    with pytest.raises(PlannerConfigError, match="low < high"):
        WorkspaceBounds((1.0, 0.0), (0, 1), (0, 1))


def test_moveit_py_backend_says_what_to_install_and_what_to_pass(checker, kinematics, tmp_path):
    with pytest.raises(PlannerUnavailableError) as absent:
        MotionPlanner(PlannerConfig(backend="moveit_py"), checker=checker, kinematics=kinematics)
    message = str(absent.value)
    assert "\n" not in message  # one line, for a log and manipulation/status
    assert "apt install ros-$ROS_DISTRO-moveit-py" in message and "ros-jazzy-moveit-py" in message
    assert "moveit_config:=" in message and "planner_backend:=ompl" in message
    config = tmp_path / "moveit_py.yaml"
    config.write_text("moveit_cpp: {}\n")
    with pytest.raises(PlannerUnavailableError) as no_bindings:
        MotionPlanner(PlannerConfig(backend="moveit_py", moveit_config=str(config)), checker=checker,
                      kinematics=kinematics)
    assert "ros-jazzy-moveit-py" in str(no_bindings.value) and "moveit_config:=" not in str(no_bindings.value)
    with pytest.raises(PlannerUnavailableError, match="no_such.yaml does not exist"):
        MotionPlanner(PlannerConfig(backend="moveit_py", moveit_config=str(tmp_path / "no_such.yaml")),
                      checker=checker, kinematics=kinematics)


def test_planner_yaml_names_the_moveit_config(tmp_path):
    text = (ROOT / "config" / "planner.yaml").read_text().replace('config: ""', "config: /etc/moveit_py.yaml")
    (tmp_path / "planner.yaml").write_text(text)
    assert PlannerConfig.from_yaml(tmp_path / "planner.yaml").moveit_config == "/etc/moveit_py.yaml"


def test_a_workspace_box_in_the_robot_base_frame_is_moved_to_the_planners_world(planner, kinematics):
    box = WorkspaceBounds.from_base_box([0.2, 0.6, -0.3, 0.3, 0.0, 0.5], ROBOT_BASE_M)
    assert box.z_m == pytest.approx((ROBOT_BASE_M[2], ROBOT_BASE_M[2] + 0.5))
    assert box.contains(np.array(ROBOT_BASE_M) + [0.5, 0.0, 0.1]) and not box.contains([0.5, 0.0, 0.1])
    narrow = planner.with_config(workspace=box)
    outside = narrow.plan_to_pose(HOME, top_down(np.array(ROBOT_BASE_M) + [0.7, 0.0, 0.2]))
    assert outside.status is PlanStatus.GOAL_OUTSIDE_WORKSPACE
    # Stated as the user gave it: the base frame.
    assert "(0.700, 0.000, 0.200) m" in outside.reason and "z [0.00, 0.50] m in the robot base frame" in outside.reason
    inside = narrow.plan_to_pose(HOME, top_down(np.array(ROBOT_BASE_M) + [0.5, 0.0, 0.2]))
    assert inside.success, inside.reason
    with pytest.raises(PlannerConfigError, match="6 finite numbers"):
        WorkspaceBounds.from_base_box([0.2, 0.6], ROBOT_BASE_M)
    with pytest.raises(PlannerConfigError, match="low < high"):
        WorkspaceBounds.from_base_box([0.6, 0.2, -0.3, 0.3, 0.0, 0.5], ROBOT_BASE_M)
