"""The arm nodes' action interface (``arm_interface: action``) against fake_franka, across processes with real
rclpy: FollowJointTrajectory goals with fr3 joint names move the arm and are waited to their result, the
controller's rejection and abort come back as the reason, ~/stop cancels the running goal and nothing follows
until a new request, GripperCommand closes and opens the hand, and the finger joints come from franka_gripper's
own topic when the arm's joint_states lacks them.

ArmCommands and ArmObservations are driven from a small managed test node in this process (the arm nodes'
parameters, the same factory); the arm nodes' own wiring (configure waits for the servers, fails naming a
missing one) is checked on a manipulation_node process, its steps-to-status path on an in-process manipulation_node
(planner and camera stubbed), and policy_node's chunk-as-one-goal on its _RosRobot. One fake_franka process serves
the module.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from action_msgs.msg import GoalStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rosutil import ROOT, call_service, ros_domain, start_node, stop, wait_until
from std_srvs.srv import Trigger

from molmomotion_ros.conversions.joints import trajectory_msg
from molmomotion_ros.node_specs.manipulation import ARM_PARAMETERS
from molmomotion_ros.node_specs.spec import AUTOSTART, NodeSpec
from molmomotion_ros.nodes.arm_interface import (
    ActionArmCommands,
    ArmFailure,
    ArmObservations,
    Stopped,
    gripper_outcome,
    make_arm_commands,
)
from molmomotion_ros.nodes.lifecycle import FAILURE, SUCCESS, ManagedNode

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
FINGERS = ["fr3_finger_joint1", "fr3_finger_joint2"]
HOME = np.array([0.0, -0.5, 0.0, -2.3, 0.0, 1.8, 0.785])
INTO_THE_TABLE = np.array([0.0, 1.0, 0.0, -1.6, 0.0, 2.6, 0.785])  # the hand meets the table top on the way
FRANKA = {"arm_interface": "action", "arm_action": "/fr3_arm_controller/follow_joint_trajectory",
          "gripper_action": "/franka_gripper/gripper_action", "arm_joint_names": ARM, "finger_joint_names": FINGERS,
          "gripper_joint_states": "/franka_gripper/joint_states"}


def _spec(name: str = "arm_action_test") -> NodeSpec:
    return NodeSpec(name=name, executable="-", module=__name__, params_file="-",
                    parameters=(*ARM_PARAMETERS, AUTOSTART), managed=True)


class ArmTestNode(ManagedNode):
    """The arm side of manipulation_node/policy_node, without the planner or the policy."""

    def __init__(self, context, name: str = "arm_action_test", **params):
        overrides = [Parameter(k, value=v) for k, v in {**FRANKA, "autostart": False, **params}.items()]
        # franka_ros2's arm joint_states (no fingers) stands in for joint_states.
        super().__init__(_spec(name), context=context, parameter_overrides=overrides,
                         cli_args=["--ros-args", "-r", "joint_states:=/franka/joint_states"])
        self.arm = self.observed = None

    def configure(self) -> None:
        self.arm = make_arm_commands(self, self._params)

    def activate(self) -> None:
        p = self._params
        self.observed = ArmObservations(self, 1.0, lambda *a: None, arm_joint_names=p["arm_joint_names"],
                                        finger_joint_names=p["finger_joint_names"],
                                        gripper_joint_states=p["gripper_joint_states"],
                                        finger_fallback=lambda: self.arm.finger_opening_m)
        self.while_active(self.arm.stop_service())

    def deactivate(self) -> None:
        self.arm.stop("stopped: the node was deactivated")

    def cleanup(self) -> None:
        if self.arm is not None:
            self.arm.close()
        self.arm = None


class Cell:
    def __init__(self, context, log_path: Path, env: dict):
        self.context, self.log_path, self.env = context, log_path, env
        self.executor = SingleThreadedExecutor(context=context)
        self.client = rclpy.create_node("arm_action_test_client", context=context)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.node = ArmTestNode(context)
        self.executor.add_node(self.node)
        assert self.node.trigger_configure() == SUCCESS, self.node._configure_problem
        assert self.node.trigger_activate() == SUCCESS
        wait_until(lambda: self.node.observed.joints() is not None, 30, what="fr3 joint states")

    @property
    def arm(self) -> ActionArmCommands:
        return self.node.arm

    def q(self) -> np.ndarray:
        return self.node.observed.joints()[0]

    def width(self) -> float:
        return float(np.sum(self.node.observed.joints()[1]))

    def move(self, target, duration_s: float = 1.5, **kwargs) -> None:
        q0 = self.q()
        self.arm.send_trajectory(trajectory_msg([0.0, duration_s], [q0, target], ARM), **kwargs)

    def stop_service(self):
        return call_service(self.client, Trigger, "/arm_action_test/stop", Trigger.Request(), None, 10.0)

    def log(self) -> str:
        return self.log_path.read_text()[-3000:]


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("arm_actions") / "fake_franka.log"
    with ros_domain():
        env = dict(os.environ)
        process = start_node("molmomotion_ros.nodes.fake_franka_node", "--params-file",
                             str(ROOT / "config" / "fake_franka.yaml"), "-p", "reset_on_start:=false",
                             "-p", "camera_rate_hz:=1.0", env=env, log_path=log_path)
        context = rclpy.Context()
        rclpy.init(context=context)
        cell = None
        try:
            probe = ArmTestNode(context, action_server_timeout_s=60.0)  # waits for the fake's servers
            assert probe.trigger_configure() == SUCCESS, (probe._configure_problem, log_path.read_text()[-2000:])
            probe.trigger_cleanup()
            probe.destroy_node()
            cell = Cell(context, log_path, env)
            yield cell
        finally:
            if cell is not None:
                cell.executor.shutdown(timeout_sec=5)
                cell.node.destroy_node()
                cell.client.destroy_node()
            rclpy.try_shutdown(context=context)
            stop(process)


def test_configure_fails_naming_a_missing_action_server(cell):
    node = ArmTestNode(cell.context, arm_action="/no_such_controller/follow_joint_trajectory",
                       action_server_timeout_s=0.5)
    try:
        assert node.trigger_configure() == FAILURE
        assert "/no_such_controller/follow_joint_trajectory" in node._configure_problem
        assert "/franka_gripper/gripper_action" not in node._configure_problem  # that one is there
    finally:
        node.destroy_node()


def test_joint_names_are_checked_at_configure(cell):
    node = ArmTestNode(cell.context, arm_joint_names=ARM[:6])
    try:
        assert node.trigger_configure() == FAILURE
        assert "arm_joint_names needs 7 names" in node._configure_problem
    finally:
        node.destroy_node()


def test_a_trajectory_goal_with_fr3_names_moves_the_arm_and_returns_with_its_result(cell):
    cell.arm.resume()
    cell.move(HOME, duration_s=1.0, goal_tolerance_rad=0.02, goal_time_s=1.0)
    target = HOME + np.array([0.3, 0.15, -0.2, 0.2, 0.2, -0.2, 0.3])
    start = time.monotonic()
    cell.move(target, duration_s=1.5, goal_tolerance_rad=0.02, goal_time_s=1.0)
    assert time.monotonic() - start > 1.4, "send_trajectory returns with the result, after the motion"
    time.sleep(0.1)
    assert np.abs(cell.q() - target).max() < 0.02, cell.log()
    # The fingers came from /franka_gripper/joint_states (franka/joint_states has none): the open hand.
    assert cell.width() == pytest.approx(0.08, abs=0.003)


def test_a_goal_with_wrong_joint_names_is_rejected_with_a_reason_and_nothing_moves(cell):
    cell.arm.resume()
    q0 = cell.q()
    panda = [f"panda_joint{i}" for i in range(1, 8)]
    with pytest.raises(ArmFailure, match="rejected") as failure:
        cell.arm.send_trajectory(trajectory_msg([0.0, 1.0], [q0, q0 + 0.1], panda))
    assert "/fr3_arm_controller/follow_joint_trajectory" in str(failure.value)
    assert "panda_joint1" in str(failure.value)
    time.sleep(0.3)
    assert np.abs(cell.q() - q0).max() < 0.005


def test_an_aborted_goal_ends_with_the_controllers_error_code_and_string(cell):
    cell.arm.resume()
    cell.move(HOME, duration_s=1.0)
    with pytest.raises(ArmFailure, match="aborted") as failure:
        cell.move(INTO_THE_TABLE, duration_s=2.0, goal_tolerance_rad=0.02, goal_time_s=0.5)
    assert "GOAL_TOLERANCE_VIOLATED" in str(failure.value) and "goal_time_tolerance" in str(failure.value)
    cell.move(HOME, duration_s=2.0)


def test_stop_cancels_the_running_goal_at_once_and_nothing_follows_until_resume(cell):
    cell.arm.resume()
    cell.move(HOME, duration_s=1.0)
    target = HOME + np.array([0.8, 0.0, 0.0, 0.6, 0.0, 0.0, 0.8])
    outcome = {}

    def worker():
        try:
            cell.move(target, duration_s=4.0)
            outcome["end"] = "returned"
        except Stopped:
            outcome["end"] = "stopped"
        outcome["t"] = time.monotonic()

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(1.2)
    t_stop = time.monotonic()
    assert cell.stop_service().success
    thread.join(5)
    assert outcome.get("end") == "stopped" and outcome["t"] - t_stop < 0.5
    time.sleep(0.3)  # the cancel reaches the controller, which holds where the arm is
    held = cell.q()
    time.sleep(1.0)
    assert np.abs(cell.q() - held).max() < 0.02, "the arm stays where the cancel found it"
    assert np.abs(cell.q() - target).max() > 0.3 and np.abs(cell.q() - HOME).max() > 0.05
    q_now = cell.q()
    with pytest.raises(Stopped):  # no goal goes out after a stop ...
        cell.move(HOME, duration_s=1.0)
    time.sleep(0.3)
    assert np.abs(cell.q() - q_now).max() < 0.01
    cell.arm.resume()  # ... until the node takes a new request
    cell.move(HOME, duration_s=1.5, goal_tolerance_rad=0.02, goal_time_s=1.0)
    assert np.abs(cell.q() - HOME).max() < 0.02


def test_a_stop_while_the_goal_is_in_flight_cancels_it_on_acceptance(cell):
    cell.arm.resume()
    cell.move(HOME, duration_s=1.0)
    target = HOME + np.array([0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.8])
    outcome = {}

    def worker():
        try:
            cell.move(target, duration_s=3.0)
        except Stopped:
            outcome["end"] = "stopped"

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.002)  # the goal is sent; its acceptance takes a round trip
    cell.arm.stop("stopped by the test")
    thread.join(5)
    assert outcome.get("end") == "stopped"
    time.sleep(2.5)
    assert np.abs(cell.q() - HOME).max() < 0.35 and np.abs(cell.q() - target).max() > 0.3, \
        "the goal accepted after the stop was cancelled, not carried out"
    cell.arm.resume()
    cell.move(HOME, duration_s=1.5)


def test_deactivate_cancels_the_running_goal(cell):
    cell.arm.resume()
    cell.move(HOME, duration_s=1.0)
    target = HOME + np.array([-0.8, 0.0, 0.0, 0.6, 0.0, 0.0, -0.8])
    outcome = {}

    def worker():
        try:
            cell.move(target, duration_s=4.0)
            outcome["end"] = "returned"
        except Stopped:
            outcome["end"] = "stopped"

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(1.2)
    assert cell.node.trigger_deactivate() == SUCCESS
    thread.join(5)
    assert outcome.get("end") == "stopped"
    assert cell.arm.stop_reason == "stopped: the node was deactivated"
    assert cell.node.trigger_activate() == SUCCESS
    wait_until(lambda: cell.node.observed.joints() is not None, 10, what="joint states after re-activation")
    held = cell.q()
    time.sleep(1.0)
    assert np.abs(cell.q() - held).max() < 0.02 and np.abs(cell.q() - target).max() > 0.3
    cell.arm.resume()
    cell.move(HOME, duration_s=1.5, goal_tolerance_rad=0.02, goal_time_s=1.0)


def test_gripper_command_closes_and_opens_the_hand(cell):
    cell.arm.resume()
    cell.arm.send_gripper(0.0)  # nothing between the fingers: closes fully, reached
    assert cell.arm.finger_opening_m == pytest.approx(0.0, abs=0.003)
    wait_until(lambda: cell.width() < 0.005, 5, what="the closed hand on /franka_gripper/joint_states")
    cell.arm.send_gripper(0.04)
    assert cell.arm.finger_opening_m == pytest.approx(0.04, abs=0.003)
    wait_until(lambda: cell.width() > 0.075, 5, what="the open hand")


def test_without_finger_joints_anywhere_the_fingers_are_the_last_gripper_outcome(cell):
    node = ArmTestNode(cell.context, name="arm_action_test_no_fingers", gripper_joint_states="")
    cell.executor.add_node(node)
    try:
        assert node.trigger_configure() == SUCCESS, node._configure_problem
        assert node.trigger_activate() == SUCCESS
        wait_until(lambda: node.observed.joints() is not None, 30, what="fr3 arm joint states")
        assert list(node.observed.joints()[1]) == [0.04, 0.04]  # no command yet: taken to be open
        node.arm.send_gripper(0.0)
        wait_until(lambda: np.sum(node.observed.joints()[1]) < 0.003, 5, what="the result's width as the fingers")
        node.arm.send_gripper(0.04)
        wait_until(lambda: np.sum(node.observed.joints()[1]) > 0.075, 5, what="the open hand's width")
    finally:
        cell.executor.remove_node(node)
        node.close()
        node.destroy_node()


def test_the_goal_status_values_are_action_msgs():
    from molmomotion_ros.nodes import arm_interface

    for name in ("STATUS_SUCCEEDED", "STATUS_CANCELED", "STATUS_ABORTED"):
        assert getattr(arm_interface.GoalStatus, name) == getattr(GoalStatus, name)


def test_gripper_outcome_counts_an_object_in_the_hand_as_holding_it():
    aborted, succeeded, canceled = GoalStatus.STATUS_ABORTED, GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED
    assert gripper_outcome(succeeded, True, False, 0.0, 0.0) == (0.0, None)
    # franka_gripper: a grasp stopped by a 3 cm object is outside the epsilons → aborted, reached_goal false.
    assert gripper_outcome(aborted, False, False, 0.03, 0.0) == (0.03, None)
    held, problem = gripper_outcome(aborted, False, False, 0.05, 0.04)  # an opening blocked short of 8 cm
    assert held == 0.05 and "ended aborted at width 50.0 mm" in problem
    assert gripper_outcome(canceled, False, False, 0.03, 0.0)[1] is not None


def test_manipulation_node_configures_the_action_interface_or_names_the_missing_server(cell, tmp_path):
    args = ["--params-file", str(ROOT / "config" / "manipulation_node.yaml"), "-p", "arm_interface:=action",
            "-p", "arm_action:=/fr3_arm_controller/follow_joint_trajectory",
            "-p", "gripper_action:=/franka_gripper/gripper_action",
            "-p", "arm_joint_names:=[" + ",".join(ARM) + "]", "-p", "finger_joint_names:=[" + ",".join(FINGERS) + "]",
            "-p", "gripper_joint_states:=/franka_gripper/joint_states", "-r", "joint_states:=/franka/joint_states"]
    good = start_node("molmomotion_ros.nodes.manipulation_node", *args, env=cell.env, log_path=tmp_path / "good.log")
    bad = start_node("molmomotion_ros.nodes.manipulation_node", *args, "-r", "__node:=manipulation_bad",
                     "-p", "gripper_action:=/no_gripper/gripper_action", "-p", "action_server_timeout_s:=3.0",
                     env=cell.env, log_path=tmp_path / "bad.log")
    try:
        wait_until(lambda: "ready: planner" in (tmp_path / "good.log").read_text(), 120, what="the node active")
        wait_until(lambda: "configure failed" in (tmp_path / "bad.log").read_text(), 120, what="configure failed")
        reason = (tmp_path / "bad.log").read_text()
        assert "no action server for" in reason and "/no_gripper/gripper_action within 3.0 s" in reason
        assert good.poll() is None and bad.poll() is None  # unconfigured, alive, saying why
    finally:
        stop(good)
        stop(bad)


def _timed(q_from, q_to, duration_s: float):
    """A straight joint-space TimedTrajectory (smoothstep), as the planner hands the node."""
    from molmomotion_ros.planning.timing import TimedTrajectory

    t = np.linspace(0.0, duration_s, int(duration_s / 0.02) + 1)
    s = t / duration_s
    shape, rate = 3 * s**2 - 2 * s**3, (6 * s - 6 * s**2) / duration_s
    delta = np.asarray(q_to) - np.asarray(q_from)
    return TimedTrajectory(tuple(f"panda_joint{i}" for i in range(1, 8)), t, q_from + shape[:, None] * delta,
                           rate[:, None] * delta, np.zeros((t.size, 7)))


def test_manipulation_node_ends_the_sequence_failed_with_the_controllers_reason(cell):
    """manipulation_node in this process with the action interface and fr3 names against the fake: the planner's
    steps become goals in turn; a goal the controller rejects ends the sequence "failed" with the reason."""
    from types import SimpleNamespace

    from builtin_interfaces.msg import Time

    from molmomotion_ros.conversions import hypotheses_to_trajectory
    from molmomotion_ros.nodes.manipulation_node import ManipulationNode

    args = ["--ros-args", "--params-file", str(ROOT / "config" / "manipulation_node.yaml"),
            "-p", "autostart:=false", "-r", "joint_states:=/franka/joint_states"]
    for name, value in FRANKA.items():
        args += ["-p", f"{name}:=" + ("[" + ",".join(value) + "]" if isinstance(value, list) else value)]
    # The default context (ManipulationNode() joins it; the cell has its own). Initialised and shut down
    # without naming it, so that rclpy makes a fresh default context for the tests after this one.
    rclpy.init(args=args)
    node = ManipulationNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    statuses = []
    try:
        assert node.trigger_configure() == SUCCESS, node._configure_problem
        assert node.trigger_activate() == SUCCESS
        wait_until(lambda: node._observed.joints() is not None, 30, what="fr3 joint states in the node")
        cell.arm.resume()
        cell.move(HOME, duration_s=1.0)
        q0 = node._observed.joints()[0].copy()
        q1 = q0 + np.array([0.2, 0.1, 0.0, 0.15, 0.0, 0.0, 0.2])
        steps = [SimpleNamespace(label="approach", trajectory=_timed(q0, q1, 1.0)),
                 SimpleNamespace(label="grasp", trajectory=None, gripper_opening_m=0.0),
                 SimpleNamespace(label="lift", trajectory=_timed(q1 + 0.5, q1 + 0.6, 1.0))]  # starts far away
        planned = SimpleNamespace(plan=SimpleNamespace(steps=steps, carry_follows_forecast=False),
                                  skill=SimpleNamespace(kind="pick_place"))
        node._manipulator.plan = lambda *args: planned  # the planner and the camera are not what is tested
        node._frame_at = lambda t_ns: (None, None, q0)
        report = node._report.status
        node._report.status = lambda state, **kw: (statuses.append((state, kw)), report(state, **kw))
        points = np.zeros((4, 3))
        msg = hypotheses_to_trajectory(points, np.zeros((1, 4, 2, 3)), np.array([0.1, 0.2]), Time(sec=1), "world")
        node._handle(msg)
        assert [s for s, _ in statuses] == ["planning", "executing", "failed"], statuses
        reason = statuses[-1][1]["reason"]
        assert reason.startswith("lift: /fr3_arm_controller/follow_joint_trajectory: the goal was rejected"), reason
        assert np.abs(node._observed.joints()[0] - q1).max() < 0.03  # the approach ran to its end
        assert node._arm.finger_opening_m < 0.003  # the grasp closed the empty hand
        cell.arm.send_gripper(0.04)
        cell.move(HOME, duration_s=1.5)
    finally:
        node.close()  # deactivate and release the planner, as the process does at exit
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
        rclpy.try_shutdown()


def test_the_policys_robot_follows_a_chunk_as_one_goal_to_its_result(cell):
    """policy_node's _RosRobot with the action interface: a chunk of 15 fps set-points is one
    FollowJointTrajectory goal (a zero-order hold), waited to its result; the gripper is a GripperCommand."""
    from types import SimpleNamespace

    from molmomotion_ros.nodes.policy_node import _RosRobot

    cell.arm.resume()
    cell.move(HOME, duration_s=1.0)
    node = SimpleNamespace(_arm=cell.arm, _params={"policy_setpoint_rise_s": 1.0 / 240.0},
                           _check_preempted=lambda: None, _observed=cell.node.observed)
    robot = _RosRobot(node)
    q0 = robot.joints()[0]
    targets = q0 + np.outer(np.arange(1, 5) / 4, [0.08, 0.0, 0.0, 0.08, 0.0, 0.0, 0.1])  # 4 samples, 0.27 s
    start = time.monotonic()
    robot.follow(targets)
    assert time.monotonic() - start > 0.25
    time.sleep(0.1)
    assert np.abs(robot.joints()[0] - targets[-1]).max() < 0.02
    robot.command_gripper(True)
    assert cell.width() < 0.005 or cell.arm.finger_opening_m < 0.003
    robot.command_gripper(False)
    assert cell.arm.finger_opening_m == pytest.approx(0.04, abs=0.003)
    cell.move(HOME, duration_s=1.0)
