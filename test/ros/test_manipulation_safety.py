"""manipulation_node's safety for hardware, with real rclpy across processes: the node runs in this process (its
planner and camera stubbed: what is tested is what reaches the arm), fake_franka (the FollowJointTrajectory and
GripperCommand servers of a franka_ros2 cell) in another, and a client node in its own context plays the user.

* Dry run (execute = false): the plan is previewed (JointTrajectory + MarkerArray, latched), the status says
  "planned", and not one goal reaches the controller (counted on the action servers' status topics) until
  ~/execute, which then moves the arm; ~/execute refuses with the reason when there is no plan, the arm has moved
  from the plan's start, or the plan has expired.
* A goal the controller rejects ends the sequence "failed" with its reason, and the next forecast is handled.
* Joint states older than max_joint_state_age_s refuse planning and each step (nothing is sent), and fresh ones
  let the next forecast through.
* planner_backend "" takes planner.yaml's backend (moveit_py there: configure fails saying what to install and
  pass); workspace_box_m reaches the planner in its world; acceleration_scaling changes at runtime.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import rclpy
from action_msgs.msg import GoalStatusArray
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosutil import ROOT, call_service, ros_domain, set_parameters, start_node, stop, wait_until
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from molmomotion_ros.conversions import hypotheses_to_trajectory
from molmomotion_ros.conversions.joints import joint_state_msg, trajectory_msg
from molmomotion_ros.nodes.lifecycle import FAILURE, SUCCESS
from molmomotion_ros.planning.planner import WorkspaceBounds
from molmomotion_ros.planning.skills import MotionStep, SkillPlan
from molmomotion_ros.planning.timing import TimedTrajectory
from molmomotion_ros.robot import ROBOT_BASE_M

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
FINGERS = ["fr3_finger_joint1", "fr3_finger_joint2"]
HOME = np.array([0.0, -0.5, 0.0, -2.3, 0.0, 1.8, 0.785])
FRANKA = ["-p", "arm_interface:=action", "-p", "arm_action:=/fr3_arm_controller/follow_joint_trajectory",
          "-p", "gripper_action:=/franka_gripper/gripper_action", "-p", "arm_joint_names:=[" + ",".join(ARM) + "]",
          "-p", "finger_joint_names:=[" + ",".join(FINGERS) + "]",
          "-p", "gripper_joint_states:=/franka_gripper/joint_states", "-r", "joint_states:=/franka/joint_states"]
LATCHED = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STEP = np.array([0.15, 0.1, 0.0, 0.1, 0.0, 0.0, 0.15])


def timed(q_from, q_to, duration_s: float = 1.0) -> TimedTrajectory:
    """A straight joint-space trajectory (smoothstep), as the planner hands the node."""
    t = np.linspace(0.0, duration_s, int(duration_s / 0.02) + 1)
    s = t / duration_s
    shape, rate = 3 * s**2 - 2 * s**3, (6 * s - 6 * s**2) / duration_s
    delta = np.asarray(q_to) - np.asarray(q_from)
    return TimedTrajectory(tuple(f"panda_joint{i}" for i in range(1, 8)), t, q_from + shape[:, None] * delta,
                           rate[:, None] * delta, np.zeros((t.size, 7)))


def planned(steps):
    return SimpleNamespace(plan=SkillPlan(steps, 0.01), skill=SimpleNamespace(kind="pick_place"))


def reach_open_reach(q0, lift_starts_far: bool = False):
    """approach (1 s), open gripper, lift (1 s); the lift may start 0.5 rad away (the controller rejects it)."""
    q1 = q0 + STEP
    lift_from = q1 + 0.5 if lift_starts_far else q1
    return planned([MotionStep("approach", timed(q0, q1)), MotionStep("open gripper", gripper_opening_m=0.04),
                    MotionStep("lift", timed(lift_from, lift_from - STEP / 2))])


class Client:
    """The user's side, in its own context: forecasts, status, preview, markers, ~/execute, goal counts."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("safety_test_client", context=self.context)
        self.statuses, self.previews, self.markers, self.trajectories, self.grippers = [], [], [], [], []
        self.goal_ids = {"arm": set(), "gripper": set()}
        n = self.node
        n.create_subscription(String, "/manipulation/status", lambda m: self.statuses.append(json.loads(m.data)),
                              LATCHED)
        n.create_subscription(JointTrajectory, "/manipulation/preview", self.previews.append, LATCHED)
        n.create_subscription(MarkerArray, "/manipulation/markers", self.markers.append, LATCHED)
        n.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", self.trajectories.append, 10)
        n.create_subscription(Float64, "/gripper/command", self.grippers.append, 10)
        # Every goal a server accepts appears on its status topic (rclpy/rclcpp_action's status QoS).
        status_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for key, action in (("arm", "/fr3_arm_controller/follow_joint_trajectory"),
                            ("gripper", "/franka_gripper/gripper_action")):
            n.create_subscription(GoalStatusArray, f"{action}/_action/status",
                                  lambda m, key=key: self.goal_ids[key].update(bytes(s.goal_info.goal_id.uuid)
                                                                               for s in m.status_list), status_qos)
        self.forecasts = None
        self.fake_joints = n.create_publisher(JointState, "/test/joint_states", 10)
        self.fake_arm = n.create_publisher(JointTrajectory, "/fr3_arm_controller/joint_trajectory", 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self._stamp = 0

    def fresh_forecasts(self) -> None:
        """A new forecast publisher: a new node must not be handed an earlier test's (transient-local) forecasts."""
        if self.forecasts is not None:
            self.node.destroy_publisher(self.forecasts)
        self.forecasts = self.node.create_publisher(MultiDOFJointTrajectory, "/forecast/hypotheses", LATCHED)

    def forecast(self) -> float:
        """Publish a forecast (4 points, 2 steps) with a new stamp; its stamp in s."""
        self._stamp += 1
        self.forecasts.publish(hypotheses_to_trajectory(np.full((4, 3), 0.5), np.full((1, 4, 2, 3), 0.5),
                                                        np.array([0.1, 0.2]), Time(sec=self._stamp), "world"))
        return float(self._stamp)

    def status(self, stamp: float, states, timeout_s: float = 30.0) -> dict:
        """The newest status of the forecast at ``stamp`` once it is in ``states``."""
        wait_until(lambda: self.statuses and self.statuses[-1]["forecast_stamp"] == stamp
                   and self.statuses[-1]["state"] in states, timeout_s, what=f"a status in {states} for {stamp}")
        return self.statuses[-1]

    def execute(self) -> Trigger.Response:
        return call_service(self.node, Trigger, "/manipulation_node/execute", Trigger.Request(), None, 10.0)

    def goals(self) -> int:
        return len(self.goal_ids["arm"]) + len(self.goal_ids["gripper"])

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("safety") / "fake_franka.log"
    with ros_domain():
        process = start_node("molmomotion_ros.nodes.fake_franka_node", "--params-file",
                             str(ROOT / "config" / "fake_franka.yaml"), "-p", "reset_on_start:=false",
                             "-p", "camera_rate_hz:=1.0", env=dict(os.environ), log_path=log_path)
        client = Client()
        try:
            yield SimpleNamespace(client=client, log=lambda: log_path.read_text()[-3000:])
        finally:
            client.close()
            stop(process)


@contextmanager
def manipulation_node(*args: str, activate: bool = True):
    """manipulation_node in this process, on the default context (initialised and shut down without naming it,
    so the next test gets a fresh one), spun on its own thread."""
    from molmomotion_ros.nodes.manipulation_node import ManipulationNode

    rclpy.init(args=["--ros-args", "--params-file", str(ROOT / "config" / "manipulation_node.yaml"),
                     "-p", "autostart:=false", *args])
    node = ManipulationNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        if activate:
            assert node.trigger_configure() == SUCCESS, node._configure_problem
            assert node.trigger_activate() == SUCCESS
            wait_until(lambda: node._observed.joints() is not None, 30, what="joint states in the node")
            node._frame_at = lambda t_ns: (None, None, node._observed.joints()[0].copy())  # the camera is not tested
        yield node
    finally:
        node.close()
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
        rclpy.try_shutdown()


def arm_q(node) -> np.ndarray:
    return node._observed.joints()[0].copy()


def move_arm(cell, node, target, duration_s: float = 1.0) -> None:
    """Move the fake arm on its controller's topic (not through the node) and wait until it is there."""
    q = arm_q(node)
    cell.client.fake_arm.publish(trajectory_msg([0.0, duration_s], [q, target], ARM))
    wait_until(lambda: np.abs(arm_q(node) - target).max() < 0.01, 10 + duration_s, what="the arm at its target")


def test_dry_run_previews_sends_nothing_until_execute_and_execute_refuses_with_reasons(cell):
    client = cell.client
    client.fresh_forecasts()
    box = [0.1, 0.9, -0.5, 0.5, -0.05, 0.9]
    with manipulation_node(*FRANKA, "-p", "execute:=false", "-p", "workspace_box_m:=[" + ",".join(map(str, box)) + "]",
                           "-p", "gripper_settle_s:=0.3") as node:
        # The planner honours planner.yaml's backend and the base-frame workspace box, moved into its world.
        assert node._manipulator.planner.config.backend == "ompl"
        assert node._manipulator.planner.config.workspace == WorkspaceBounds.from_base_box(box, ROBOT_BASE_M)
        assert set_parameters(client.node, "manipulation_node", lambda: time.sleep(0.02),
                              acceleration_scaling=0.3)[0].successful
        assert node._manipulator.skills.acceleration_scaling == 0.3
        move_arm(cell, node, HOME)
        q0 = arm_q(node)
        node._manipulator.plan = lambda depth, camera, q, *rest: reach_open_reach(q)
        goals = client.goals()

        stamp = client.forecast()
        status = client.status(stamp, ("planned", "failed"))
        assert status["state"] == "planned", status
        assert status["agent"] == "planner (ompl)" and "~/execute" in status["reason"]
        assert status["steps"] == ["approach", "open gripper", "lift"]
        wait_until(lambda: client.previews and client.markers, 10, what="the preview and the markers")
        preview = client.previews[-1]
        assert preview.header.frame_id == "world" and list(preview.joint_names) == ARM
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in preview.points]
        assert np.all(np.diff(times) > 0) and times[-1] == pytest.approx(1.0 + 0.3 + 1.0, abs=1e-6)
        # The plan starts from the joint state seen when planning: the simulated arm holds q0 within micro-radians.
        assert np.abs(np.array(preview.points[0].positions) - q0).max() < 1e-4
        assert np.abs(np.array(preview.points[-1].positions) - (q0 + STEP / 2)).max() < 1e-4
        markers = {(m.ns, m.id): m for m in client.markers[-1].markers}
        tcp = markers[("tcp_path", 0)]
        assert tcp.type == Marker.LINE_STRIP and tcp.header.frame_id == "world"
        assert len(tcp.points) == len(preview.points)
        start = np.array([tcp.points[0].x, tcp.points[0].y, tcp.points[0].z])
        q_start = np.array(preview.points[0].positions)  # the path is the preview's own samples by FK
        np.testing.assert_allclose(start, node._manipulator.kinematics.fk(q_start)[:3, 3], atol=1e-9)
        assert 0.2 < np.linalg.norm(start - ROBOT_BASE_M) < 1.0  # metres, in the world of the forecast
        assert sum(ns == "forecast" for ns, _ in markers) == 4 and markers[("gripper", 0)].text.startswith("open")

        time.sleep(1.5)
        assert client.goals() == goals, "a dry run sends no goal to the arm"
        assert np.abs(arm_q(node) - q0).max() < 0.005

        # Refused: the arm has moved from the plan's start (goals sent meanwhile on the controller's topic).
        move_arm(cell, node, q0 + np.array([0, 0, 0, 0, 0, 0, 0.2]))
        refused = client.execute()
        assert not refused.success and "has moved" in refused.message and "from the plan's start" in refused.message
        move_arm(cell, node, q0)
        # Carried out once, then there is no plan.
        answer = client.execute()
        assert answer.success, answer.message
        assert client.status(stamp, ("done", "failed"))["state"] == "done", client.statuses[-1]
        assert [s["state"] for s in client.statuses[-2:]] == ["executing", "done"]
        assert len(client.goal_ids["arm"]) + len(client.goal_ids["gripper"]) == goals + 3
        assert np.abs(arm_q(node) - (q0 + STEP / 2)).max() < 0.03, cell.log()
        again = client.execute()
        assert not again.success and again.message.startswith("no plan")

        # Refused: the plan has expired.
        stamp = client.forecast()
        assert client.status(stamp, ("planned", "failed"))["state"] == "planned"
        node.set_parameters([Parameter("plan_expiry_s", value=1.0)])
        time.sleep(1.2)
        expired = client.execute()
        assert not expired.success and "old (plan_expiry_s 1.0)" in expired.message, expired.message
        node.set_parameters([Parameter("plan_expiry_s", value=60.0)])

        # A goal the controller rejects ends the sequence "failed" with its reason; the next forecast is handled.
        node._manipulator.plan = lambda depth, camera, q, *rest: reach_open_reach(q, lift_starts_far=True)
        stamp = client.forecast()
        assert client.status(stamp, ("planned", "failed"))["state"] == "planned"
        goals = client.goals()
        assert client.execute().success
        failed = client.status(stamp, ("done", "failed", "stopped"))
        assert failed["state"] == "failed", failed
        assert failed["reason"].startswith("lift: /fr3_arm_controller/follow_joint_trajectory: the goal was rejected")
        assert client.goals() == goals + 2  # approach and gripper; the lift was refused
        node._manipulator.plan = lambda depth, camera, q, *rest: reach_open_reach(q)
        node.set_parameters([Parameter("execute", value=True)])  # runtime: the next forecast is executed at once
        stamp = client.forecast()
        assert client.status(stamp, ("done", "failed", "stopped"))["state"] == "done", client.statuses[-1]
        move_arm(cell, node, HOME)


