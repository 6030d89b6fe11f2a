"""molmomotion_ros.conversions.joints with hand-built messages: round trips, reordering and every refusal
a driver relies on (a trajectory is either fully usable or refused with a reason)."""

import numpy as np
import pytest
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from molmomotion_ros.conversions.errors import ConversionError
from molmomotion_ros.conversions.joints import (
    duration_msg,
    duration_to_s,
    joint_state_msg,
    msg_to_joint_positions,
    msg_to_trajectory,
    time_msg,
    time_to_s,
    timed_trajectory_to_msg,
    trajectory_msg,
)
from molmomotion_ros.planning.limits import JointLimits
from molmomotion_ros.planning.timing import time_parameterize

ARM = tuple(f"panda_joint{i}" for i in range(1, 8))
STAMP = Time(sec=3, nanosec=250_000_000)
LIMITS = JointLimits.from_yaml()
HOME_RAD = np.array([0.0, -0.5, 0.0, -2.3, 0.0, 1.8, 0.785])


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _trajectory(names, times_s, positions, velocities=None) -> JointTrajectory:
    msg = JointTrajectory(joint_names=list(names))
    for i, t in enumerate(times_s):
        point = JointTrajectoryPoint(positions=[float(v) for v in positions[i]], time_from_start=duration_msg(t))
        if velocities is not None:
            point.velocities = [float(v) for v in velocities[i]]
        msg.points.append(point)
    return msg


def test_time_and_duration_round_trip_to_the_nanosecond():
    for seconds in (0.0, 1e-9, 0.5, 1.999999999, 12345.678901234):
        assert abs(time_to_s(time_msg(seconds)) - seconds) < 1e-9
        assert abs(duration_to_s(duration_msg(seconds)) - seconds) < 1e-9
    assert duration_msg(1.5) == Duration(sec=1, nanosec=500_000_000)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ConversionError):
            time_msg(bad)
        with pytest.raises(ConversionError):
            duration_msg(bad)


def test_joint_state_round_trip_in_any_order(rng):
    names = ARM + ("panda_finger_joint1", "panda_finger_joint2")
    q, dq = rng.normal(size=9), rng.normal(size=9)
    msg = joint_state_msg(names, q, STAMP, velocities_rad_s=dq)
    assert msg.header.stamp == STAMP and list(msg.name) == list(names) and len(msg.effort) == 0
    order = list(reversed(ARM))
    positions, velocities = msg_to_joint_positions(msg, order)
    np.testing.assert_allclose(positions, q[6::-1])
    np.testing.assert_allclose(velocities, dq[6::-1])
    positions_only, none = msg_to_joint_positions(joint_state_msg(names, q, STAMP), ARM)
    np.testing.assert_allclose(positions_only, q[:7])
    assert none is None


def test_joint_state_refusals():
    with pytest.raises(ConversionError, match="8 values for 9 joints"):
        joint_state_msg(ARM + ("a", "b"), np.zeros(8), STAMP)
    with pytest.raises(ConversionError, match="lacks joints"):
        msg_to_joint_positions(joint_state_msg(ARM[:6], np.zeros(6), STAMP), ARM)
    with pytest.raises(ConversionError, match="more than once"):
        msg_to_joint_positions(JointState(name=["a", "a"], position=[0.0, 0.0]), ["a"])
    with pytest.raises(ConversionError, match="1 positions for 2 names"):
        msg_to_joint_positions(JointState(name=["a", "b"], position=[0.0]), ["a"])


def test_trajectory_round_trip_reorders_columns_to_the_callers_joint_order(rng):
    times = np.array([0.5, 1.0, 1.75])
    positions = HOME_RAD + rng.uniform(-0.2, 0.2, size=(3, 7))  # (N, 7) in ARM order
    velocities = rng.normal(size=(3, 7))
    shuffled = rng.permutation(7)
    msg = _trajectory([ARM[j] for j in shuffled], times, positions[:, shuffled], velocities[:, shuffled])
    arrays = msg_to_trajectory(msg, ARM, LIMITS.position_lower_rad, LIMITS.position_upper_rad)
    assert arrays.joint_names == ARM
    np.testing.assert_allclose(arrays.times_s, times, atol=1e-9)
    np.testing.assert_allclose(arrays.positions_rad, positions)
    np.testing.assert_allclose(arrays.velocities_rad_s, velocities)
    assert arrays.duration_s == pytest.approx(1.75)
    # arrays → message → arrays
    again = msg_to_trajectory(trajectory_msg(times, positions, ARM, STAMP), ARM)
    np.testing.assert_allclose(again.positions_rad, positions)
    assert again.velocities_rad_s is None


