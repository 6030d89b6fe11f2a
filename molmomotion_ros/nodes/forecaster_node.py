"""forecaster_node: a thin ROS 2 adapter over :class:`~molmomotion_ros.forecasting.pipeline.ForecastPipeline`.

Subscribes (relative names, remappable):
  * ``camera/color/image_raw`` (sensor_msgs/Image), ``camera/depth/image_raw`` (aligned depth, 32FC1 m or
    16UC1 mm) and ``camera/color/camera_info``: sensor-data QoS, matched by header stamp within
    ``sync_tolerance_s`` (an approximate-time synchroniser; message_filters has no wheel).
  * ``instruction`` (std_msgs/String), reliable: from transient-local publishers (a late-joining node
    still gets the last instruction) and volatile ones (``ros2 topic pub --once``) alike; each message is
    taken once (:meth:`~.lifecycle.ManagedNode.subscribe_instructions`). With ``instruction_parser`` (default)
    it is read by :mod:`molmomotion_ros.language`: refused with the reason, or handed to the forecaster in the
    template phrasing the shipped models were trained on ("nudge the red cube left" → "push the red cube to the
    left"; a template phrasing is kept as it is; both are logged and the status says ``understood_as``).
  * ``query_points`` (geometry_msgs/PolygonStamped, optional): pixels at t0 with ``x = u``,
    ``y = v`` (``z`` ignored; pixel (0, 0) is the top-left pixel's centre). They replace grounding
    for every forecast until an empty polygon clears them (a new instruction keeps them: topics
    are not ordered with respect to each other); in ``on_instruction`` mode a new non-empty set
    also triggers a forecast with the current instruction.
  * ``camera/pose`` (geometry_msgs/PoseStamped, when ``extrinsics_source = topic``): the camera
    optical frame's pose in ``world_frame``, reliable + transient-local (as sim_node publishes it).
    A pose holds until the next one: a frame uses the newest pose stamped at or before it.
  * ``/tf`` and ``/tf_static`` (when ``extrinsics_source = tf``; :mod:`.tf_listener`): T_world_camera is
    world_frame ← camera_frame (or camera_info's frame_id) at the colour image's stamp, looked up on the
    worker (waiting up to ``tf_timeout_s``); a missing or stale transform drops the frame with the reason.

A ``camera_info`` with plumb_bob distortion (every RealSense) has its colour and depth rectified into the pinhole
image of the same K before forecasting; other models with non-zero coefficients are refused per frame.

Publishes (every header: stamp = the colour image's stamp t0, frame = ``world_frame``; metres, seconds):
  ``forecast/trajectory``, ``forecast/hypotheses``, ``forecast/scores``, ``forecast/markers`` (see
  :mod:`molmomotion_ros.conversions.forecasts` for the encodings), ``forecast/goal_pose``
  (geometry_msgs/PoseStamped, the target's rigid-fit pose at the last step; not published when the
  fit fails) and ``/diagnostics`` (one status per problem, named ``forecaster_node: <topic or stage>``).
  Forecast topics are reliable + transient-local (depth 1): a late subscriber gets the last forecast.
  ``forecast/status`` (std_msgs/String, JSON, same QoS; on_instruction mode): what became of each instruction,
  ``{"state": refused | waiting | published | failed, "instruction", "reason", "stamp", "forecast_stamp",
  "understood_as"}``: refused on arrival (empty, too long, or, with ``instruction_parser``, whatever
  :func:`molmomotion_ros.language.parse_instruction` refuses: no known object, two at once, an action no task does,
  an object that cannot be handled so, a missing destination or direction; without it, no known object), failed
  when its forecast failed or no frame could serve it within ``instruction_timeout_s`` (the reason is the last
  frame problem: a missing transform, a refused camera_info, stale stamps, ...). The arm nodes relay refused and
  failed onto ``manipulation/status``.
  Scores + hypotheses and markers are built only while they have subscribers (~20 ms per forecast).

Inference runs on one worker thread fed by a one-slot mailbox (a newer request replaces one not yet
started), so callbacks only convert stamps, match and enqueue (matching and the mailbox:
:mod:`molmomotion_ros.streams`). Bad input never stops the node: it
is refused with one throttled warning and a WARN/ERROR diagnostic, and the next good message is served.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

import numpy as np
import yaml
from geometry_msgs.msg import PolygonStamped, PoseStamped
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32MultiArray, String
from trajectory_msgs.msg import MultiDOFJointTrajectory
from visualization_msgs.msg import MarkerArray

from .. import conversions
from ..forecasting.grounding import GroundingError
from ..forecasting.pipeline import NEURAL_BACKENDS
from ..forecasting.types import BackendUnavailableError, ForecastInputError
from ..language import REFUSAL_KINDS, Refusal, default_fallback, model_text, parse_instruction
from ..node_specs.forecaster import FORECASTER_NODE
from ..paths import config_path
from ..streams import NS, FrameSet, LatestMailbox, StampedBuffer, StampSynchronizer, stamp_ns
from ..transforms import TransformError
from ..vocabulary import default_vocabulary
from .lifecycle import ManagedNode
from .params import ParameterValueError
from .runtime import StartupError, run_node
from .tf_listener import make_tf_lookup

COLOR_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/depth/image_raw"
INFO_TOPIC = "camera/color/camera_info"
FRAME_TOPICS = {"color": COLOR_TOPIC, "depth": DEPTH_TOPIC, "camera_info": INFO_TOPIC}  # a FrameError's part → topic
POSE_TOPIC = "camera/pose"
STATUS_TOPIC = "forecast/status"
INSTRUCTION_PROBLEMS = ("instruction_too_long", *(f"instruction_{kind}" for kind in REFUSAL_KINDS))
LOG_REPEAT_S = 30.0  # a persisting problem is logged again after this long
DIAG_REPEAT_S = 1.0  # ... and re-published on /diagnostics at most this often
SYNC_QUEUE = 10  # messages buffered per synchronised stream
POSE_QUEUE = 50


@dataclass(frozen=True)
class Request:
    frames: FrameSet
    instruction: str  # as received (forecast/status names it)
    generation: int  # which instruction (or query-point set) this serves
    T_world_cam: np.ndarray | None  # None: looked up in TF by the worker
    points_2d: np.ndarray | None
    model_instruction: str  # what the forecaster is given (instruction_parser: language.model_text)


class FrameProblem(Exception):
    """A request failed because of its frame (the next frame may serve the instruction)."""

    def __init__(self, kind: str, stage: str, message: str):
        super().__init__(message)
        self.kind, self.stage = kind, stage


def known_object_words() -> frozenset[str]:
    """Object and container nouns of config/vocabulary.yaml (what the shipped models were taught)."""
    vocabulary = yaml.safe_load(config_path("vocabulary.yaml").read_text())
    return frozenset(word.lower() for key in ("objects", "containers") for word in vocabulary.get(key, {}))


# --- the node ------------------------------------------------------------------------------------
class ForecasterNode(ManagedNode):
    """A managed node (:mod:`.lifecycle`): configure checks the parameters and loads the forecaster (model,
    grounding, warm-up) and creates the forecast publishers; activate subscribes to the camera, the instruction,
    query points and the camera pose and starts the inference worker; deactivate stops both (a forecast in
    progress finishes, unpublished); cleanup releases the model."""

    def __init__(self, **kwargs):
        super().__init__(FORECASTER_NODE, **kwargs)
        self.add_on_set_parameters_callback(self._check_extrinsics_parameter)
        self._pipeline = None
        self._tf = None  # extrinsics_source = tf: a .tf_listener lookup, while active
        self._lock = threading.Lock()  # guards the request state below (callbacks vs worker)
        self._mailbox: LatestMailbox | None = None
        self._worker: threading.Thread | None = None
        self._reset_requests()

    def _reset_requests(self) -> None:
        """No instruction, pose or pending request: what a node that has just become active knows."""
        with self._lock:
            self._instruction: str | None = None
            self._model_instruction = ""  # the instruction as the forecaster gets it (instruction_parser)
            self._instruction_after_ns = 0  # frames of the current instruction are stamped at/after this
            self._newest_frame_ns = -1  # the newest frame set seen (stamp)
            self._generation = 0
            self._pending: int | None = None  # generation awaiting its forecast (on_instruction mode)
            self._pending_since = 0.0  # monotonic s when it began to wait (instruction_timeout_s)
            self._frame_problem = ""  # the last reason a frame could not serve it
            self._in_flight: int | None = None
            self._points_2d: np.ndarray | None = None
            self._image_size: tuple[int, int] | None = None  # (width, height) of the newest camera_info
            self._last_start = 0.0
            self._poses = StampedBuffer(maxlen=POSE_QUEUE)  # (stamp_ns, T_world_cam)
        self._logged: dict[str, float] = {}
        self._diag_sent: dict[str, float] = {}
        self._last_ok_diag = 0.0

    # --- lifecycle ------------------------------------------------------------------------------------
    def configure(self) -> None:
        p = self._params
        try:
            self._T_world_cam_param = conversions.xyz_quat_to_matrix(p["T_world_camera"])
        except conversions.ConversionError as err:
            raise ParameterValueError(f"forecaster_node: bad parameter value(s): T_world_camera: {err}") from None
        self._known_words = known_object_words() if p["require_known_object"] else frozenset()
        self._vocabulary = default_vocabulary()
        self._verb_classifier = None
        self._pipeline = self._load_pipeline()
        if p["instruction_parser"] and self._pipeline.backend in NEURAL_BACKENDS:
            self._load_verb_classifier()  # fm/ar have loaded the sentence encoder: ~1 s more now, not at an instruction
        self._sync = StampSynchronizer(p["sync_tolerance_s"], queue_size=SYNC_QUEUE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pub_trajectory = self.create_lifecycle_publisher(MultiDOFJointTrajectory, "forecast/trajectory", latched)
        self._pub_hypotheses = self.create_lifecycle_publisher(MultiDOFJointTrajectory, "forecast/hypotheses", latched)
        self._pub_scores = self.create_lifecycle_publisher(Float32MultiArray, "forecast/scores", latched)
        self._pub_markers = self.create_lifecycle_publisher(MarkerArray, "forecast/markers", latched)
        self._pub_goal = self.create_lifecycle_publisher(PoseStamped, "forecast/goal_pose", latched)
        self._pub_status = self.create_lifecycle_publisher(String, STATUS_TOPIC, latched)

    def activate(self) -> None:
        p = self._params
        self._reset_requests()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        subscribe = self.create_subscription
        for kind, msg_type, topic in (("color", Image, COLOR_TOPIC), ("depth", Image, DEPTH_TOPIC),
                                      ("info", CameraInfo, INFO_TOPIC)):
            self.while_active(subscribe(msg_type, topic, lambda m, k=kind: self._on_frame_part(k, m),
                                        qos_profile_sensor_data))
        self.subscribe_instructions(self._on_instruction)
        self.while_active(subscribe(PolygonStamped, "query_points", self._on_query_points, 10))
        if p["extrinsics_source"] == "topic":
            self.while_active(subscribe(PoseStamped, POSE_TOPIC, self._on_camera_pose, latched,
                                        event_callbacks=self._report_incompatible_qos(POSE_TOPIC)))
        if self._uses_tf:
            self._tf = make_tf_lookup(self)
        self.while_active(self.create_timer(0.25, self._expire_frames))
        self._mailbox = LatestMailbox()
        self._worker = threading.Thread(target=self._work, args=(self._mailbox,), name="forecaster_worker",
                                        daemon=True)
        self._worker.start()
        source = f"tf ({self._tf.backend})" if self._tf is not None else p["extrinsics_source"]
        self.get_logger().info(f"ready: mode {p['mode']}, extrinsics from {source}, "
                               f"forecasts in frame {p['world_frame']!r}")

    def deactivate(self) -> None:
        """Stop taking frames and instructions; a forecast in progress finishes (its publishers are off after)."""
        if self._mailbox is not None:
            self._mailbox.close()
            self._worker.join(timeout=10.0)
            self._mailbox = self._worker = None
        if self._tf is not None:
            self._tf.close()
            self._tf = None

    @property
    def _uses_tf(self) -> bool:
        return self._params["extrinsics_source"] in ("tf", "tf2")

    def cleanup(self) -> None:
        if self._pipeline is not None:
            device = self._params["device"]
            self._pipeline = None
            if device != "cpu":
                _empty_cuda_cache()

    def _load_pipeline(self):
        from ..forecasting.pipeline import ForecastPipeline

        p = self._params
        if p["torch_threads"] > 0:
            import torch

            torch.set_num_threads(p["torch_threads"])
        start = time.perf_counter()
        try:
            pipeline = ForecastPipeline(backend=p["backend"], device=p["device"], num_samples=p["num_hypotheses"],
                                        horizon=p["horizon"], grounding=p["grounding"], num_points=p["num_points"],
                                        seed=p["seed"], checkpoint=p["checkpoint"] or None,
                                        grounding_encoder=p["grounding_encoder"], fm_steps=p["fm_steps"])
            _warm_up(pipeline)
            _single_threaded_blas()  # after the warm-up: every BLAS library is loaded by then
        except (BackendUnavailableError, OSError, RuntimeError, ValueError) as err:
            raise StartupError(f"cannot load the {p['backend']} forecaster: {err}") from None
        self.get_logger().info(f"loaded the {p['backend']} forecaster and grounding on {p['device']} in "
                               f"{time.perf_counter() - start:.2f} s (K={pipeline.num_samples}, F={p['horizon']})")
        return pipeline

    def _load_verb_classifier(self) -> None:
        """The parser's reader for words its lexicon lacks (the learned instruction reader); other backends load it
        at the first instruction."""
        self._verb_classifier = default_fallback()
        if self._verb_classifier is False:
            self.get_logger().warning("instruction_parser: no sentence encoder; instructions whose verbs the "
                                      "parser does not know are refused")

    # --- parameters ------------------------------------------------------------------------------
    def _check_extrinsics_parameter(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for param in params:
            if param.name == "T_world_camera":
                try:
                    conversions.xyz_quat_to_matrix(list(param.value))
                except (conversions.ConversionError, TypeError) as err:
                    return SetParametersResult(successful=False, reason=f"T_world_camera: {err}")
        return SetParametersResult(successful=True)

    def apply_parameter(self, name: str, value) -> None:
        if name == "T_world_camera":
            self._T_world_cam_param = conversions.xyz_quat_to_matrix(value)
        elif name == "sync_tolerance_s":
            self._sync.set_tolerance(value)
        elif name == "num_hypotheses" and self._pipeline.backend == "fm":
            self._pipeline.num_samples = int(value)
        elif name in ("horizon", "grounding", "num_points"):
            setattr(self._pipeline, name, value)
        elif name == "require_known_object":
            self._known_words = known_object_words() if value else frozenset()

    # --- problems: one log line per kind (repeated rarely), a diagnostic per occurrence (throttled) -----
    def _problem(self, kind: str, stage: str, message: str, level: str = "WARN", values: dict | None = None) -> None:
        if kind not in INSTRUCTION_PROBLEMS:
            self._frame_problem = message  # what instruction_timeout_s reports if no frame serves the instruction
        now = time.monotonic()
        if now - self._logged.get(kind, -np.inf) >= LOG_REPEAT_S:
            self._logged[kind] = now
            if level == "ERROR":  # rclpy refuses two severities from one call site
                self.get_logger().error(f"{stage}: {message}")
            else:
                self.get_logger().warning(f"{stage}: {message}")
        if now - self._diag_sent.get(kind, -np.inf) >= DIAG_REPEAT_S:
            self._diag_sent[kind] = now
            self._publish_diag(stage, level, message, {"problem": kind, **(values or {})})

    def _publish_diag(self, stage: str, level: str, message: str, values: dict) -> None:
        self.diag(stage, level, message, values)

    # --- callbacks: convert stamps, match, enqueue; never block ---------------------------------------
    def _on_instruction(self, msg: String, _info=None) -> None:
        text = " ".join(msg.data.split())
        limit = self._params["max_instruction_chars"]
        if not text:
            self._refuse(text, "instruction_empty", "empty instruction ignored")
            return
        if len(text) > limit:
            self._refuse(text, "instruction_too_long",
                         f"instruction of {len(text)} characters ignored (max_instruction_chars = {limit}): "
                         f"{text[:40]!r}...", values={"chars": len(text)})
            return
        forecast_text, understood = text, ""
        if self._params["instruction_parser"]:
            parsed = parse_instruction(text, self._vocabulary, fallback=self._verb_classifier or True)
            if isinstance(parsed, Refusal):
                self._refuse(text, f"instruction_{parsed.kind}", parsed.reason)
                return
            forecast_text = model_text(parsed, self._vocabulary)
            understood = f", forecast as {forecast_text!r} ({parsed.intent}; verb from the {parsed.verb_source})"
        elif self._known_words and not self._known_words & set(re.findall(r"[a-z]+", text.lower())):
            self._refuse(text, "instruction_unknown_object",
                         f"instruction {text[:80]!r} names none of the known objects "
                         f"({', '.join(sorted(self._known_words))}); ignored")
            return
        with self._lock:
            self._instruction, self._model_instruction = text, forecast_text
            # "Once per new instruction" means from a frame taken after it: frames already buffered
            # (with a simulator racing ahead, or a reset between scenes) show the scene it was not meant for.
            # Newer than the last frame seen too: the node clock (from /clock) can lag the frames' stamps.
            self._instruction_after_ns = max(self.get_clock().now().nanoseconds, self._newest_frame_ns + 1)
            self._generation += 1
            self._pending = self._generation
            self._pending_since, self._frame_problem = time.monotonic(), ""
        self.get_logger().info(f"new instruction: {text!r}{understood}")
        if self._params["mode"] == "on_instruction":
            self._instruction_status("waiting", text, understood_as=forecast_text)

    def _refuse(self, text: str, kind: str, message: str, values: dict | None = None) -> None:
        self._problem(kind, "instruction", message, values=values)
        self._instruction_status("refused", text, message)

    def _instruction_status(self, state: str, instruction: str, reason: str = "", **extra) -> None:
        """forecast/status (JSON, latched): what became of an instruction: refused | waiting | published | failed.
        manipulation_node and policy_node relay refused and failed onto manipulation/status."""
        status = {"state": state, "instruction": instruction, "reason": reason,
                  "stamp": self.get_clock().now().nanoseconds / NS, **extra}
        self._pub_status.publish(String(data=json.dumps(status)))

    def _report_incompatible_qos(self, topic: str) -> SubscriptionEventCallbacks:
        def report(event) -> None:
            self._problem(f"{topic.replace('/', '_')}_qos", topic,
                          f"a {topic} publisher's QoS is incompatible ({event.last_policy_kind.name}): publish "
                          "reliable + transient-local (ros2 topic pub --qos-reliability reliable "
                          "--qos-durability transient_local), or its messages never arrive")

        return SubscriptionEventCallbacks(incompatible_qos=report)

    def _on_query_points(self, msg: PolygonStamped) -> None:
        """Refused on arrival when they cannot serve (not finite, too many, outside the image): stored, they
        would make every later forecast fail until an empty polygon cleared them. The previous set stays."""
        points_2d = np.array([(p.x, p.y) for p in msg.polygon.points], dtype=np.float32).reshape(-1, 2)
        limit = self._params["num_points"]
        with self._lock:
            size = self._image_size
        problem = None
        if not np.all(np.isfinite(points_2d)):
            problem = "query points must be finite pixels"
        elif len(points_2d) > limit:
            problem = f"{len(points_2d)} query points, more than num_points = {limit}"
        elif size is not None and len(points_2d):
            # Pixel (0, 0) is the top-left pixel's centre: the image spans [-0.5, width - 0.5) x [-0.5, height - 0.5).
            outside = np.nonzero((points_2d[:, 0] < -0.5) | (points_2d[:, 0] >= size[0] - 0.5)
                                 | (points_2d[:, 1] < -0.5) | (points_2d[:, 1] >= size[1] - 0.5))[0]
            if len(outside):
                problem = (f"query points {outside.tolist()} lie outside the {size[0]}x{size[1]} image, e.g. "
                           f"{points_2d[outside[0]].tolist()}")
        if problem:
            self._problem("query_points", "query_points", f"{problem}; ignored (the previous query points stay)")
            return
        with self._lock:
            self._points_2d = points_2d if len(points_2d) else None
            if len(points_2d) and self._instruction is not None:
                self._generation += 1
                self._pending = self._generation
                self._pending_since, self._frame_problem = time.monotonic(), ""

    def _on_camera_pose(self, msg: PoseStamped) -> None:
        if msg.header.frame_id != self._params["world_frame"]:
            self._problem("extrinsics_frame", POSE_TOPIC, f"camera pose is in frame {msg.header.frame_id!r}, not "
                                                          f"world_frame {self._params['world_frame']!r}; ignored")
            return
        try:
            T_world_cam = conversions.pose_to_matrix(msg.pose)
        except conversions.ConversionError as err:
            self._problem("extrinsics_pose", POSE_TOPIC, f"bad camera pose: {err}")
            return
        with self._lock:
            self._poses.add(stamp_ns(msg.header.stamp), T_world_cam)

    def _on_frame_part(self, kind: str, msg) -> None:
        if kind == "info":
            with self._lock:
                self._image_size = (int(msg.width), int(msg.height))
        frames = self._sync.add(kind, stamp_ns(msg.header.stamp), msg, time.monotonic())
        if frames is not None:
            self._on_frames(frames)

    def _on_frames(self, frames: FrameSet) -> None:
        max_age_s = self._params["max_frame_age_s"]
        age_s = (self.get_clock().now().nanoseconds - frames.stamp_ns) / NS
        if max_age_s > 0 and abs(age_s) > max_age_s:
            self._problem("stale_frame", COLOR_TOPIC, f"frame stamp is {age_s:+.2f} s from the node clock "
                                                      f"(max_frame_age_s = {max_age_s}); frame dropped",
                          values={"age_s": f"{age_s:.3f}"})
            return
        with self._lock:
            self._newest_frame_ns = max(self._newest_frame_ns, frames.stamp_ns)
            if self._instruction is None:
                return
            if self._params["mode"] == "on_instruction":
                if self._pending is None or self._in_flight == self._pending:
                    return
                if frames.stamp_ns < self._instruction_after_ns:
                    return  # taken before the instruction arrived
                generation = self._pending
            else:
                now = time.monotonic()
                if now - self._last_start < 1.0 / self._params["max_rate_hz"]:
                    return
                self._last_start = now
                generation = self._generation
            instruction, model_instruction, points_2d = self._instruction, self._model_instruction, self._points_2d
        T_world_cam = self._extrinsics(frames)
        if T_world_cam is None and not self._uses_tf:
            return
        with self._lock:
            self._in_flight = generation
        if self._mailbox is not None:
            self._mailbox.put(Request(frames, instruction, generation, T_world_cam, points_2d, model_instruction))

    def _extrinsics(self, frames: FrameSet) -> np.ndarray | None:
        source = self._params["extrinsics_source"]
        if source == "parameter":
            return self._T_world_cam_param
        if source == "topic":  # a pose holds until the next one: the newest stamped at or before the frame
            with self._lock:  # (before the first pose at or before the frame: the oldest pose)
                pose = self._poses.latest_at(frames.stamp_ns + self._sync.tolerance_ns) or next(iter(self._poses), None)
            if pose is None:
                self._problem("extrinsics_missing", POSE_TOPIC, "no camera pose received yet; frame dropped")
                return None
            return pose[1]
        return None  # tf: the worker looks it up (it may wait for the transform; a callback must not)

    def _tf_extrinsics(self, frames: FrameSet) -> np.ndarray:
        """T_world_cam at the colour stamp from TF, or FrameProblem saying why there is none."""
        world, camera = self._params["world_frame"], self._params["camera_frame"] or frames.info.header.frame_id
        if not camera:
            raise FrameProblem("extrinsics_tf", "tf", "camera_info has no header.frame_id and camera_frame is empty: "
                                                      "no frame to look up")
        tf = self._tf
        if tf is None:  # deactivated meanwhile
            raise FrameProblem("extrinsics_tf", "tf", "the node is not active")
        try:
            return tf.lookup(world, camera, frames.stamp_ns, self._params["tf_timeout_s"])
        except TransformError as err:
            raise FrameProblem("extrinsics_tf", "tf", f"no camera pose {world} ← {camera} at the colour stamp "
                                                      f"{frames.stamp_ns / NS:.3f} s: {err}") from None

    def _expire_frames(self) -> None:
        self._give_up_waiting()
        for missing in self._sync.expire(time.monotonic()):
            topic = INFO_TOPIC if missing.startswith("camera_info") else DEPTH_TOPIC
            self._problem(f"unmatched_{missing.replace(' ', '_')}", topic,
                          f"colour frames arrive but no {missing} matches their stamps within "
                          f"{self._params['sync_tolerance_s']} s; frames dropped")

    def _give_up_waiting(self) -> None:
        """on_instruction: an instruction no frame could serve within instruction_timeout_s is reported failed
        (with the last frame problem) and dropped, so the operator learns why nothing moves."""
        limit = self._params["instruction_timeout_s"]
        if self._params["mode"] != "on_instruction" or limit <= 0:
            return
        with self._lock:
            if (self._pending is None or self._in_flight == self._pending
                    or time.monotonic() - self._pending_since < limit):
                return
            self._pending, instruction = None, self._instruction or ""
        problem = self._frame_problem or "no synchronised colour, depth and camera_info frame arrived"
        reason = f"no forecast within instruction_timeout_s = {limit:g} s of the instruction: {problem}"
        self.get_logger().warning(reason)
        self._instruction_status("failed", instruction, reason)

    # --- worker: convert, forecast, publish --------------------------------------------------------
    def _work(self, mailbox: LatestMailbox) -> None:
        while (request := mailbox.take()) is not None:
            served = True  # False when the frame (not the instruction) failed: the next frame retries
            try:
                served = self._serve_reporting(request)
            except Exception as err:  # a bug (even in reporting) must not kill the worker
                if not self.context.ok():  # ctrl-c shut rclpy down mid-forecast: nothing to report to
                    return
                try:
                    self.get_logger().error(f"forecast failed: {type(err).__name__}: {err}")
                    self._publish_diag("forecast", "ERROR", f"{type(err).__name__}: {err}", {"problem": "internal"})
                except Exception:  # noqa: S110  (shutting down: the publisher or logger may be gone)
                    pass
            with self._lock:
                if self._in_flight == request.generation:
                    self._in_flight = None
                if served and self._pending == request.generation:
                    self._pending = None

    def _serve_reporting(self, request: Request) -> bool:
        """Serve ``request`` and report a refusal; False when the frame (not the instruction) failed."""
        try:
            stamp = self._serve(request)
        except FrameProblem as problem:
            self._problem(problem.kind, problem.stage, f"{problem}; frame dropped")
            return False
        except (GroundingError, ForecastInputError) as err:
            reason = f"no forecast for {request.instruction[:80]!r}: {err}"
            self._problem("forecast_input", "forecast", reason, level="ERROR")
            if self._params["mode"] == "on_instruction":
                self._instruction_status("failed", request.instruction, reason)
            return True
        if self._params["mode"] == "on_instruction":
            self._instruction_status("published", request.instruction, forecast_stamp=stamp)
        return True

    def _serve(self, request: Request) -> float:
        """Forecast from the request's frame and publish; returns the forecast's stamp (s)."""
        frames = request.frames
        wait_ms = (self.get_clock().now().nanoseconds - frames.stamp_ns) / 1e6  # transport, sync and mailbox
        T_world_cam = request.T_world_cam if request.T_world_cam is not None else self._tf_extrinsics(frames)
        try:
            rgb, depth_m, camera = conversions.frame_inputs(frames.color, frames.depth, frames.info, T_world_cam)
        except conversions.FrameError as err:
            raise FrameProblem(err.kind, FRAME_TOPICS[err.part], str(err)) from None
        start = time.perf_counter()
        # Noise keyed on the frame's stamp: a replayed recording gives the very forecasts that were recorded.
        result = self._pipeline.run(rgb, depth_m, camera, request.model_instruction, points_2d=request.points_2d,
                                    noise_key=max(0, frames.stamp_ns))
        compute_ms = (time.perf_counter() - start) * 1000
        age_ms = self._publish(result, frames)
        now = time.monotonic()
        if self._logged or self._diag_sent or now - self._last_ok_diag >= DIAG_REPEAT_S:
            self._logged.clear()  # problems solved: a recurrence is logged again
            self._diag_sent.clear()
            self._last_ok_diag = now
            self._publish_diag("forecast", "OK", "forecast published",
                               {"backend": self._pipeline.backend, "hypotheses": result.forecast.num_samples,
                                "points": len(result.points_2d), "stamp_to_start_ms": f"{wait_ms:.1f}",
                                "compute_ms": f"{compute_ms:.1f}", "stamp_to_publish_ms": f"{age_ms:.1f}"})
        return frames.stamp_ns / NS

    def _publish(self, result, frames: FrameSet) -> float:
        """Publish every output; returns the trajectory's age (ms since the image stamp) when it left."""
        stamp, frame_id = frames.color.header.stamp, self._params["world_frame"]
        forecast, points_t0 = result.forecast, result.points_world_t0_m
        self._pub_trajectory.publish(conversions.forecast_to_trajectory(forecast, points_t0, stamp, frame_id))
        age_ms = (self.get_clock().now().nanoseconds - stamp_ns(stamp)) / 1e6
        goal = result.target_motion.goal_pose_world if result.target_motion is not None else None
        if goal is not None:
            self._pub_goal.publish(conversions.pose_stamped(goal, stamp, frame_id))
        # The K-hypothesis outputs cost ~20 ms to build and serialise: only while someone listens.
        if self._pub_hypotheses.get_subscription_count() or self._pub_scores.get_subscription_count():
            self._pub_scores.publish(conversions.scores_to_msg(forecast.scores))
            self._pub_hypotheses.publish(conversions.forecast_to_hypotheses(forecast, points_t0, stamp, frame_id))
        if self._pub_markers.get_subscription_count():
            self._pub_markers.publish(conversions.forecast_to_markers(points_t0, forecast.points_world_m, stamp,
                                                                      frame_id, goal))
        return age_ms



