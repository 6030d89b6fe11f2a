"""fake_franka as a real Franka cell, across processes with real rclpy (no mocks).

One fake_franka process serves the module in its own isolated domain. The interfaces are checked by name and type
from a process that imports only rclpy and message packages (driver_interface_check.py, which runs unchanged
against a real cell); the arm and the hand are then driven through their actions as MoveIt or a policy would:
joint_trajectory_controller's acceptance, result codes, tolerances and cancel, franka_gripper's GripperCommand.
Tests run in file order; the last one stops the node with SIGINT and checks it exits cleanly.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Duration
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_system_default
from rosgraph_msgs.msg import Clock
from rosutil import ROOT, ros_domain, start_node, stop, wait_until
from sensor_msgs.msg import CameraInfo, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from molmomotion_ros.conversions.joints import duration_msg, time_to_s
from molmomotion_sim.tasks import TASKS

try:
    from action_msgs.msg import GoalStatus
    from control_msgs.action import FollowJointTrajectory, GripperCommand
    from control_msgs.msg import GripperCommand as GripperCommandMsg
    from control_msgs.msg import JointTolerance
except ImportError as error:  # pragma: no cover - set-up problem, say how to fix it
    raise ImportError(f"{error}: control_msgs is built by set-up when no ROS install provides it; run "
                      "`bash scripts/build_interfaces.sh`") from error

PARAMS = ROOT / "config" / "fake_franka.yaml"
CHECK = Path(__file__).with_name("driver_interface_check.py")
ARM = [f"fr3_joint{i}" for i in range(1, 8)]
HOME = np.array([0.0, -0.5, 0.0, -2.3, 0.0, 1.8, 0.785])  # config/robot.yaml: where the arm starts
INTO_THE_TABLE = np.array([0.0, 1.0, 0.0, -1.6, 0.0, 2.6, 0.785])  # the hand meets the table top on the way
ARM_ACTION = "/fr3_arm_controller/follow_joint_trajectory"
GRIPPER_ACTION = "/franka_gripper/gripper_action"
START_TIMEOUT_S = 60.0
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# tf2_ros's static listener: transient local, depth 100 (each latched publisher's sample is kept).
TF_STATIC_LISTENER_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL)
ARRIVAL_TOL_RAD = 0.02


class Client:
    """The test's side: one in-process node with the two action clients and a record of /franka/joint_states."""

    def __init__(self, context):
        self.node = rclpy.create_node("fake_franka_test_client", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.arm = ActionClient(self.node, FollowJointTrajectory, ARM_ACTION)
        self.gripper = ActionClient(self.node, GripperCommand, GRIPPER_ACTION)
        self.states: list[JointState] = []
        self.finger_states: list[JointState] = []
        self.node.create_subscription(JointState, "/franka/joint_states", self.states.append, 10)
        self.node.create_subscription(JointState, "/franka_gripper/joint_states", self.finger_states.append, 10)

    def spin(self) -> None:
        self.executor.spin_once(timeout_sec=0.02)

    def wait(self, predicate, what: str, timeout_s: float = 20.0) -> None:
        wait_until(predicate, timeout_s, spin=self.spin, what=what)

    def result_of(self, future, what: str, timeout_s: float = 20.0):
        self.wait(future.done, what, timeout_s)
        return future.result()

    def q(self) -> np.ndarray:
        msg = self.states[-1]
        return np.array([msg.position[list(msg.name).index(n)] for n in ARM])

    def width(self) -> float:
        return float(sum(self.finger_states[-1].position))

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.spin()

    def send(self, goal, feedback=None):
        """(goal handle, result future or None when rejected)."""
        handle = self.result_of(self.arm.send_goal_async(goal, feedback_callback=feedback), "the goal's answer")
        return handle, (handle.get_result_async() if handle.accepted else None)

    def move_to(self, q, duration_s: float = 1.5) -> None:
        handle, result = self.send(arm_goal([duration_s], [q]))
        assert handle.accepted
        response = self.result_of(result, "the move's result", timeout_s=duration_s + 20)
        assert response.status == GoalStatus.STATUS_SUCCEEDED, response.result.error_string

    def call(self, srv_type, name: str, request):
        client = self.node.create_client(srv_type, name)
        try:
            self.wait(client.service_is_ready, f"service {name}")
            return self.result_of(client.call_async(request), f"answer of {name}", timeout_s=60.0)
        finally:
            self.node.destroy_client(client)


def arm_goal(times_s, positions, joint_names=ARM, order=(6, 2, 0, 4, 1, 5, 3), **fields):
    """A FollowJointTrajectory goal with the joints in a shuffled order (the controller must accept any)."""
    names = [joint_names[j] for j in order] if len(joint_names) == 7 else list(joint_names)
    columns = list(order) if len(joint_names) == 7 else list(range(len(joint_names)))
    goal = FollowJointTrajectory.Goal(**fields)
    goal.trajectory.joint_names = names
    for t, q in zip(times_s, positions, strict=True):
        goal.trajectory.points.append(JointTrajectoryPoint(positions=[float(np.asarray(q)[c]) for c in columns],
                                                           time_from_start=duration_msg(t)))
    return goal


@dataclass
class Fake:
    process: subprocess.Popen
    client: Client
    log_path: Path
    env: dict

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("fake_franka") / "fake_franka.log"
    with ros_domain():
        env = dict(os.environ)
        process = start_node("molmomotion_ros.nodes.fake_franka_node", "--params-file", str(PARAMS),
                             "-p", "reset_on_start:=false", "-p", "camera_rate_hz:=10.0", env=env, log_path=log_path)
        context = rclpy.Context()
        rclpy.init(context=context)
        client = Client(context)
        try:
            client.wait(lambda: client.arm.server_is_ready() and client.gripper.server_is_ready() and client.states
                        and client.finger_states, "the action servers and joint states", START_TIMEOUT_S)
            yield Fake(process, client, log_path, env)
        finally:
            client.node.destroy_node()
            rclpy.try_shutdown(context=context)
            stop(process)


def test_the_interface_check_imports_only_rclpy_and_message_packages():
    allowed = {"__future__", "argparse", "json", "sys", "time", "rclpy", "control_msgs", "sensor_msgs", "tf2_msgs"}
    imported = set()
    for node in ast.walk(ast.parse(CHECK.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= allowed, imported - allowed


def test_interfaces_by_name_and_type_as_a_plain_rclpy_process_sees_them(fake):
    done = subprocess.run([sys.executable, str(CHECK), "--timeout", "40"], env=fake.env, capture_output=True,
                          text=True, timeout=120)
    report = json.loads(done.stdout)
    failed = {name: why for name, why in report["checks"].items() if why is not True}
    assert done.returncode == 0 and not failed, f"{failed}\n{done.stderr[-2000:]}"
    assert {"fr3_link0", "fr3_hand_tcp", "camera_link", "camera_color_optical_frame", "base"} <= set(report["frames"])


def test_a_goal_moves_the_arm_with_feedback_and_succeeds(fake):
    client = fake.client
    q0 = client.q()
    target = q0 + np.array([0.25, 0.15, -0.2, 0.2, 0.2, -0.2, 0.3])
    feedback: list = []
    handle, result = client.send(arm_goal([0.6, 1.2], [(q0 + target) / 2, target]),
                                 feedback=lambda msg: feedback.append(msg.feedback))
    assert handle.accepted
    response = client.result_of(result, "the result")
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    assert response.result.error_code == FollowJointTrajectory.Result.SUCCESSFUL
    assert response.result.error_string == "Goal successfully reached!"
    client.wait(lambda: np.abs(client.q() - target).max() < ARRIVAL_TOL_RAD, "the arm at the target")
    assert len(feedback) >= 5, "feedback streams at the action monitor rate (20 Hz) while the goal runs"
    last = feedback[-1]
    assert list(last.joint_names) == ARM  # the controller's order, whatever the goal's
    error = np.array(last.desired.positions) - np.array(last.actual.positions)
    np.testing.assert_allclose(last.error.positions, error, atol=1e-9)
    assert np.abs(error).max() < 0.05


@pytest.mark.parametrize("case", ["unknown joints", "partial joints", "first point far from the arm",
                                  "times not increasing", "moving at the end", "beyond a joint limit"])
def test_goals_the_controller_refuses_are_rejected_and_nothing_moves(fake, case):
    client = fake.client
    q0 = client.q()
    goals = {
        "unknown joints": lambda: arm_goal([1.0], [q0], joint_names=[f"panda_joint{i}" for i in range(1, 8)]),
        "partial joints": lambda: arm_goal([1.0], [q0[:6]], joint_names=ARM[:6]),
        "first point far from the arm": lambda: arm_goal([0.0, 1.0], [q0 + 0.3, q0 + 0.3]),
        "times not increasing": lambda: arm_goal([1.0, 0.5], [q0, q0 + 0.1]),
        "moving at the end": lambda: _with_final_velocity(arm_goal([1.0], [q0 + 0.1])),
        "beyond a joint limit": lambda: arm_goal([2.0], [q0 + np.array([0, 0, 0, 0, 0, 0, 3.0])]),
    }
    handle, _ = client.send(goals[case]())
    assert not handle.accepted, case  # joint_trajectory_controller rejects; a rejected goal has no result
    client.sleep(0.3)
    assert np.abs(client.q() - q0).max() < 0.005


def _with_final_velocity(goal):
    goal.trajectory.points[-1].velocities = [0.1] * 7
    return goal


def test_a_far_single_point_goal_with_time_to_get_there_is_fine(fake):
    """Not "far from the current state": joint_trajectory_controller interpolates from where the arm is."""
    client = fake.client
    client.move_to(client.q() + np.array([0.3, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0]), duration_s=1.0)
    client.move_to(HOME, duration_s=1.0)


def test_an_obstructed_path_aborts_with_path_tolerance_violated_and_the_arm_holds(fake):
    client = fake.client
    client.move_to(HOME)
    tolerance = [JointTolerance(name=name, position=0.05) for name in ARM]
    handle, result = client.send(arm_goal([2.0], [INTO_THE_TABLE], path_tolerance=tolerance))
    assert handle.accepted
    response = client.result_of(result, "the result")
    assert response.status == GoalStatus.STATUS_ABORTED
    assert response.result.error_code == FollowJointTrajectory.Result.PATH_TOLERANCE_VIOLATED, \
        response.result.error_string
    held = client.q()
    client.sleep(0.5)
    assert np.abs(client.q() - held).max() < 0.02, "after an abort the controller holds the position"
    assert np.abs(client.q() - INTO_THE_TABLE).max() > 0.1


def test_an_unreachable_goal_aborts_with_goal_tolerance_violated_after_goal_time(fake):
    client = fake.client
    client.move_to(HOME)
    goal = arm_goal([2.0], [INTO_THE_TABLE], goal_tolerance=[JointTolerance(name=name, position=0.02) for name in ARM],
                    goal_time_tolerance=Duration(sec=0, nanosec=500_000_000))
    start = time.monotonic()
    handle, result = client.send(goal)
    assert handle.accepted
    response = client.result_of(result, "the result")
    assert response.status == GoalStatus.STATUS_ABORTED
    assert response.result.error_code == FollowJointTrajectory.Result.GOAL_TOLERANCE_VIOLATED, \
        response.result.error_string
    assert "goal_time_tolerance" in response.result.error_string
    assert time.monotonic() - start > 2.4  # not before the last point's time plus goal_time_tolerance


def test_cancel_stops_the_arm_where_it_is(fake):
    client = fake.client
    client.move_to(HOME)
    target = HOME + np.array([0.8, 0.0, 0.0, 0.6, 0.0, 0.0, 0.8])
    handle, result = client.send(arm_goal([4.0], [target]))
    assert handle.accepted
    client.sleep(1.0)
    cancel = client.result_of(handle.cancel_goal_async(), "the cancel answer")
    assert len(cancel.goals_canceling) == 1
    response = client.result_of(result, "the result")
    assert response.status == GoalStatus.STATUS_CANCELED
    stopped = client.q()
    client.sleep(1.0)
    assert np.abs(client.q() - stopped).max() < 0.02, "the arm stays where the cancel found it"
    assert np.abs(client.q() - target).max() > 0.3 and np.abs(client.q() - HOME).max() > 0.05


def test_a_new_goal_preempts_the_active_one_with_invalid_goal(fake):
    client = fake.client
    client.move_to(HOME)
    first, first_result = client.send(arm_goal([4.0], [HOME + 0.4]))
    client.sleep(0.5)
    second, second_result = client.send(arm_goal([1.5], [HOME + np.array([0.2, 0, 0, 0.2, 0, 0, 0])]))
    assert first.accepted and second.accepted
    response = client.result_of(first_result, "the first result")
    assert response.status == GoalStatus.STATUS_ABORTED
    assert response.result.error_code == FollowJointTrajectory.Result.INVALID_GOAL
    assert "preempted" in response.result.error_string
    assert client.result_of(second_result, "the second result").status == GoalStatus.STATUS_SUCCEEDED


def _gripper(client: Client, position: float, max_effort: float = 20.0, feedback=None):
    goal = GripperCommand.Goal(command=GripperCommandMsg(position=position, max_effort=max_effort))
    handle = client.result_of(client.gripper.send_goal_async(goal, feedback_callback=feedback), "gripper answer")
    assert handle.accepted  # franka_gripper accepts every goal and judges it while executing
    return client.result_of(handle.get_result_async(), "gripper result"), handle


def test_gripper_command_closes_and_opens_with_franka_gripper_semantics(fake):
    client = fake.client
    feedback: list = []
    response, _ = _gripper(client, 0.0, feedback=lambda msg: feedback.append(msg.feedback))
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    result = response.result
    assert result.reached_goal and not result.stalled and result.position < 0.005  # the width, ~0: closed
    assert len(feedback) >= 5 and feedback[0].position > feedback[-1].position  # 0.08 m at 0.1 m/s: ~0.8 s
    client.wait(lambda: client.width() < 0.005, "the fingers' joint states closed")

    response, _ = _gripper(client, 0.04)  # position: one finger's opening; the width is twice it
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    assert response.result.reached_goal and abs(response.result.position - 0.08) < 0.005
    client.wait(lambda: client.width() > 0.075, "the fingers' joint states open")

    response, _ = _gripper(client, 0.04)  # already there: done at once
    assert response.status == GoalStatus.STATUS_SUCCEEDED and response.result.reached_goal

    response, _ = _gripper(client, 0.05)  # a width of 0.1 m: beyond the hand
    assert response.status == GoalStatus.STATUS_ABORTED and not response.result.reached_goal


def test_gripper_stop_ends_a_running_command_unreached(fake):
    client = fake.client
    goal = GripperCommand.Goal(command=GripperCommandMsg(position=0.0, max_effort=20.0))
    handle = client.result_of(client.gripper.send_goal_async(goal), "gripper answer")
    client.sleep(0.3)
    assert client.call(Trigger, "/franka_gripper/stop", Trigger.Request()).success
    response = client.result_of(handle.get_result_async(), "gripper result")
    assert response.status == GoalStatus.STATUS_ABORTED and not response.result.reached_goal
    assert 0.01 < response.result.position < 0.075  # stopped on the way
    assert _gripper(client, 0.04)[0].status == GoalStatus.STATUS_SUCCEEDED


def test_reset_builds_an_episode_and_success_answers(fake):
    client = fake.client
    values = {"suite": "main", "family": "stack", "seed": 110_003}
    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    assert all(r.successful for r in client.call(SetParameters, "/fake_franka/set_parameters", request).results)
    response = client.call(Trigger, "/fake_franka/reset", Trigger.Request())
    assert response.success, response.message
    episode = json.loads(response.message)
    assert episode["family"] == "stack" and episode["seed"] == 110_003 and episode["instruction"]
    report = json.loads(client.call(Trigger, "/fake_franka/success", Trigger.Request()).message)
    assert report["success"] is False and report["reason"]
    client.wait(lambda: np.abs(client.q() - HOME).max() < ARRIVAL_TOL_RAD, "the arm home after the reset")
    client.move_to(HOME + 0.1, duration_s=1.0)  # the controller runs on after a reset


def test_the_controller_topic_moves_the_arm_too(fake):
    client = fake.client
    publisher = client.node.create_publisher(JointTrajectory, "/fr3_arm_controller/joint_trajectory",
                                             qos_profile_system_default)
    client.wait(lambda: publisher.get_subscription_count() > 0, "the controller's topic")
    target = client.q() + np.array([0.0, 0.0, 0.2, 0.0, 0.2, 0.0, -0.2])
    publisher.publish(arm_goal([1.0], [target]).trajectory)
    client.wait(lambda: np.abs(client.q() - target).max() < ARRIVAL_TOL_RAD, "the arm at the topic's target")
    client.node.destroy_publisher(publisher)


# --- fault injection: each fault happens, and ends when its parameter is set back -----------------------------------
def set_params(client: Client, **values) -> None:
    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    answers = client.call(SetParameters, "/fake_franka/set_parameters", request).results
    assert all(a.successful for a in answers), [a.reason for a in answers]


def test_an_injected_push_aborts_the_goal_mid_way_with_path_tolerance_violated(fake):
    client = fake.client
    client.move_to(HOME)
    set_params(client, trajectory_tolerance_rad=0.05, fault_push_rad=0.3, fault_push_after_s=0.5)
    try:
        start = time.monotonic()
        handle, result = client.send(arm_goal([2.0], [HOME + np.array([0.0, 0.0, 0.3, 0.0, 0.3, 0.0, 0.3])]))
        assert handle.accepted
        response = client.result_of(result, "the pushed goal's result")
        elapsed_s = time.monotonic() - start
    finally:
        set_params(client, trajectory_tolerance_rad=0.0, fault_push_rad=0.0)
    assert response.status == GoalStatus.STATUS_ABORTED
    assert response.result.error_code == FollowJointTrajectory.Result.PATH_TOLERANCE_VIOLATED, \
        response.result.error_string
    assert 0.5 < elapsed_s < 2.0, "aborted mid-way: after the push began, before the trajectory's end"
    client.move_to(HOME)  # the fault ended: goals succeed again


def test_stale_joint_states_and_tf_stop_while_injected(fake):
    client = fake.client
    tf: list = []
    merged: list = []
    subscriptions = [client.node.create_subscription(TFMessage, "/tf", tf.append, 100),
                     client.node.create_subscription(JointState, "/joint_states", merged.append, 10)]
    client.wait(lambda: tf and merged, "/tf and /joint_states")
    set_params(client, fault_stop_joint_states=True, fault_stop_tf=True)
    client.sleep(0.2)  # messages already on the way
    counts = len(client.states), len(client.finger_states), len(merged), len(tf)
    client.sleep(1.0)
    assert (len(client.states), len(client.finger_states), len(merged), len(tf)) == counts, "still publishing"
    set_params(client, fault_stop_joint_states=False, fault_stop_tf=False)
    client.wait(lambda: len(client.states) > counts[0] and len(merged) > counts[2] and len(tf) > counts[3],
                "joint states and /tf again")
    for subscription in subscriptions:
        client.node.destroy_subscription(subscription)


def static_frames(client: Client, seconds: float = 2.0) -> set[tuple[str, str]]:
    """The (parent, child) pairs a node joining now receives on /tf_static (latched) within ``seconds``."""
    received: list = []
    subscription = client.node.create_subscription(TFMessage, "/tf_static", received.append,
                                              TF_STATIC_LISTENER_QOS)
    client.sleep(seconds)
    client.node.destroy_subscription(subscription)
    return {(t.header.frame_id, t.child_frame_id) for msg in received for t in msg.transforms}


def test_a_withdrawn_hand_eye_transform_is_missing_for_nodes_that_join_later(fake):
    client = fake.client
    hand_eye = ("fr3_link0", "camera_link")
    set_params(client, fault_hand_eye_missing=True)
    frames = static_frames(client)
    assert hand_eye not in frames and ("fr3_hand", "fr3_hand_tcp") in frames  # the robot's statics stay
    set_params(client, fault_hand_eye_missing=False)
    assert hand_eye in static_frames(client)


def test_camera_info_with_another_distortion_model_while_injected(fake):
    client = fake.client
    infos: list = []
    subscription = client.node.create_subscription(CameraInfo, "/camera/camera/color/camera_info", infos.append, 10)
    client.wait(lambda: infos, "camera_info")
    assert infos[-1].distortion_model == "plumb_bob"
    set_params(client, fault_distortion_model="equidistant")
    client.wait(lambda: infos[-1].distortion_model == "equidistant", "an equidistant camera_info")
    assert len(infos[-1].d) == 4
    set_params(client, fault_distortion_model="")
    client.wait(lambda: infos[-1].distortion_model == "plumb_bob", "plumb_bob again")
    client.node.destroy_subscription(subscription)


# --- the episode runner drives fake_franka: reset, the instruction it publishes, success -------------------------
def test_the_episode_runner_drives_fake_franka_and_publishes_the_instruction(fake, tmp_path):
    """fake_franka publishes no instruction and no /clock: the runner publishes the reset's instruction and
    settles on the wall clock. The test stands in for manipulation_node: each instruction gets a 'done' status."""
    client = fake.client
    instructions: list[str] = []
    status_pub = client.node.create_publisher(String, "/manipulation/status", LATCHED)

    def on_instruction(msg: String) -> None:
        instructions.append(msg.data)
        status_pub.publish(String(data=json.dumps({"state": "done", "forecast_stamp": time.time(),
                                                   "agent": "test-stand-in"})))

    subscription = client.node.create_subscription(String, "/instruction", on_instruction, LATCHED)
    out = tmp_path / "cell.json"
    runner = subprocess.Popen(
        [sys.executable, "-m", "molmomotion_ros.nodes.episode_runner", "--ros-args", "--params-file",
         str(ROOT / "config/episode_runner.yaml"), "-p", "simulator:=fake_franka", "-p", "publish_instruction:=true",
         "-p", "managed_nodes:=''", "-p", "families:=stack", "-p", "episodes_per_family:=1", "-p", "settle_s:=0.5",
         "-p", "episode_timeout_s:=60.0", "-p", "progress:=false", "-p", f"out:={out}"],
        env=fake.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client.wait(lambda: runner.poll() is not None, "the runner's end", timeout_s=120.0)
    finally:
        if runner.poll() is None:
            runner.kill()
        output = runner.communicate()[0]
        client.node.destroy_subscription(subscription)
        client.node.destroy_publisher(status_pub)
    assert runner.returncode == 0, output[-3000:]
    (episode,) = json.loads(out.read_text())["episodes"]
    assert episode["family"] == "stack" and episode["instruction"]
    # Nothing moved, so every attempt failed and was retried: one instruction per attempt, all the reset's.
    assert episode["success"] is False and episode["steps"] == TASKS["stack"].max_steps, episode
    assert instructions == [episode["instruction"]] * TASKS["stack"].max_steps


def test_with_the_simulated_clock_stamps_follow_clock(ros_env, tmp_path):
    """clock:=sim: simulated-time stamps and /clock, here as fast as possible (real_time_factor 0)."""
    log_path = tmp_path / "fake_franka_sim_clock.log"
    process = start_node("molmomotion_ros.nodes.fake_franka_node", "--params-file", str(PARAMS), "-p", "clock:=sim",
                         "-p", "real_time_factor:=0.0", "-p", "reset_on_start:=false", env=ros_env, log_path=log_path)
    context = rclpy.Context()
    rclpy.init(context=context)
    client = Client(context)
    clock: list = []
    client.node.create_subscription(Clock, "/clock", clock.append, 10)
    try:
        client.wait(lambda: client.arm.server_is_ready() and client.states and len(clock) > 10,
                    "the simulated cell", START_TIMEOUT_S)
        sim_start = time_to_s(clock[-1].clock)
        client.move_to(HOME + 0.2, duration_s=3.0)
        assert time_to_s(clock[-1].clock) - sim_start > 3.0  # (how fast is a benchmark's business, not a test's)
        stamp = time_to_s(client.states[-1].header.stamp)
        assert stamp < 1e6 and abs(stamp - time_to_s(clock[-1].clock)) < 1.0  # simulated time, not the epoch
    finally:
        client.node.destroy_node()
        rclpy.try_shutdown(context=context)
        assert stop(process) == 0, log_path.read_text()


def test_sigint_stops_the_node_cleanly(fake):
    assert stop(fake.process) == 0, fake.log()
    assert "Traceback" not in fake.log(), fake.log()