def test_stale_joint_states_refuse_planning_and_each_step(cell):
    """Topic interface, joint states from the test: none for a while → refused before planning; they stop
    during the gripper step → the next step is not sent; fresh ones → the next forecast is carried out."""
    client = cell.client
    client.fresh_forecasts()
    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
    q = np.r_[HOME, 0.04, 0.04]
    publishing = threading.Event()

    def publish_joints():
        while not stopped.is_set():
            if publishing.is_set():
                client.fake_joints.publish(joint_state_msg(names, q, client.node.get_clock().now().to_msg()))
            time.sleep(0.02)

    stopped = threading.Event()
    publisher = threading.Thread(target=publish_joints, daemon=True)
    publishing.set()
    publisher.start()
    try:
        with manipulation_node("-r", "joint_states:=/test/joint_states", "-p", "max_joint_state_age_s:=0.3",
                               "-p", "gripper_settle_s:=0.6") as node:
            # The joints stop as soon as the gripper command arrives: the lift finds them 0.6 s old.
            node._manipulator.plan = lambda *args: planned([
                MotionStep("open gripper", gripper_opening_m=0.04), MotionStep("lift", timed(HOME, HOME + STEP))])
            grippers = len(client.grippers)
            publishing.clear()
            time.sleep(0.5)
            stamp = client.forecast()
            refused = client.status(stamp, ("failed", "planning", "done"))
            assert refused["state"] == "failed" and "joint_states is" in refused["reason"], refused
            assert "max_joint_state_age_s 0.3" in refused["reason"]
            assert len(client.grippers) == grippers  # not even the gripper moved

            publishing.set()
            time.sleep(0.2)
            watcher_done = threading.Event()

            def stop_joints_on_gripper_command():
                wait_until(lambda: len(client.grippers) > grippers, 30, what="the gripper command")
                publishing.clear()
                watcher_done.set()

            threading.Thread(target=stop_joints_on_gripper_command, daemon=True).start()
            stamp = client.forecast()
            failed = client.status(stamp, ("failed", "done"))
            assert watcher_done.is_set()
            assert failed["state"] == "failed"
            assert failed["reason"].startswith("lift: not sent: the newest joint_states"), failed
            assert client.trajectories == [], "no trajectory reached the arm"

            publishing.set()
            time.sleep(0.2)
            node._manipulator.plan = lambda *args: planned([MotionStep("open gripper", gripper_opening_m=0.04)])
            stamp = client.forecast()
            assert client.status(stamp, ("failed", "done"))["state"] == "done", client.statuses[-1]
    finally:
        stopped.set()
        publisher.join(2)


def test_planner_yamls_backend_is_honoured_and_moveit_py_says_what_is_missing(cell, tmp_path):
    text = (ROOT / "config" / "planner.yaml").read_text().replace("backend: ompl", "backend: moveit_py", 1)
    (tmp_path / "planner.yaml").write_text(text)
    with manipulation_node("-p", f"planner_config:={tmp_path / 'planner.yaml'}", activate=False) as node:
        assert node.trigger_configure() == FAILURE
        problem = node._configure_problem
        assert "moveit_py planner backend cannot start" in problem and "\n" not in problem
        assert "ros-jazzy-moveit-py" in problem and "moveit_config:=" in problem and "planner_backend:=ompl" in problem
    # An explicit planner_backend overrides the file.
    with manipulation_node("-p", f"planner_config:={tmp_path / 'planner.yaml'}", "-p", "planner_backend:=ompl",
                           activate=False) as node:
        assert node.trigger_configure() == SUCCESS, node._configure_problem
        assert node._report.agent == "planner (ompl)"