def _empty_cuda_cache() -> None:
    """Give the released model's GPU memory back (yolo_ros does the same on release). No explicit gc.collect():
    run from a lifecycle callback while other callbacks are live, it segfaulted once under load (finalising
    middleware objects mid-transition); the model's tensors are freed by reference counting as it is dropped."""
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _single_threaded_blas() -> None:
    """One OpenBLAS thread: grounding's numpy linear algebra is on tiny matrices, and OpenBLAS's idle
    threads spin between calls, stealing the cores torch needs next. Measured on the 2-core machine:
    grounding + FM K=8 forecast 95 ms with 2 BLAS threads, 42 ms with 1."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency, normally present; else set OPENBLAS_NUM_THREADS=1
        return
    threadpool_limits(limits=1, user_api="blas")


def _warm_up(pipeline) -> None:
    """Load the text encoder and run both models once on a synthetic frame, so the first forecast is fast."""
    from ..camera import PinholeCamera

    camera = PinholeCamera(width=160, height=120, fx=115.0, fy=115.0, cx=79.5, cy=59.5)
    rgb = np.full((120, 160, 3), 128, np.uint8)
    depth_m = np.full((120, 160), 1.0, np.float32)
    instruction = "put the red block in the blue bowl"
    pipeline.grounding_model.heatmaps(rgb, depth_m, camera.K, instruction)
    points_2d = np.stack([np.linspace(40, 120, pipeline.num_points), np.full(pipeline.num_points, 60.0)], 1)
    pipeline.run(rgb, depth_m, camera, instruction, points_2d=points_2d)


def main(args=None) -> None:
    run_node(FORECASTER_NODE.name, ForecasterNode, args)


if __name__ == "__main__":
    main()
