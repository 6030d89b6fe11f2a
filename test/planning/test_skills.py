"""From forecasts to motions: skills derived from tracks, Cartesian paths, the manipulator core."""

import numpy as np
import pytest

from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.geometry import object_motion_from_tracks
from molmomotion_ros.paths import config_path
from molmomotion_ros.planning.collision import PointCloudChecker
from molmomotion_ros.planning.kinematics import PandaKinematics, pose_error
from molmomotion_ros.planning.manipulator import ForecastManipulator, consensus_tracks, target_region
from molmomotion_ros.planning.planner import MotionPlanner, PlannerConfig, WorkspaceBounds
from molmomotion_ros.planning.skills import (
    MotionStep,
    SkillError,
    SkillPlanner,
    down_pose,
    perceive_target,
    sequence_samples,
    skill_from_forecast,
    wrap_half_turn,
    yaw_of,
)
from molmomotion_ros.planning.timing import TimedTrajectory
from molmomotion_ros.robot import HOME_JOINTS_RAD

TABLE_Z = 0.626
HOME = np.array(HOME_JOINTS_RAD)


@pytest.fixture(scope="module")
def kinematics():
    return PandaKinematics()


def box_surface(center, half, yaw, rng, n=400):
    """Points on the top and one side of a box on the table (what an oblique camera sees)."""
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s], [s, c]])
    top = np.c_[(rng.uniform(-1, 1, (n, 2)) * half[:2]) @ R.T + center[:2], np.full(n, center[2] + half[2])]
    side_local = np.c_[rng.uniform(-1, 1, n // 2) * half[0], np.full(n // 2, -half[1])]
    side = np.c_[side_local @ R.T + center[:2], rng.uniform(center[2] - half[2], center[2] + half[2], n // 2)]
    return np.r_[top, side]


def rigid_tracks(points_t0, displacement, lift_m, steps=32, d_yaw=0.0):
    """Tracks (P, F, 3) of a rigid carry: lift, move, lower, with a yaw turn about the centroid."""
    s = np.linspace(0, 1, steps)
    centroid = points_t0.mean(0)
    out = []
    for f in s:
        a = d_yaw * f
        R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        offset = np.array([*(displacement[:2] * f), displacement[2] * f + lift_m * np.sin(np.pi * f)])
        out.append((points_t0 - centroid) @ R.T + centroid + offset)
    return np.stack(out, 1)


def test_perceive_target_finds_the_top_face_and_axes():
    rng = np.random.default_rng(0)
    pts = box_surface(np.array([0.5, 0.1, TABLE_Z + 0.02]), np.array([0.04, 0.015, 0.02]), 0.3, rng)
    target = perceive_target(pts, TABLE_Z)
    assert np.allclose(target.top_center_m[:2], [0.5, 0.1], atol=0.005)
    assert abs(target.top_z_m - (TABLE_Z + 0.04)) < 0.003
    assert abs(abs(target.major_axis @ [np.cos(0.3), np.sin(0.3)]) - 1) < 0.01
    assert np.allclose(target.half_extents_m, [0.04, 0.015], atol=0.004)
    with pytest.raises(SkillError):
        perceive_target(np.array([[0.5, 0.0, TABLE_Z]]), TABLE_Z)


def test_a_lifted_forecast_becomes_a_pick_and_place_that_carries_the_grasp_rigidly():
    rng = np.random.default_rng(1)
    pts = box_surface(np.array([0.45, -0.1, TABLE_Z + 0.02]), np.array([0.03, 0.015, 0.02]), 0.0, rng)
    target = perceive_target(pts, TABLE_Z)
    points_t0 = pts[rng.choice(len(pts), 8, replace=False)]
    tracks = rigid_tracks(points_t0, np.array([0.1, 0.2, 0.0]), lift_m=0.12, d_yaw=0.4)
    motions, residuals = object_motion_from_tracks(points_t0, tracks)
    assert residuals.max() < 1e-9
    skill = skill_from_forecast(target, points_t0, tracks, motions, TABLE_Z)
    assert skill.kind == "pick_place"
    # Fingers close across the short side (local y here): yaw 0 closes along -y.
    assert abs(wrap_half_turn(yaw_of(skill.grasp_pose))) < 0.05
    moved = skill.place_pose[:3, 3] - skill.grasp_pose[:3, 3]
    # The grasp point goes where the rigid motion takes it: its displacement plus the yaw turn about
    # the centroid, and the release clearance above.
    centroid = points_t0.mean(0)
    a = 0.4
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    expected_xy = R @ (skill.grasp_pose[:2, 3] - centroid[:2]) + centroid[:2] + [0.1, 0.2]
    assert np.allclose(skill.place_pose[:2, 3], expected_xy, atol=1e-6)
    assert abs(moved[2] - 0.012) < 1e-6
    assert abs(wrap_half_turn(yaw_of(skill.place_pose) - yaw_of(skill.grasp_pose) - 0.4)) < 1e-6


def test_a_sliding_forecast_becomes_a_push_from_behind_and_no_motion_is_refused():
    rng = np.random.default_rng(2)
    pts = box_surface(np.array([0.5, 0.0, TABLE_Z + 0.02]), np.array([0.02, 0.02, 0.02]), 0.0, rng)
    target = perceive_target(pts, TABLE_Z)
    points_t0 = pts[:8]
    tracks = rigid_tracks(points_t0, np.array([0.0, 0.1, 0.0]), lift_m=0.0)
    skill = skill_from_forecast(target, points_t0, tracks, object_motion_from_tracks(points_t0, tracks)[0], TABLE_Z)
    assert skill.kind == "push"
    assert skill.push_start_m[1] < 0.0 - 0.02 and abs(skill.push_start_m[0] - 0.5) < 0.01
    assert skill.push_end_m[1] > skill.push_start_m[1] + 0.1
    still = np.repeat(points_t0[:, None], 32, 1)
    with pytest.raises(SkillError, match="nothing to do"):
        skill_from_forecast(target, points_t0, still, object_motion_from_tracks(points_t0, still)[0], TABLE_Z)


def test_consensus_averages_inliers_and_drops_a_stray_hypothesis():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(8, 32, 3)) * 0.01
    hyps = np.stack([base + rng.normal(scale=0.005, size=3) for _ in range(7)] + [base + [0.3, 0, 0]])
    mean = consensus_tracks(hyps)
    assert np.abs(mean - base).max() < 0.01
    assert consensus_tracks(hyps[:1]) is not None and np.allclose(consensus_tracks(hyps[0]), hyps[0])


def test_cartesian_path_reaches_each_waypoint_and_reports_the_fraction(kinematics):
    checker = PointCloudChecker(kinematics)
    planner = MotionPlanner(checker=checker, kinematics=kinematics)
    start_pose = kinematics.fk(HOME)
    goal = down_pose([0.5, 0.1, TABLE_Z + 0.15], 0.3)
    result = planner.plan_cartesian(HOME, goal[None])
    assert result.success and result.fraction == 1.0
    dp, dr = pose_error(kinematics.fk(result.plan.trajectory.positions_rad[-1]), goal)
    assert dp < 0.005 and dr < np.radians(2)
    # The end effector stays near the straight line between the poses.
    mid = kinematics.fk(result.plan.path_rad[len(result.plan.path_rad) // 2])[:3, 3]
    a, b = start_pose[:3, 3], goal[:3, 3]
    off_line = np.linalg.norm(np.cross(b - a, mid - a)) / np.linalg.norm(b - a)
    assert off_line < 0.01
    assert not result.plan.trajectory.violations(planner.limits)
    # A wall of points across the line stops it part-way, with the fraction reported.
    start = planner.plan_cartesian(HOME, down_pose([0.5, -0.1, TABLE_Z + 0.15], 0.0)[None]).plan.path_rad[-1]
    wall = np.array([[x, 0.2, z] for x in np.linspace(0.3, 0.7, 40) for z in np.linspace(0.64, 0.9, 30)])
    checker.set_points(np.r_[wall, wall + [0, 0.005, 0]])
    blocked = planner.plan_cartesian(start, down_pose([0.5, 0.3, TABLE_Z + 0.15], 0.0)[None])
    assert not blocked.success and 0.0 < blocked.fraction < 1.0
    assert "collision" in blocked.plan.reason


def test_skill_plan_steps_are_timed_and_within_limits(kinematics):
    checker = PointCloudChecker(kinematics)
    planner = MotionPlanner(checker=checker, kinematics=kinematics)
    rng = np.random.default_rng(4)
    pts = box_surface(np.array([0.5, -0.1, TABLE_Z + 0.02]), np.array([0.02, 0.02, 0.02]), 0.2, rng)
    target = perceive_target(pts, TABLE_Z)
    points_t0 = pts[:8]
    tracks = rigid_tracks(points_t0, np.array([0.0, 0.2, 0.0]), lift_m=0.12)
    skill = skill_from_forecast(target, points_t0, tracks, object_motion_from_tracks(points_t0, tracks)[0], TABLE_Z)
    checker.set_points(pts)  # the target itself may be touched by the fingers and hand only
    plan = SkillPlanner(planner).plan(HOME, skill)
    labels = [s.label for s in plan.steps]
    assert labels[:4] == ["open gripper", "approach", "descend", "close gripper"] and labels[-1] == "home"
    assert "release" in labels
    for step in plan.steps:
        if step.trajectory is not None:
            assert not step.trajectory.violations(planner.limits), step.label
    grasp_q = next(s for s in plan.steps if s.label == "descend").trajectory.positions_rad[-1]
    dp, dr = pose_error(kinematics.fk(grasp_q), skill.grasp_pose)
    assert dp < 0.005 and dr < np.radians(2)


def test_target_region_grows_from_the_forecast_points_in_a_rendered_frame():
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    world = World()
    try:
        task = TASKS["place-in-container"](world)
        task.reset(110003)
        obs = world.render(world.camera)
        cam = obs.camera
        xyz = cam.depth_to_points_cam(obs.depth_m) @ cam.T_world_cam[:3, :3].T + cam.T_world_cam[:3, 3]
        truth = obs.segmentation == task.target.body_id
        points = xyz[truth][:: max(1, truth.sum() // 8)][:8]
        region = target_region(xyz, cam, points, TABLE_Z)
        assert (region & truth).sum() / truth.sum() > 0.8
        assert (region & ~truth).sum() <= 0.1 * truth.sum()
        manipulator = ForecastManipulator()
        tracks = rigid_tracks(points, np.r_[task.goal_center_m[:2] - points.mean(0)[:2], 0.0], lift_m=0.12)
        planned = manipulator.plan(obs.depth_m, cam, obs.joint_positions_rad[:7], points, tracks[None])
        assert planned.skill.kind == "pick_place" and planned.plan.steps
    finally:
        world.close()


def test_camera_config_is_the_one_the_harness_uses():
    assert PinholeCamera.from_yaml(config_path("camera.yaml")).width == 160


def test_sequence_samples_lay_the_steps_end_to_end_with_gripper_holds():
    def line(q_from, q_to, duration_s):
        t = np.linspace(0.0, duration_s, int(round(duration_s / 0.01)) + 1)
        q = q_from + (t / duration_s)[:, None] * (q_to - q_from)
        return TimedTrajectory(tuple(f"j{i}" for i in range(7)), t, q, np.zeros_like(q), np.zeros_like(q))

    q0 = np.zeros(7)
    q1, q2 = q0 + 0.1, q0 + 0.3
    steps = [MotionStep("approach", line(q0, q1, 1.0)), MotionStep("close gripper", gripper_opening_m=0.0),
             MotionStep("lift", line(q1, q2, 0.5))]
    samples = sequence_samples(steps, q0, gripper_settle_s=0.4)
    assert np.all(np.diff(samples.times_s) > 0) and samples.times_s[0] == 0.0
    assert samples.times_s[-1] == pytest.approx(1.0 + 0.4 + 0.5)
    np.testing.assert_allclose(samples.positions_rad[[0, -1]], [q0, q2])
    held = (samples.times_s >= 1.0 - 1e-9) & (samples.times_s <= 1.4 + 1e-9)
    np.testing.assert_allclose(samples.positions_rad[held], np.tile(q1, (held.sum(), 1)))  # the arm waits
    assert samples.gripper_events == [(pytest.approx(1.0), "close gripper", 0.0)]
    assert 0.04 < np.max(np.diff(samples.times_s)) <= 0.4 + 1e-9  # about every 50 ms, the hold excepted


def test_a_skill_outside_the_workspace_box_fails_with_the_reason_and_acceleration_scaling_times_it(kinematics):
    checker = PointCloudChecker(kinematics)
    rng = np.random.default_rng(4)
    pts = box_surface(np.array([0.5, -0.1, TABLE_Z + 0.02]), np.array([0.02, 0.02, 0.02]), 0.2, rng)
    target = perceive_target(pts, TABLE_Z)
    points_t0 = pts[:8]
    tracks = rigid_tracks(points_t0, np.array([0.0, 0.2, 0.0]), lift_m=0.12)
    skill = skill_from_forecast(target, points_t0, tracks, object_motion_from_tracks(points_t0, tracks)[0], TABLE_Z)
    checker.set_points(pts)
    # The grasp (x 0.5 in the world, on the base's x) lies beyond a box that ends 0.4 m in front of the base.
    box = WorkspaceBounds.from_base_box([0.0, 0.4, -0.5, 0.5, 0.0, 0.8], kinematics.base_pose[:3, 3])
    narrow = MotionPlanner(PlannerConfig(workspace=box), checker=checker, kinematics=kinematics)
    with pytest.raises(SkillError, match="outside the workspace bounds .*robot base frame"):
        SkillPlanner(narrow).plan(HOME, skill)
    planner = MotionPlanner(checker=checker, kinematics=kinematics)
    brisk = SkillPlanner(planner, acceleration_scaling=0.0).plan(HOME, skill)
    gentle_planner = SkillPlanner(planner, acceleration_scaling=0.05)
    gentle = gentle_planner.plan(HOME, skill)
    home = [s.trajectory for s in (brisk.steps[-1], gentle.steps[-1])]
    assert home[1].duration_s > home[0].duration_s * 1.2
    limits = planner.limits.scaled(gentle_planner.free_scaling, 0.05)
    assert home[1].violations(limits) == [] and home[0].violations(limits) != []
