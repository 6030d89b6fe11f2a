"""episode_runner: runs a suite's episodes through the ROS graph and writes the harness's results JSON.

The simulator is the node named by ``simulator``: sim_node (the simulated graphs) or fake_franka (the simulated
Franka cell, driven through the real_arm graph); both offer ``~/reset`` and ``~/success`` (std_srvs/Trigger, JSON
answers) and the ``suite``/``family``/``seed`` parameters. Before the first episode the runner waits for the
simulator's services and until every managed node of its graph (``managed_nodes``) reports 'active' on its
lifecycle ``~/get_state``: the models are loaded and the nodes subscribed, so the first instruction reaches them.
For each episode it sets the simulator's episode parameters (the standard set_parameters service), calls
``<simulator>/reset`` (names relative to the runner's namespace); the instruction is then published by sim_node
itself, or by the runner from the reset's answer with ``publish_instruction`` (fake_franka, like a real cell,
publishes none); the forecaster forecasts, manipulation_node plans and moves or policy_node runs its policy. The
runner waits on ``manipulation/status`` for the outcome of a forecast made after the reset, lets the scene settle
for ``settle_s`` and asks ``<simulator>/success``. Settling counts seconds of ``/clock`` when the simulator
publishes one (sim_node; fake_franka with clock:=sim), else wall-clock seconds (fake_franka's default, a real
cell's clock). Like the in-process
harness, an executed attempt that did not succeed is retried (the instruction is published again, so a new forecast
is made from the new scene) up to the family's ``max_steps``; an attempt that could not be planned ends the episode,
and so does one the status marks ``"retryable": false`` (a learned policy's closed-loop episode, one attempt as in
the harness). Results: :func:`molmomotion_sim.evaluation.write_results` (same JSON as ``molmomotion sim-eval``) and
the same success table on stdout.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String
from std_srvs.srv import Trigger

from molmomotion_sim import evaluation
from molmomotion_sim.episode import EpisodeResult
from molmomotion_sim.suites import load_suite
from molmomotion_sim.tasks import TASKS

from ..node_specs.episode_runner import EPISODE_RUNNER
from .lifecycle_manager import wait_until_active
from .params import declare_parameters
from .runtime import StartupError, run_node

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class GraphNotReady(StartupError):
    """A service of the simulator did not appear, or a managed node did not become active."""


def _string_param(name: str, value: str) -> Parameter:
    return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))


def _int_param(name: str, value: int) -> Parameter:
    return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value))


class EpisodeRunnerNode(Node):
    """A plain node: it loads nothing and drives no hardware; it is a job that ends (run_node's ``work``)."""

    def __init__(self) -> None:
        super().__init__("episode_runner")
        self.params = declare_parameters(self, EPISODE_RUNNER)
        simulator = self.params["simulator"]
        self._set_params = self.create_client(SetParameters, f"{simulator}/set_parameters")
        self._reset = self.create_client(Trigger, f"{simulator}/reset")
        self._success = self.create_client(Trigger, f"{simulator}/success")
        self._pub_instruction = self.create_publisher(String, "instruction", LATCHED)
        self._cond = threading.Condition()
        self._status: dict | None = None
        self._status_count = 0  # statuses received: a relayed forecaster failure carries no forecast stamp
        self._sim_time_s: float | None = None  # the newest /clock; None: none heard, settle on the wall clock
        self.create_subscription(String, "manipulation/status", self._on_status, LATCHED)
        self.create_subscription(Clock, "/clock", self._on_clock, 10)

    def _on_status(self, msg: String) -> None:
        with self._cond:
            self._status = json.loads(msg.data)
            self._status_count += 1
            self._cond.notify_all()

    def _on_clock(self, msg: Clock) -> None:
        with self._cond:
            self._sim_time_s = msg.clock.sec + msg.clock.nanosec * 1e-9
            self._cond.notify_all()

    # --- service calls (the executor spins in another thread) -------------------------------------
    def wait_for_graph(self) -> None:
        """The simulator's services, then every managed node 'active' (the simulator is a plain node: its
        services are there once it runs). The first episode's instruction must not reach a node still loading
        its model."""
        timeout_s = self.params["startup_timeout_s"]
        end = time.monotonic() + timeout_s
        for client in (self._set_params, self._reset, self._success):
            if not client.wait_for_service(timeout_sec=max(0.0, end - time.monotonic())):
                raise GraphNotReady(f"{client.srv_name} did not appear within {timeout_s:.0f} s; is "
                                    f"{self.params['simulator']} running?")
        managed = [name.strip() for name in self.params["managed_nodes"].split(",") if name.strip()]
        start = time.monotonic()
        try:
            wait_until_active(self, managed, max(0.0, end - time.monotonic()))
        except StartupError as err:
            raise GraphNotReady(str(err)) from None
        self.get_logger().info(f"{', '.join(managed)} active after {time.monotonic() - start:.1f} s")

    def _call(self, client, request, timeout_s: float = 60.0):
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout_s):
            raise TimeoutError(f"{client.srv_name} did not answer within {timeout_s:.0f} s")
        return future.result()

    def _wait(self, predicate, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout=timeout_s)

    # --- one episode --------------------------------------------------------------------------
    def run_episode(self, suite_name: str, family: str, seed: int) -> EpisodeResult:
        start = time.perf_counter()
        timeout = self.params["episode_timeout_s"]

        def result(success: bool, reason: str, steps: int, instruction: str, sim_time_s: float = 0.0):
            return EpisodeResult(seed=seed, family=family, instruction=instruction, success=success,
                                 failure_reason="" if success else reason, steps=steps, sim_time_s=sim_time_s,
                                 wall_time_s=time.perf_counter() - start, agent=self.agent,
                                 model_id=self.model_id)

        request = SetParameters.Request(parameters=[_string_param("suite", suite_name),
                                                    _string_param("family", family), _int_param("seed", seed)])
        answer = self._call(self._set_params, request)
        refused = [r.reason for r in answer.results if not r.successful]
        if refused:
            return result(False, f"{self.params['simulator']} refused the episode parameters: "
                          f"{'; '.join(refused)}", 0, "")
        with self._cond:
            # Only a forecast newer than every one handled so far belongs to this episode (the
            # forecaster forecasts from frames taken after the instruction that the reset publishes).
            after_s = (self._status or {}).get("forecast_stamp") or -1.0
            seen = self._status_count
        reset = self._call(self._reset, Trigger.Request())
        if not reset.success:
            return result(False, f"reset failed: {reset.message}", 0, "")
        episode = json.loads(reset.message)
        instruction = episode.get("instruction", "")
        steps = 0
        for attempt in range(TASKS[family].max_steps):
            if attempt or self.params["publish_instruction"]:  # a retry: a new forecast from the new scene
                with self._cond:
                    seen = self._status_count
                self._pub_instruction.publish(String(data=instruction))
            deadline = start + timeout

            def finished(after=after_s, seen=seen) -> bool:
                # The outcome of a forecast made after the reset (a dry run's "planned" ends the episode too), or
                # the forecaster's refusal of this episode's instruction, relayed without a forecast stamp.
                s = self._status
                if s is None or s.get("state") not in ("done", "failed", "stopped", "planned"):
                    return False
                if s.get("source") == "forecaster":
                    return self._status_count > seen
                return (s.get("forecast_stamp") or -1.0) > after

            if not self._wait(finished, max(0.0, deadline - time.perf_counter())):
                return result(False, f"timed out after {timeout:.0f} s waiting for the manipulation node", steps,
                              instruction)
            with self._cond:
                status = dict(self._status)
            self.agent = status.get("agent", self.agent)
            if status["state"] != "done":
                return result(False, status.get("reason") or status["state"], steps, instruction)
            steps += 1
            after_s = status["forecast_stamp"]  # a retry waits for a newer forecast
            self._settle(max(1.0, deadline - time.perf_counter()))
            judged = json.loads(self._call(self._success, Trigger.Request()).message)
            if judged["success"]:
                return result(True, "", steps, instruction, judged.get("sim_time_s", 0.0))
            reason = judged.get("reason", "goal not reached")
            if status.get("retryable", True) is False:
                if status.get("reason"):
                    reason = f"{reason} ({status['reason']})"
                break
        return result(False, reason, steps, instruction, judged.get("sim_time_s", 0.0))

    def _settle(self, timeout_s: float) -> None:
        """Wait ``settle_s`` of /clock time, or of wall-clock time when no /clock has been heard."""
        with self._cond:
            start_s = self._sim_time_s
        if start_s is None:
            time.sleep(min(self.params["settle_s"], timeout_s))
            return
        until_s = start_s + self.params["settle_s"]
        self._wait(lambda: self._sim_time_s >= until_s, timeout_s)

    model_id = "graph:forecaster_node+manipulation_node"
    agent = "graph-planner"  # replaced by the manipulation node's own label from its status


