"""forecaster_node in its own process, fed real rendered frames over DDS by this test process (no mocks).

One node serves the module (model load ≈ 10 s; the lifecycle tests start their own); every bad-input case is
followed by a good request that must be answered correctly, so each case also shows the node recovers.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point32, Polygon, PolygonStamped, PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from rosutil import (
    ROOT,
    change_state,
    configure_problem,
    lifecycle_state,
    ros_domain,
    set_parameters,
    start_node,
    stop,
    wait_until,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32MultiArray, String
from trajectory_msgs.msg import MultiDOFJointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from molmomotion_ros import conversions as conv
from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.node_specs.forecaster import DEFAULT_T_WORLD_CAMERA
from molmomotion_ros.paths import config_path

MODULE = "molmomotion_ros.nodes.forecaster_node"
PARAMS = str(ROOT / "config" / "forecaster_node.yaml")
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATUS_HISTORY = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
FORECAST_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def scene():
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    with World() as world:
        task = TASKS["place-in-container"](world)
        task.reset(110_000)
        obs = world.render(world.camera)
        target_mask = obs.segmentation == task.target.body_id
        yield {"obs": obs, "instruction": task.instruction, "target_center_m": world.object_center(task.target),
               "goal_center_m": np.asarray(task.goal_center_m), "target_mask": target_mask}


class Harness:
    """This process's side of the graph: camera publishers, instruction, and recorders of every output."""

    def __init__(self, context, obs):
        self.obs = obs
        self.node = rclpy.create_node("forecaster_test", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        n = self.node
        self.pub_color = n.create_publisher(Image, "camera/color/image_raw", qos_profile_sensor_data)
        self.pub_depth = n.create_publisher(Image, "camera/depth/image_raw", qos_profile_sensor_data)
        self.pub_info = n.create_publisher(CameraInfo, "camera/color/camera_info", qos_profile_sensor_data)
        self.pub_pose = n.create_publisher(PoseStamped, "camera/pose", LATCHED)
        self.pub_instruction = n.create_publisher(String, "instruction", LATCHED)
        self.pub_query = n.create_publisher(PolygonStamped, "query_points", 10)
        self.received = {name: [] for name in ("trajectory", "hypotheses", "scores", "goal", "markers", "diag",
                                               "status")}
        for name, msg_type, topic in (("trajectory", MultiDOFJointTrajectory, "forecast/trajectory"),
                                      ("hypotheses", MultiDOFJointTrajectory, "forecast/hypotheses"),
                                      ("scores", Float32MultiArray, "forecast/scores"),
                                      ("goal", PoseStamped, "forecast/goal_pose"),
                                      ("markers", MarkerArray, "forecast/markers"),
                                      ("diag", DiagnosticArray, "/diagnostics"),
                                      ("status", String, "forecast/status")):
            # forecast/status: latched, and deep enough that a refusal followed at once by a publication (a frame
            # still in flight from the previous test) is not overwritten between two spins.
            qos = 10 if name == "diag" else STATUS_HISTORY if name == "status" else LATCHED
            n.create_subscription(msg_type, topic, self.received[name].append, qos)

    def spin(self) -> None:
        self.executor.spin_once(timeout_sec=0.02)

    def now(self):
        return self.node.get_clock().now().to_msg()

    def send_frame(self, stamp=None, rgb=None, depth_m=None, depth_encoding="16UC1", color_encoding=None,
                   info=True, pose=True):
        """One camera frame (default: the rendered scene, fresh stamp); returns its stamp."""
        obs = self.obs
        stamp = stamp or self.now()
        frame = obs.camera.frame_id
        color = conv.rgb_to_msg(obs.rgb if rgb is None else rgb, stamp, frame)
        if color_encoding:
            color.encoding = color_encoding
        depth_m = obs.depth_m if depth_m is None else depth_m
        if pose:
            self.pub_pose.publish(conv.pose_stamped(obs.camera.T_world_cam, stamp, "world"))
        if info:
            self.pub_info.publish(conv.camera_info_msg(obs.camera, stamp, frame))
        self.pub_depth.publish(conv.depth_to_msg(depth_m, stamp, frame, encoding=depth_encoding))
        self.pub_color.publish(color)
        return stamp

    def instruct(self, text: str) -> None:
        self.pub_instruction.publish(String(data=text))

    def stream_until(self, predicate, what: str, timeout_s: float = FORECAST_TIMEOUT_S, period_s: float = 0.1,
                     **frame_kwargs) -> list:
        """Publish frames every ``period_s`` until ``predicate(stamps)`` holds; returns the stamps sent."""
        stamps, last = [], -np.inf

        def done():
            nonlocal last
            if time.monotonic() - last >= period_s:
                stamps.append(self.send_frame(**frame_kwargs))
                last = time.monotonic()
            return predicate(stamps)

        try:
            wait_until(done, timeout_s, spin=self.spin, what=what)
        except TimeoutError as err:
            raise AssertionError(f"{err}; node log:\n{self.node_log()}") from None
        return stamps

    def node_log(self) -> str:
        """The node's log tail, after asking it for every thread's stack (SIGUSR1 → faulthandler)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGUSR1)
            time.sleep(0.5)  # the dump is written by the node process; give it a moment
        return self.log_path.read_text()[-6000:]

    def forecast_for(self, stamps) -> MultiDOFJointTrajectory | None:
        keys = {(s.sec, s.nanosec) for s in stamps}
        for msg in self.received["trajectory"]:
            if (msg.header.stamp.sec, msg.header.stamp.nanosec) in keys:
                return msg
        return None

    def good_forecast(self, instruction: str | None = None, **frame_kwargs) -> MultiDOFJointTrajectory:
        """(Optionally instruct, then) stream good frames until a forecast for one of them arrives."""
        self.received["trajectory"].clear()
        if instruction is not None:
            self.instruct(instruction)
        stamps = self.stream_until(lambda stamps: self.forecast_for(stamps) is not None, "a forecast",
                                   **frame_kwargs)
        return self.forecast_for(stamps)

    def diagnostic(self, problem: str):
        for array in self.received["diag"]:
            for status in array.status:
                if any(kv.key == "problem" and kv.value == problem for kv in status.values):
                    return status
        return None

    def wait_diagnostic(self, problem: str, send=None) -> DiagnosticStatus:
        """Wait for a diagnostic naming ``problem`` (calling ``send()`` every 0.1 s meanwhile)."""
        self.received["diag"].clear()
        last = -np.inf

        def seen():
            nonlocal last
            if send is not None and time.monotonic() - last >= 0.1:
                send()
                last = time.monotonic()
            return self.diagnostic(problem) is not None

        try:
            wait_until(seen, 15.0, spin=self.spin, what=f"a diagnostic for {problem}")
        except TimeoutError as err:
            raise AssertionError(f"{err}; node log:\n{self.node_log()}") from None
        return self.diagnostic(problem)


@pytest.fixture(scope="module")
def graph(scene, tmp_path_factory):
    """The forecaster node (extrinsics from camera/pose, 1 torch thread) and this process's harness."""
    log_path = tmp_path_factory.mktemp("forecaster") / "node.log"
    with ros_domain():
        env = dict(os.environ)
        process = start_node(MODULE, "--params-file", PARAMS, "-p", "extrinsics_source:=topic",
                             "-p", "torch_threads:=1", env=env, log_path=log_path)
        context = rclpy.Context()
        rclpy.init(context=context)
        harness = Harness(context, scene["obs"])
        harness.log_path, harness.process = log_path, process
        try:
            wait_until(lambda: harness.pub_color.get_subscription_count() > 0 or process.poll() is not None, 60.0,
                       spin=harness.spin, what="the forecaster node's subscription")
            assert process.poll() is None, log_path.read_text()
            yield harness
        finally:
            harness.node.destroy_node()
            rclpy.try_shutdown(context=context)
            status = stop(process)
            assert status in (0, -2), f"node exited with {status}:\n{log_path.read_text()}"


def polygon_msg(uv: np.ndarray) -> PolygonStamped:
    """Query points as pixels: x = u, y = v."""
    return PolygonStamped(polygon=Polygon(points=[Point32(x=float(u), y=float(v)) for u, v in uv]))


def check_forecast(msg: MultiDOFJointTrajectory, scene, tolerance_m: float = 0.04) -> None:
    assert msg.header.frame_id == "world"
    assert list(msg.joint_names) == [f"point_{i}" for i in range(8)]
    points_t0, tracks, times = conv.msg_to_forecast_tracks(msg)
    assert points_t0.shape == (8, 3) and tracks.shape == (8, 32, 3) and times.shape == (32,)
    assert np.allclose(times, 2 * (np.arange(32) + 1) / 15.0, atol=1e-6)
    distances = np.linalg.norm(points_t0 - scene["target_center_m"], axis=1)
    assert distances.max() < tolerance_m, f"t0 points {distances} m from the target centre"
    assert np.linalg.norm(points_t0.mean(0) - scene["target_center_m"]) < 0.03


# --- the lifecycle: these start their own node (before the module's node starts, the file's first tests) ------
@pytest.mark.parametrize(("args", "message"), [
    (("-p", "mode:=sometimes"), "mode"),
])
def test_a_bad_configuration_leaves_the_node_unconfigured_with_the_reason(ros_env, tmp_path, args, message):
    log_path = tmp_path / "node.log"
    process = start_node(MODULE, "--params-file", PARAMS, *args, env=ros_env, log_path=log_path)
    context = rclpy.Context()
    rclpy.init(context=context)
    probe = rclpy.create_node("forecaster_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    diagnostics = []
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)

    def spin():
        executor.spin_once(timeout_sec=0.02)

    try:
        wait_until(lambda: configure_problem(diagnostics, "forecaster_node") or process.poll() is not None, 60, spin,
                   "the configure failure on /diagnostics")
        assert process.poll() is None, log_path.read_text()
        assert message in configure_problem(diagnostics, "forecaster_node")
        assert lifecycle_state(probe, "forecaster_node", spin) == "unconfigured"
        assert stop(process) == 0
    finally:
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
        stop(process)
    errors = [line for line in log_path.read_text().splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in log_path.read_text()


def test_lifecycle_bad_checkpoint_then_fixed_activate_deactivate(scene, ros_env, tmp_path):
    """A bad model path: configure fails with the reason and the node stays up, unconfigured; with the parameter
    fixed, configure loads the model; active, it subscribes and forecasts; inactive, it neither subscribes nor
    publishes; active again, it forecasts again."""
    log_path = tmp_path / "node.log"
    process = start_node(MODULE, "--params-file", PARAMS, "-p", "extrinsics_source:=topic", "-p", "torch_threads:=1",
                         "-p", "checkpoint:=/nonexistent/forecaster.pt", env=ros_env, log_path=log_path)
    context = rclpy.Context()
    rclpy.init(context=context)
    harness = Harness(context, scene["obs"])
    harness.log_path, harness.process = log_path, process
    spin = harness.spin
    try:
        wait_until(lambda: configure_problem(harness.received["diag"], "forecaster_node") or process.poll() is not None,
                   60, spin, "the configure failure on /diagnostics")
        assert "/nonexistent/forecaster.pt" in configure_problem(harness.received["diag"], "forecaster_node")
        assert process.poll() is None and lifecycle_state(harness.node, "forecaster_node", spin) == "unconfigured"
        assert "/nonexistent/forecaster.pt" in log_path.read_text()

        # A configure-time (read-only) parameter may be set while unconfigured, not once configured.
        assert set_parameters(harness.node, "forecaster_node", spin, checkpoint="")[0].successful
        assert change_state(harness.node, "forecaster_node", "configure", spin), log_path.read_text()
        assert lifecycle_state(harness.node, "forecaster_node", spin) == "inactive"
        refused = set_parameters(harness.node, "forecaster_node", spin, checkpoint="/other.pt")[0]
        assert not refused.successful and "unconfigured" in refused.reason
        assert harness.pub_color.get_subscription_count() == 0  # inactive: not subscribed yet

        assert change_state(harness.node, "forecaster_node", "activate", spin)
        check_forecast(harness.good_forecast(scene["instruction"]), scene)

        assert change_state(harness.node, "forecaster_node", "deactivate", spin)
        assert lifecycle_state(harness.node, "forecaster_node", spin) == "inactive"
        wait_until(lambda: harness.pub_color.get_subscription_count() == 0, 10, spin, "the camera unsubscribed")
        harness.received["trajectory"].clear()
        harness.instruct(scene["instruction"])
        end = time.monotonic() + 2.0
        wait_until(lambda: harness.send_frame() and time.monotonic() > end, 10, spin, "2 s of frames")
        assert not harness.received["trajectory"], "an inactive node published a forecast"

        assert change_state(harness.node, "forecaster_node", "activate", spin)
        check_forecast(harness.good_forecast(scene["instruction"]), scene)
        assert stop(process) == 0, log_path.read_text()
    finally:
        harness.node.destroy_node()
        rclpy.try_shutdown(context=context)
        stop(process)
    assert "Traceback" not in log_path.read_text()


def test_forecast_arrives_in_world_frame_on_target(graph, scene):
    msg = graph.good_forecast(scene["instruction"])
    check_forecast(msg, scene)
    stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)

    def outputs_for_stamp():
        return (any((h.header.stamp.sec, h.header.stamp.nanosec) == stamp for h in graph.received["hypotheses"])
                and any((g.header.stamp.sec, g.header.stamp.nanosec) == stamp for g in graph.received["goal"])
                and any(m.markers and (m.markers[-1].header.stamp.sec, m.markers[-1].header.stamp.nanosec) == stamp
                        for m in graph.received["markers"]) and graph.received["scores"] and ok_statuses())

    def ok_statuses():
        return [s for a in graph.received["diag"] for s in a.status if s.name == "forecaster_node: forecast"]

    wait_until(outputs_for_stamp, 10.0, spin=graph.spin, what="hypotheses, goal pose, markers, scores, diagnostics")
    hypotheses = next(h for h in graph.received["hypotheses"]
                      if (h.header.stamp.sec, h.header.stamp.nanosec) == stamp)
    points_t0, tracks, _ = conv.msg_to_forecast_hypotheses(hypotheses)
    assert tracks.shape == (8, 8, 32, 3) and hypotheses.header.frame_id == "world"
    assert np.allclose(tracks[0], conv.msg_to_forecast_tracks(msg)[1], atol=1e-6)  # h0 is the best
    assert conv.msg_to_scores(graph.received["scores"][-1]).shape == (8,)
    goal = next(g for g in graph.received["goal"] if (g.header.stamp.sec, g.header.stamp.nanosec) == stamp)
    assert goal.header.frame_id == "world"
    goal_error_m = np.linalg.norm(conv.pose_to_matrix(goal.pose)[:3, 3] - scene["goal_center_m"])
    assert goal_error_m < 0.10, f"goal pose {goal_error_m:.3f} m from the container"
    markers = next(m for m in graph.received["markers"] if m.markers[-1].header.stamp.sec == stamp[0])
    assert markers.markers[0].action == Marker.DELETEALL
    assert {m.ns for m in markers.markers[1:]} == {"forecast_best", "forecast_hypotheses", "forecast_t0",
                                                   "forecast_goal"}
    assert ok_statuses()[-1].level == DiagnosticStatus.OK


def test_32fc1_depth_and_query_points(graph, scene):
    """Depth in metres works too; query points given as pixels replace grounding."""
    v, u = np.nonzero(scene["target_mask"])
    pick = np.linspace(0, len(u) - 1, 8).astype(int)
    uv = np.c_[u[pick], v[pick]].astype(float)
    obs = scene["obs"]
    expected = obs.camera.cam_to_world(obs.camera.deproject(uv, obs.depth_m[v[pick], u[pick]]))
    graph.pub_query.publish(polygon_msg(uv))
    graph.received["trajectory"].clear()
    graph.instruct(scene["instruction"])

    def forecast_from_query_points(stamps):
        msg = graph.forecast_for(stamps)
        if msg is not None and not np.allclose(conv.msg_to_forecast_tracks(msg)[0], expected, atol=1e-3):
            graph.received["trajectory"].remove(msg)  # made before the query points arrived: wait for the next
            graph.instruct(scene["instruction"])
            return False
        return msg is not None

    stamps = graph.stream_until(forecast_from_query_points, "a forecast from the query points",
                                depth_encoding="32FC1")
    check_forecast(graph.forecast_for(stamps), scene)
    graph.pub_query.publish(PolygonStamped())  # empty: back to grounding


@pytest.mark.parametrize("problem", ["color_image", "size_mismatch", "no_depth", "no_depth_16uc1_zero",
                                     "unmatched_camera_info", "stale_frame"])
def test_bad_frames_are_reported_and_the_next_good_frame_served(graph, scene, problem):
    obs = scene["obs"]
    frame_kwargs = {
        "color_image": {"color_encoding": "yuv422"},
        "size_mismatch": {"depth_m": obs.depth_m[::2, ::2].copy()},
        "no_depth": {"depth_m": np.full_like(obs.depth_m, np.nan), "depth_encoding": "32FC1"},
        "no_depth_16uc1_zero": {"depth_m": np.zeros_like(obs.depth_m)},  # 16UC1 zeros = no return
        "unmatched_camera_info": {"info": False},
        "stale_frame": {},
    }[problem]
    if problem == "stale_frame":
        old = graph.node.get_clock().now().nanoseconds - 10 * 10**9
        frame_kwargs["stamp"] = Time(nanoseconds=old).to_msg()
    graph.instruct(scene["instruction"])  # a new instruction: the bad frames must not use it up
    status = graph.wait_diagnostic(problem.replace("_16uc1_zero", ""), send=lambda: graph.send_frame(**frame_kwargs))
    assert status.level == DiagnosticStatus.WARN and status.name.startswith("forecaster_node: camera/")
    assert graph.process.poll() is None
    # Stamp the good frames more than sync_tolerance_s after the last bad one: sent 4 ms apart, a colour image
    # sent without camera_info was matched, rightly, with the next frame's camera_info and served.
    time.sleep(0.05)
    check_forecast(graph.good_forecast(), scene)  # the pending instruction is served by the next good frame


@pytest.mark.parametrize(("problem", "text"), [("instruction_empty", "   "),
                                               ("instruction_too_long", "put the red cube in the bowl " * 350),  # 10 kB
                                               ("instruction_unknown_object", "pick up the zebra and feed it"),
                                               # instruction_parser (molmomotion_ros/language.py) refusals
                                               ("instruction_unsupported_action", "throw the red cube"),
                                               ("instruction_several_objects",
                                                "put the red cube and the blue duck in the bowl")])
def test_bad_instructions_are_refused(graph, scene, problem, text):
    graph.received["status"].clear()
    status = graph.wait_diagnostic(problem, send=lambda: graph.instruct(text))
    assert status.level == DiagnosticStatus.WARN and status.name == "forecaster_node: instruction"
    assert len(status.message) <= 300
    assert graph.process.poll() is None
    # forecast/status says what became of it (the arm nodes relay it onto manipulation/status)
    try:
        wait_until(lambda: any(json.loads(m.data)["state"] == "refused" for m in graph.received["status"]), 10.0,
                   spin=graph.spin, what="'refused' on forecast/status")
    except TimeoutError as err:
        statuses = [m.data for m in graph.received["status"]]
        raise AssertionError(f"{err}; statuses heard: {statuses}; node log:\n{graph.node_log()}") from None
    refused = next(json.loads(m.data) for m in graph.received["status"] if json.loads(m.data)["state"] == "refused")
    assert refused["reason"] == status.message
    check_forecast(graph.good_forecast(scene["instruction"]), scene)
    wait_until(lambda: json.loads(graph.received["status"][-1].data)["state"] == "published", 10.0, spin=graph.spin,
               what="'published' on forecast/status")
    assert json.loads(graph.received["status"][-1].data)["instruction"] == scene["instruction"]


def test_a_reworded_instruction_is_forecast_from_its_template_phrasing(graph, scene):
    """instruction_parser: the status names the instruction as given and what the forecaster was given."""
    from molmomotion_ros.language import canonical, parse_instruction

    reworded = f"um, could you please {scene['instruction']} for me, thanks"
    expected = canonical(parse_instruction(scene["instruction"], fallback=False))
    graph.received["status"].clear()
    check_forecast(graph.good_forecast(reworded), scene)
    wait_until(lambda: any(json.loads(m.data)["state"] == "waiting" for m in graph.received["status"]), 10.0,
               spin=graph.spin, what="'waiting' on forecast/status")
    waiting = next(json.loads(m.data) for m in graph.received["status"] if json.loads(m.data)["state"] == "waiting")
    assert waiting["instruction"] == reworded and waiting["understood_as"] == expected


def test_an_instruction_from_a_volatile_publisher_is_forecast_once(graph, scene):
    """`ros2 topic pub --once` publishers are volatile, which a transient-local subscription alone never hears;
    the node hears both kinds, and a latched instruction (heard on both of its subscriptions) counts once."""
    volatile = graph.node.create_publisher(String, "instruction", 10)
    try:
        wait_until(lambda: volatile.get_subscription_count() > 0, 10.0, spin=graph.spin,
                   what="the node's volatile reader")
        graph.received["trajectory"].clear()
        volatile.publish(String(data=scene["instruction"]))
        stamps = graph.stream_until(lambda stamps: graph.forecast_for(stamps) is not None, "a forecast")
        check_forecast(graph.forecast_for(stamps), scene)
        assert "instruction_qos" not in graph.log_path.read_text()
    finally:
        graph.node.destroy_publisher(volatile)
    before = graph.log_path.read_text().count("new instruction: ")
    graph.good_forecast(scene["instruction"])  # latched publisher: both subscriptions match it
    time.sleep(0.5)
    assert graph.log_path.read_text().count("new instruction: ") == before + 1, "a latched instruction taken twice"


def test_forecast_input_error_is_an_error_diagnostic(graph, scene):
    """Query points on pixels without depth: the pipeline refuses them (ForecastInputError)."""
    graph.instruct(scene["instruction"])
    depth = scene["obs"].depth_m.copy()
    depth[:10, :10] = np.nan
    no_depth = polygon_msg(np.full((8, 2), 4.0))
    status = graph.wait_diagnostic("forecast_input", send=lambda: (graph.pub_query.publish(no_depth),
                                                                   graph.send_frame(depth_m=depth,
                                                                                    depth_encoding="32FC1")))
    assert status.level == DiagnosticStatus.ERROR and status.message.startswith("no forecast for")
    graph.pub_query.publish(PolygonStamped())
    check_forecast(graph.good_forecast(scene["instruction"]), scene)
    assert "Traceback" not in graph.log_path.read_text()


@pytest.mark.parametrize(("points", "words"), [(np.full((8, 2), -50.0), "lie outside the"),
                                               (np.full((9, 2), 20.0), "9 query points, more than num_points = 8")])
def test_unusable_query_points_are_refused_on_arrival_and_forecasts_go_on(graph, scene, points, words):
    graph.send_frame()  # the node knows the image size from a camera_info
    status = graph.wait_diagnostic("query_points", send=lambda: graph.pub_query.publish(polygon_msg(points)))
    assert words in status.message and "ignored" in status.message
    check_forecast(graph.good_forecast(scene["instruction"]), scene)  # grounding still serves: nothing stored


def set_parameter(graph, name: str, value):
    """Set one of the node's parameters over its parameter service; returns the SetParametersResult."""
    client = AsyncParameterClient(graph.node, "forecaster_node")
    wait_until(lambda: client.services_are_ready(), 10.0, spin=graph.spin, what="the parameter services")
    future = client.set_parameters([Parameter(name, value=value)])
    wait_until(future.done, 10.0, spin=graph.spin, what=f"setting {name}")
    return future.result().results[0]


def test_continuous_mode_set_at_runtime(graph, scene):
    """Switched to continuous, the node forecasts frame after frame without new instructions."""
    assert not set_parameter(graph, "mode", "sometimes").successful  # refused by the spec
    assert set_parameter(graph, "mode", "continuous").successful
    try:
        graph.received["trajectory"].clear()
        stamps = graph.stream_until(lambda stamps: len({(m.header.stamp.sec, m.header.stamp.nanosec)
                                                       for m in graph.received["trajectory"]}) >= 3,
                                    "three forecasts of three frames")
        for msg in graph.received["trajectory"]:
            check_forecast(msg, scene)
        assert graph.forecast_for(stamps) is not None
    finally:
        assert set_parameter(graph, "mode", "on_instruction").successful


def test_default_extrinsics_match_camera_yaml():
    camera = PinholeCamera.from_yaml(config_path("camera.yaml"))
    assert np.allclose(conv.xyz_quat_to_matrix(DEFAULT_T_WORLD_CAMERA), camera.T_world_cam, atol=1e-5)


def test_an_instruction_is_forecast_from_a_frame_newer_than_any_seen_before_it(graph, scene):
    """A frame stamped after the instruction's arrival on the node clock but older than a frame the node had
    already seen (a lagging clock, frames out of order) is not the instruction's frame: the node waits for a
    newer one."""
    from rclpy.time import Time

    ahead_s = 0.6  # within max_frame_age_s (1 s), so the node takes it in
    ahead = Time(nanoseconds=graph.node.get_clock().now().nanoseconds + int(ahead_s * 1e9)).to_msg()
    for _ in range(3):
        graph.send_frame(stamp=ahead)  # a frame stamped ahead of the node's clock, seen before the instruction
        graph.spin()
    heard = graph.log_path.read_text().count("new instruction")
    graph.received["trajectory"].clear()
    graph.instruct(scene["instruction"])
    wait_until(lambda: graph.log_path.read_text().count("new instruction") > heard, 10, spin=graph.spin,
               what="the instruction")
    behind = graph.send_frame()  # stamped after the instruction came, before the frame seen earlier
    stamps = [behind] + graph.stream_until(lambda stamps: graph.forecast_for([behind, *stamps]) is not None,
                                           "the instruction's forecast")
    msg = graph.forecast_for(stamps)
    used_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
    assert used_ns > ahead.sec * 10**9 + ahead.nanosec, ("forecast from a frame older than one seen before",
                                                          used_ns, ahead)
