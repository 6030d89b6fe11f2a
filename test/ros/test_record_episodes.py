"""Recording a simulated evaluation episode by episode, and the ground truth that makes each bag scorable.

sim_node's ``publish_ground_truth``: checked on a sim_node in this process (its reset called directly, its
topics heard by a probe node in the same context), on, off, and with an oracle that fails.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosutil import wait_until
from std_msgs.msg import String
from trajectory_msgs.msg import MultiDOFJointTrajectory

from molmomotion_ros.conversions import msg_to_ground_truth
from molmomotion_ros.conversions.joints import time_to_s
from molmomotion_sim.suites import load_suite
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
OPTIONS = {f.family: f.options for f in load_suite("main").families}


def start_pose(family: str, seed: int) -> np.ndarray:
    """The target's world pose (position, quaternion xyzw) after the harness's reset of (family, seed)."""
    with World() as world:
        task = TASKS[family](world, OPTIONS[family])
        task.reset(seed)
        position, orientation = world.client.getBasePositionAndOrientation(task.target.body_id)
    return np.r_[position, orientation]


class InProcessSim:
    """A sim_node and a probe node in one context, spun by one executor thread; resets run on the sim thread."""

    def __init__(self, **parameters):
        from molmomotion_ros.nodes.sim_node import SimNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter(k, value=v) for k, v in {"reset_on_start": False, "camera_rate_hz": 5.0,
                                                         **parameters}.items()]
        self.node = SimNode(context=self.context, parameter_overrides=overrides)
        self.probe = rclpy.create_node("ground_truth_probe", context=self.context)
        self.messages: dict[str, list] = defaultdict(list)
        for topic, msg_type in (("sim/episode", String), ("sim/ground_truth", MultiDOFJointTrajectory),
                                ("camera/pose", PoseStamped)):
            self.probe.create_subscription(msg_type, topic, self.messages[topic].append, LATCHED)
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self.messages["/diagnostics"].append, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self._spinning = threading.Thread(target=self._spin, daemon=True)
        self._spinning.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 (the context went down under the executor at close)
                return

    def reset(self, family: str, seed: int) -> dict:
        return self.node._in_simulation(lambda: self.node._reset("main", family, seed))

    def ground_truth_status(self) -> DiagnosticStatus | None:
        for array in reversed(self.messages["/diagnostics"]):
            for status in array.status:
                if status.name == "sim_node: ground_truth":
                    return status
        return None

    def close(self) -> None:
        self.node.close()
        rclpy.try_shutdown(context=self.context)
        self._spinning.join(5.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.probe.destroy_node()


@pytest.fixture
def in_process_sim(ros_env):
    sims = []

    def make(**parameters) -> InProcessSim:
        sims.append(InProcessSim(**parameters))
        return sims[-1]

    yield make
    for sim in sims:
        sim.close()


def test_sim_node_publishes_the_ground_truth_at_each_reset_only_when_asked(in_process_sim):
    sim = in_process_sim(publish_ground_truth=False, diagnostics_period_s=0.2)
    episode = sim.reset("stack", 110_003)
    assert episode["family"] == "stack"
    wait_until(lambda: sim.messages["sim/episode"], 15, what="sim/episode")
    wait_until(lambda: sim.ground_truth_status() is not None, 15, what="a ground_truth diagnostic")
    assert sim.ground_truth_status().message.startswith("off")
    assert sim.node.count_publishers("/sim/ground_truth") == 0  # off: the topic is not in the graph at all
    assert not sim.messages["sim/ground_truth"]

    # On at runtime: the next reset computes and publishes it, stamped as camera/pose at the reset.
    assert sim.node.set_parameters([Parameter("publish_ground_truth", value=True)])[0].successful
    wait_until(lambda: sim.probe.count_subscribers("/sim/ground_truth") and
               sim.node.count_publishers("/sim/ground_truth") == 1, 15, what="the sim/ground_truth publisher")
    sim.reset("place-in-container", 110_001)
    wait_until(lambda: sim.messages["sim/ground_truth"], 15, what="sim/ground_truth")
    (truth,) = sim.messages["sim/ground_truth"]
    times_s, poses = msg_to_ground_truth(truth)
    assert times_s[0] == 0 and np.allclose(np.diff(times_s), 1 / 15, atol=1e-6) and len(times_s) > 15
    assert np.abs(poses[0, :3] - start_pose("place-in-container", 110_001)[:3]).max() < 1e-3
    assert np.abs(poses[-1, :3] - poses[0, :3]).max() > 0.05  # the oracle carried the target somewhere
    assert truth.header.frame_id == "world"
    stamp_s = time_to_s(truth.header.stamp)
    wait_until(lambda: any(time_to_s(m.header.stamp) == stamp_s for m in sim.messages["camera/pose"]), 15,
               what="the reset's camera/pose with the ground truth's stamp")
    assert json.loads(sim.messages["sim/episode"][-1].data)["seed"] == 110_001
    wait_until(lambda: "place-in-container seed 110001" in sim.ground_truth_status().message, 15,
               what="the diagnostic naming the episode")
    assert sim.ground_truth_status().level == DiagnosticStatus.OK

    # Off again: the next reset publishes none.
    assert sim.node.set_parameters([Parameter("publish_ground_truth", value=False)])[0].successful
    sim.reset("stack", 110_003)
    wait_until(lambda: len(sim.messages["sim/episode"]) == 3, 15, what="the third sim/episode")
    wait_until(lambda: sim.ground_truth_status().message.startswith("off"), 15, what="the diagnostic 'off'")
    assert len(sim.messages["sim/ground_truth"]) == 1


def test_a_ground_truth_that_cannot_be_computed_is_a_warning_and_the_episode_runs(in_process_sim, monkeypatch):
    from molmomotion_ros.nodes import sim_node
    from molmomotion_sim.tasks.base import SceneError

    class FailingOracle:
        def trace(self, family, seed, options):
            raise SceneError(f"{family} seed {seed}: the oracle found no grasp")

        def close(self):
            pass

    monkeypatch.setattr(sim_node, "GroundTruthOracle", FailingOracle)
    sim = in_process_sim(publish_ground_truth=True, diagnostics_period_s=60.0)
    episode = sim.reset("stack", 110_003)
    assert episode["seed"] == 110_003 and sim.node._task is not None  # the episode is there, to be run and judged
    wait_until(lambda: sim.messages["sim/episode"], 15, what="sim/episode")
    # The warning is published at once (not at the next period, 60 s away).
    wait_until(lambda: getattr(sim.ground_truth_status(), "level", None) == DiagnosticStatus.WARN, 15,
               what="the ground_truth diagnostic's warning")
    status = sim.ground_truth_status()
    assert "no ground truth for stack seed 110003: SceneError: stack seed 110003: the oracle found no grasp" in \
        status.message
    assert not sim.messages["sim/ground_truth"]
    assert sim.node._in_simulation(sim.node._judge)["reason"]  # judged as any episode