def run(node: EpisodeRunnerNode) -> int:
    params = node.params
    suite = load_suite(params["suite"])
    families = [f for f in params["families"].split(",") if f.strip()] or None
    if families or params["episodes_per_family"]:
        suite = suite.select(families=families, episodes_per_family=params["episodes_per_family"] or None)
    node.wait_for_graph()
    episodes = suite.episodes()
    results = []
    bar = evaluation._progress_bar(len(episodes), f"{suite.name} (ROS graph)", params["progress"])
    start = time.perf_counter()
    with bar:
        for spec in episodes:
            results.append(node.run_episode(params["suite"], spec.family, spec.seed))
            bar.update(1)
            bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
    wall_time_s = time.perf_counter() - start
    out = Path(params["out"])
    meta = {"agent": node.agent, "via": "ros-graph", "suite": suite.name, "suite_file": suite.source,
            "split": suite.split, "episodes": len(results), "wall_time_s": round(wall_time_s, 3)}
    evaluation.write_results(out, results, meta)
    print(evaluation.format_table(evaluation.summarize(results)))
    print(f"{len(results)} episodes through the ROS graph in {wall_time_s:.1f} s; results: {out}", flush=True)
    return 0


def main(args=None) -> None:
    run_node(EPISODE_RUNNER.name, EpisodeRunnerNode, args, work=run)


if __name__ == "__main__":
    main()