@pytest.mark.parametrize("case, match", [
    ("unknown", r"unknown joints \['elbow'\]"),
    ("missing", r"missing joints \['panda_joint7'\]"),
    ("duplicate", "more than once"),
    ("no_points", "no points"),
    ("short_point", "point 1 has 6 positions for 7 joints"),
    ("velocities", "point 0 has 3 velocities"),
    ("nan", "point 1 panda_joint3 position is nan"),
    ("inf_velocity", "velocities contain NaN"),
    ("time_not_increasing", "strictly increase"),
    ("time_repeated", "strictly increase"),
    ("below_limit", "panda_joint4 = -3.2000 rad is beyond its lower limit"),
    ("above_limit", "panda_joint6 = 3.9000 rad is beyond its upper limit"),
])
def test_trajectory_refusals_name_the_problem(case, match):
    names, times, positions = list(ARM), [0.5, 1.0], np.tile(HOME_RAD, (2, 1))
    velocities = None
    if case == "unknown":
        names[6] = "elbow"
    elif case == "missing":
        names, positions = names[:6], positions[:, :6]
    elif case == "duplicate":
        names[6] = names[0]
    elif case == "no_points":
        times, positions = [], positions[:0]
    elif case == "nan":
        positions[1, 2] = np.nan
    elif case == "inf_velocity":
        velocities = np.zeros((2, 7))
        velocities[0, 0] = np.inf
    elif case == "time_not_increasing":
        times = [1.0, 0.5]
    elif case == "time_repeated":
        times = [0.5, 0.5]
    elif case == "below_limit":
        positions[1, 3] = -3.2
    elif case == "above_limit":
        positions[0, 5] = 3.9
    msg = _trajectory(names, times, positions, velocities)
    if case == "short_point":
        msg.points[1].positions = msg.points[1].positions[:6]
    elif case == "velocities":
        msg.points[0].velocities = [0.0, 0.0, 0.0]
    with pytest.raises(ConversionError, match=match):
        msg_to_trajectory(msg, ARM, LIMITS.position_lower_rad, LIMITS.position_upper_rad)


def test_trajectory_msg_refuses_mismatched_shapes():
    with pytest.raises(ConversionError, match="do not match"):
        trajectory_msg([0.0, 1.0], np.zeros((3, 7)), ARM)
    with pytest.raises(ConversionError, match="velocities"):
        trajectory_msg([0.0, 1.0], np.zeros((2, 7)), ARM, velocities_rad_s=np.zeros((2, 6)))


def test_planner_timed_trajectory_becomes_a_controller_message(rng):
    goal = HOME_RAD + rng.uniform(-0.3, 0.3, 7)
    timed = time_parameterize(np.stack([HOME_RAD, goal]), LIMITS)
    msg = timed_trajectory_to_msg(timed, STAMP)
    assert tuple(msg.joint_names) == LIMITS.joint_names and msg.header.stamp == STAMP
    assert len(msg.points) == len(timed.times_s)
    last = msg.points[-1]
    assert duration_to_s(last.time_from_start) == pytest.approx(timed.duration_s, abs=1e-9)
    np.testing.assert_allclose(last.positions, timed.positions_rad[-1])
    np.testing.assert_allclose(last.velocities, timed.velocities_rad_s[-1])
    np.testing.assert_allclose(last.accelerations, timed.accelerations_rad_s2[-1])
    arrays = msg_to_trajectory(msg, ARM, LIMITS.position_lower_rad, LIMITS.position_upper_rad)
    np.testing.assert_allclose(arrays.positions_rad, timed.positions_rad)
    renamed = timed_trajectory_to_msg(timed, joint_names=[f"arm_{i}" for i in range(7)])
    assert renamed.joint_names[0] == "arm_0"
    with pytest.raises(ConversionError, match="6 joint names"):
        timed_trajectory_to_msg(timed, joint_names=ARM[:6])
