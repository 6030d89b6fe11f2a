"""Forecasts re-run offline on a recording: a rosbag2 MCAP bag in, new forecasts, scores and an overlay video out.

No ROS graph is needed (no rclpy): the bag's messages are decoded with the schemas it stores, frames are read as
the forecaster node reads them (:func:`molmomotion_ros.conversions.frame_inputs`) and forecast by the same
:class:`~molmomotion_ros.forecasting.pipeline.ForecastPipeline` with the same noise key (the frame's stamp), so a
re-forecast with the recording's checkpoint and seed gives the recorded forecasts again.

Which frames are forecast (``frames``):

* ``recorded``: the frame of every recorded ``forecast/trajectory`` (matched by stamp), with the instruction in
  force when that forecast was published: the same requests the forecaster served;
* ``instructions``: for every instruction, the first complete frame newer than every frame recorded before it
  (the forecaster node's ``on_instruction`` rule), for a bag without forecasts, such as a ``ros2 bag record`` of a
  cell's camera and instruction topics;
* ``auto``: ``recorded`` when the bag has forecasts, else ``instructions``.

Extrinsics (T_world_cam at the frame's stamp): the ``camera/pose`` topic (the newest pose at or before the
stamp), else TF (/tf and /tf_static, ``world_frame`` ← the camera_info's frame), else the caller's fixed pose.

A sim recording carries ``sim/ground_truth`` (the target's pose trace under the oracle, see
:mod:`sim.ground_truth`): every forecast is then scored with eval-forecast's metrics (camera frame at t0; K = 1 is
the published hypothesis, best@K/mean@K all of them).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bags import BagReader, BagReadError, BagWriter, QosProfile, TopicMetadata
from .bags.codec import MessageCodec
from .transforms import TransformBuffer, TransformError

logger = logging.getLogger(__name__)
NS = 1_000_000_000
FRAME_MODES = ("auto", "recorded", "instructions")
OUTPUT_NAMESPACE = "/reforecast"
STRIDE_RATE_HZ = 15.0  # the ground truth's trace rate when a message holds a single pose


@dataclass(frozen=True)
class RecordingTopics:
    """The recording's topic names (absolute, as the bag stores them)."""

    color: str = "/camera/color/image_raw"
    depth: str = "/camera/depth/image_raw"
    camera_info: str = "/camera/color/camera_info"
    camera_pose: str = "/camera/pose"
    instruction: str = "/instruction"
    forecast: str = "/forecast/trajectory"
    hypotheses: str = "/forecast/hypotheses"
    ground_truth: str = "/sim/ground_truth"
    episode: str = "/sim/episode"

    @classmethod
    def under(cls, namespace: str) -> RecordingTopics:
        """The package's topic names in ``namespace`` (as ``molmomotion launch --namespace`` puts them)."""
        prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
        return cls(**{name: prefix + value for name, value in cls().__dict__.items()})


@dataclass
class RecordedForecast:
    points_t0_m: np.ndarray  # (P, 3) world
    hypotheses_m: np.ndarray  # (K, P, F, 3) world (K = 1 when only forecast/trajectory was recorded)
    times_s: np.ndarray  # (F,)
    log_time_ns: int


@dataclass
class Request:
    """One forecast to make: an instruction and the frame it is forecast from."""

    index: int
    instruction: str
    stamp_ns: int  # the colour image's stamp (= the forecast's header stamp)
    log_time_ns: int  # when the frame's last part reached the recorder
    T_world_cam: np.ndarray | None = None
    frame: tuple | None = None  # decoded (color, depth, camera_info) messages
    recorded: RecordedForecast | None = None
    ground_truth: tuple[np.ndarray, np.ndarray] | None = None  # times (T,), target poses (T, 7)
    episode: dict | None = None  # sim/episode's JSON in force


@dataclass
class Outcome:
    """What the forecaster made of one request."""

    request: Request
    model_instruction: str = ""
    points_t0_m: np.ndarray | None = None  # (P, 3) world
    hypotheses_m: np.ndarray | None = None  # (K, P, F, 3) world, best first
    scores: np.ndarray | None = None  # (K,)
    times_s: np.ndarray | None = None  # (F,)
    compute_ms: float = 0.0
    refused: str = ""  # the instruction parser's or the pipeline's reason for no forecast
    metrics: dict | None = None  # {"k1": ..., "kK": ...} against the ground truth
    recorded_metrics: dict | None = None  # the same for the recorded forecast
    max_diff_to_recorded_m: float | None = None  # largest point distance to the recorded forecast


@dataclass
class Recording:
    """Requests found in a bag, and what was read around them."""

    path: Path
    requests: list[Request]
    mode: str
    notes: list[str] = field(default_factory=list)  # frames or instructions that yield no request, and why


class ReforecastError(ValueError):
    """The bag cannot be re-forecast as asked (no frames, no instructions, no extrinsics); one line, the user's to
    fix."""


# --- reading the requests ----------------------------------------------------------------------------------------
def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * NS + int(header.stamp.nanosec)


def _pose_matrix(position, orientation) -> np.ndarray:
    from .geometry import quat_to_matrix

    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(np.array([orientation.x, orientation.y, orientation.z, orientation.w]))
    T[:3, 3] = [position.x, position.y, position.z]
    return T


def _latest_before(items: list[tuple[int, object]], time_ns: int):
    """The value of the last (time, value) with time <= ``time_ns`` (items sorted by time), or None."""
    chosen = None
    for t, value in items:
        if t > time_ns:
            break
        chosen = value
    return chosen


def read_requests(bag: Path | str, topics: RecordingTopics | None = None, frames: str = "auto",
                  world_frame: str = "world", T_world_cam: np.ndarray | None = None,
                  sync_tolerance_s: float = 0.01, codec: MessageCodec | None = None,
                  progress: bool = False) -> Recording:
    """Every forecast request in ``bag`` with its decoded frame, extrinsics, recorded forecast and ground truth.

    Two passes over the bag: the small topics first (which frames are needed), then the images (only the needed
    ones are kept). Raises BagReadError (the bag) or ReforecastError (nothing to forecast)."""
    from . import conversions

    if frames not in FRAME_MODES:
        raise ValueError(f"frames must be one of {', '.join(FRAME_MODES)}, not {frames!r}")
    topics = topics or RecordingTopics()
    codec = codec or MessageCodec()
    tolerance_ns = int(round(sync_tolerance_s * NS))
    with BagReader(bag) as reader:
        missing = [name for name in (topics.color, topics.depth, topics.camera_info) if name not in reader.topics]
        if missing:
            raise ReforecastError(f"the bag {str(bag)!r} has no {', '.join(missing)} (it has "
                                  f"{', '.join(sorted(reader.topics)) or 'no topics'}); the recorded"
                                  " graph's namespace is --namespace")
        if topics.instruction not in reader.topics:
            raise ReforecastError(f"the bag {str(bag)!r} has no {topics.instruction}: nothing says what to forecast")
        small = [t for t in (topics.camera_info, topics.camera_pose, topics.instruction, topics.forecast,
                             topics.hypotheses, topics.ground_truth, topics.episode, "/tf", "/tf_static")
                 if t in reader.topics]
        infos: dict[int, tuple[int, object]] = {}  # stamp → (log time, CameraInfo)
        poses: list[tuple[int, np.ndarray]] = []  # (stamp, T_world_cam)
        instructions: list[tuple[int, str]] = []
        forecasts: list[tuple[int, int, object]] = []  # (stamp, log time, message)
        hypotheses: dict[int, object] = {}
        truths: list[tuple[int, object]] = []
        episodes: list[tuple[int, dict]] = []
        tf = TransformBuffer(cache_s=1e9)  # a recording: every sample stays
        for message in reader.messages(small):
            topic = reader.topics[message.topic]
            msg = codec.decode(topic, message.data)
            name = message.topic
            if name == topics.camera_info:
                infos.setdefault(_stamp_ns(msg.header), (message.log_time, msg))
            elif name == topics.camera_pose:
                poses.append((_stamp_ns(msg.header), _pose_matrix(msg.pose.position, msg.pose.orientation)))
            elif name == topics.instruction:
                instructions.append((message.log_time, " ".join(msg.data.split())))
            elif name == topics.forecast:
                forecasts.append((_stamp_ns(msg.header), message.log_time, msg))
            elif name == topics.hypotheses:
                hypotheses[_stamp_ns(msg.header)] = msg
            elif name == topics.ground_truth:
                truths.append((message.log_time, msg))
            elif name == topics.episode:
                try:
                    episodes.append((message.log_time, json.loads(msg.data)))
                except ValueError:
                    episodes.append((message.log_time, {"raw": msg.data}))
            else:  # /tf, /tf_static
                for transform in msg.transforms:
                    t = transform.transform
                    tf.set_transform(transform.header.frame_id, transform.child_frame_id,
                                     _pose_matrix(t.translation, t.rotation), _stamp_ns(transform.header),
                                     static=name == "/tf_static")
        mode = frames if frames != "auto" else ("recorded" if forecasts else "instructions")
        notes: list[str] = []
        frame_times = sorted((log, stamp) for stamp, (log, _) in infos.items())
        wanted: list[tuple[int, int, str, RecordedForecast | None]] = []  # (stamp, log time, instruction, recorded)
        if mode == "recorded":
            if not forecasts:
                raise ReforecastError(f"the bag {str(bag)!r} has no {topics.forecast} to re-make (use frames "
                                      "'instructions')")
            for stamp, log_time, msg in forecasts:
                instruction = _latest_before(instructions, log_time)
                if instruction is None:
                    notes.append(f"forecast at {stamp / NS:.3f} s: no instruction recorded before it; skipped")
                    continue
                wanted.append((stamp, log_time, instruction, _recorded(msg, hypotheses.get(stamp), log_time)))
        else:
            for log_time, text in instructions:
                if not text:
                    notes.append(f"instruction at {log_time / NS:.3f} s is empty; skipped")
                    continue
                seen = [stamp for log, stamp in frame_times if log <= log_time]
                newest = max(seen) if seen else -1
                after = [(log, stamp) for log, stamp in frame_times if log > log_time and stamp > newest]
                if not after:
                    notes.append(f"instruction {text[:60]!r} at {log_time / NS:.3f} s: no frame after it; skipped")
                    continue
                log, stamp = after[0]
                wanted.append((stamp, log, text, None))
        if not wanted:
            raise ReforecastError(f"the bag {str(bag)!r} holds no forecast request ({'; '.join(notes) or 'none'})")
        needed = {stamp for stamp, *_ in wanted}
        images: dict[str, dict[int, object]] = {topics.color: {}, topics.depth: {}}
        for message in reader.messages([topics.color, topics.depth]):
            msg = codec.decode(reader.topics[message.topic], message.data)
            stamp = _stamp_ns(msg.header)
            match = stamp if stamp in needed else _nearest(needed, stamp, tolerance_ns)
            if match is not None:
                images[message.topic].setdefault(match, msg)
    requests, scored_truths = [], []
    for stamp, log_time, instruction, recorded in sorted(wanted, key=lambda w: w[1]):
        info = infos.get(stamp) or next((infos[s] for s in infos if abs(s - stamp) <= tolerance_ns), None)
        color, depth = images[topics.color].get(stamp), images[topics.depth].get(stamp)
        if info is None or color is None or depth is None:
            absent = [n for n, m in (("camera_info", info), ("colour", color), ("depth", depth)) if m is None]
            notes.append(f"frame {stamp / NS:.3f} s: no {', '.join(absent)} with its stamp; skipped")
            continue
        info_msg = info[1]
        extrinsics = _extrinsics(stamp, poses, tf, world_frame, info_msg.header.frame_id, tolerance_ns, T_world_cam)
        if isinstance(extrinsics, str):
            notes.append(f"frame {stamp / NS:.3f} s: {extrinsics}; skipped")
            continue
        truth = _latest_before(truths, log_time)
        if truth is not None and any(id(truth) == used for used in scored_truths):
            # The trace starts from the scene at rest; a later forecast of the episode (a retry) sees a scene the
            # arm has already changed, which the trace does not describe.
            notes.append(f"frame {stamp / NS:.3f} s: not the episode's first forecast, so not scored (the ground "
                         "truth holds for the scene at rest)")
            truth = None
        elif truth is not None:
            scored_truths.append(id(truth))
        episode = _latest_before(episodes, log_time)
        requests.append(Request(len(requests), instruction, stamp, log_time, extrinsics, (color, depth, info_msg),
                                recorded, None if truth is None else conversions.msg_to_ground_truth(truth),
                                episode))
    if not requests:
        raise ReforecastError(f"the bag {str(bag)!r}: no request has a complete frame ({'; '.join(notes)})")
    return Recording(Path(bag), requests, mode, notes)


def _nearest(stamps: set[int], stamp: int, tolerance_ns: int) -> int | None:
    if not tolerance_ns:
        return None
    best = min(stamps, key=lambda s: abs(s - stamp))
    return best if abs(best - stamp) <= tolerance_ns else None


def _recorded(trajectory, hypotheses, log_time_ns: int) -> RecordedForecast:
    from . import conversions

    points_t0, tracks, times = conversions.msg_to_forecast_tracks(trajectory)
    all_tracks = tracks[None]
    if hypotheses is not None:
        try:
            _, many, many_times = conversions.msg_to_forecast_hypotheses(hypotheses)
            if many.shape[1:] == tracks.shape and np.allclose(many_times, times):
                all_tracks = many
        except conversions.ConversionError as err:
            logger.warning("recorded hypotheses unreadable, using the trajectory alone: %s", err)
    return RecordedForecast(points_t0, all_tracks, times, log_time_ns)


def _extrinsics(stamp: int, poses, tf: TransformBuffer, world_frame: str, camera_frame: str, tolerance_ns: int,
                fixed: np.ndarray | None) -> np.ndarray | str:
    """T_world_cam at ``stamp``, or why there is none (the forecaster node's order: pose topic, then TF)."""
    if poses:
        at_or_before = [T for s, T in sorted(poses, key=lambda item: item[0]) if s <= stamp + tolerance_ns]
        return at_or_before[-1] if at_or_before else min(poses, key=lambda item: item[0])[1]
    if tf.frames():
        try:
            return tf.lookup(world_frame, camera_frame, stamp)
        except TransformError as err:
            if fixed is None:
                return f"no camera pose {world_frame} ← {camera_frame or '(no frame_id)'} from TF: {err}"
    if fixed is not None:
        return np.asarray(fixed, float)
    return "no camera/pose topic, no TF and no fixed extrinsics: give --extrinsics"


# --- forecasting and scoring -------------------------------------------------------------------------------------
def forecast_requests(recording: Recording, pipeline, read_instruction: Callable[[str], object] | None = None,
                      progress: bool = True, label: str = "reforecast") -> list[Outcome]:
    """Run ``pipeline`` (a ForecastPipeline) on every request, as the forecaster node would; score each forecast
    (and the recorded one) against the ground truth when the recording has it."""
    from tqdm import tqdm

    from . import conversions
    from .forecasting.grounding import GroundingError
    from .forecasting.types import ForecastInputError

    outcomes = []
    for request in tqdm(recording.requests, desc=label, unit="frame", disable=not progress):
        outcome = Outcome(request)
        text = request.instruction
        if read_instruction is not None:
            understood = read_instruction(text)
            if not isinstance(understood, str):
                outcome.refused = f"instruction refused ({understood.kind}): {understood.reason}"
                outcomes.append(outcome)
                continue
            text = understood
        outcome.model_instruction = text
        try:
            rgb, depth_m, camera = conversions.frame_inputs(*request.frame, request.T_world_cam)
            start = time.perf_counter()
            result = pipeline.run(rgb, depth_m, camera, text, noise_key=max(0, request.stamp_ns))
            outcome.compute_ms = (time.perf_counter() - start) * 1000
        except (conversions.FrameError, GroundingError, ForecastInputError) as err:
            outcome.refused = f"{type(err).__name__}: {err}"
            outcomes.append(outcome)
            continue
        forecast = result.forecast
        outcome.points_t0_m = result.points_world_t0_m.astype(float)
        outcome.hypotheses_m = forecast.points_world_m.astype(float)
        outcome.scores = np.asarray(forecast.scores, float)
        outcome.times_s = np.asarray(forecast.timestamps_s, float)
        _score(outcome)
        outcomes.append(outcome)
    return outcomes


def ground_truth_tracks(points_t0_m: np.ndarray, times_s: np.ndarray, truth_times_s: np.ndarray,
                        truth_poses: np.ndarray) -> np.ndarray:
    """Where the target carries world points ``points_t0_m`` (P, 3) at forecast times (F,): (P, F, 3).

    Samples the trace at the nearest sample of each time, held at its last pose after it ends (as
    eval-forecast's ground truth on a dataset)."""
    from .geometry import points_along_poses, quat_to_matrix

    dt = float(np.median(np.diff(truth_times_s))) if len(truth_times_s) > 1 else 1.0 / STRIDE_RATE_HZ
    idx = np.minimum(np.round(np.asarray(times_s) / dt).astype(int), len(truth_poses) - 1)
    R0 = quat_to_matrix(truth_poses[0, 3:])
    local = (np.asarray(points_t0_m, float) - truth_poses[0, :3]) @ R0  # R0ᵀ (x - p0)
    return points_along_poses(truth_poses[idx], local)


def _score(outcome: Outcome) -> None:
    """Compare with the recorded forecast (when there is one) and score both on the ground truth (when there is)."""
    request, recorded = outcome.request, outcome.request.recorded
    if outcome.hypotheses_m is None:
        return
    if recorded is not None and recorded.hypotheses_m.shape == outcome.hypotheses_m.shape:
        outcome.max_diff_to_recorded_m = float(max(np.abs(recorded.hypotheses_m - outcome.hypotheses_m).max(),
                                                   np.abs(recorded.points_t0_m - outcome.points_t0_m).max()))
    if request.ground_truth is None:
        return
    outcome.metrics = score_forecast(outcome.points_t0_m, outcome.hypotheses_m, outcome.times_s,
                                     request.ground_truth, request.T_world_cam)
    if recorded is not None:
        outcome.recorded_metrics = score_forecast(recorded.points_t0_m, recorded.hypotheses_m, recorded.times_s,
                                                  request.ground_truth, request.T_world_cam)


def score_forecast(points_t0_m: np.ndarray, hypotheses_m: np.ndarray, times_s: np.ndarray,
                   ground_truth: tuple[np.ndarray, np.ndarray], T_world_cam: np.ndarray) -> dict:
    """eval-forecast's metrics of one forecast (world frame, hypotheses (K, P, F, 3) best first): ``k1`` the best
    hypothesis, ``kK`` all K, in the camera frame at t0 like eval-forecast."""
    from .forecasting import metrics

    gt_world = ground_truth_tracks(points_t0_m, times_s, *ground_truth)  # (P, F, 3)
    T_cam_world = np.linalg.inv(T_world_cam)

    def cam(x: np.ndarray) -> np.ndarray:
        return x @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]

    gt, pred, start = cam(gt_world), cam(hypotheses_m), cam(points_t0_m)
    valid = np.ones(len(times_s), dtype=bool)
    return {"k1": metrics.summarize(pred[:1], gt, valid, start), "kK": metrics.summarize(pred, gt, valid, start)}


def summarize_outcomes(outcomes: Iterable[Outcome]) -> dict:
    """Mean metrics over the scored outcomes, plus counts (what eval-forecast reports per backend)."""
    from .forecasting import metrics

    outcomes = list(outcomes)
    scored = [o for o in outcomes if o.metrics is not None]
    diffs = [o.max_diff_to_recorded_m for o in outcomes if o.max_diff_to_recorded_m is not None]
    recorded = [o for o in scored if o.recorded_metrics is not None]
    return {
        "requests": len(outcomes), "forecast": sum(o.hypotheses_m is not None for o in outcomes),
        "refused": sum(bool(o.refused) for o in outcomes), "scored": len(scored),
        "k1": metrics.aggregate(o.metrics["k1"] for o in scored) if scored else None,
        "kK": metrics.aggregate(o.metrics["kK"] for o in scored) if scored else None,
        "recorded_k1": metrics.aggregate(o.recorded_metrics["k1"] for o in recorded) if recorded else None,
        "recorded_kK": metrics.aggregate(o.recorded_metrics["kK"] for o in recorded) if recorded else None,
        "max_diff_to_recorded_m": max(diffs) if diffs else None,
        "compared_to_recorded": len(diffs),
        "latency_ms_p50": float(np.median([o.compute_ms for o in outcomes if o.hypotheses_m is not None]))
        if any(o.hypotheses_m is not None for o in outcomes) else None,
    }


# --- writing the new bag -----------------------------------------------------------------------------------------
def write_bag(source: Path | str, out: Path | str, outcomes: list[Outcome], frame_id: str = "world",
              namespace: str = OUTPUT_NAMESPACE, compression: str = "zstd", codec: MessageCodec | None = None):
    """A copy of ``source`` with the new forecasts beside the recorded ones: ``<namespace>/trajectory``,
    ``/hypotheses``, ``/scores`` and ``/markers`` (the forecaster's topic contract), each logged when its frame's
    recorded forecast was (or its frame arrived). Returns the writer's BagSummary."""
    from builtin_interfaces.msg import Time

    from . import conversions

    codec = codec or MessageCodec()
    ns = "/" + namespace.strip("/")
    new_types = {f"{ns}/trajectory": "trajectory_msgs/msg/MultiDOFJointTrajectory",
                 f"{ns}/hypotheses": "trajectory_msgs/msg/MultiDOFJointTrajectory",
                 f"{ns}/scores": "std_msgs/msg/Float32MultiArray",
                 f"{ns}/markers": "visualization_msgs/msg/MarkerArray"}
    latched = QosProfile(history="keep_last", depth=1, reliability="reliable", durability="transient_local")
    pending: list[tuple[int, str, bytes]] = []
    for outcome in outcomes:
        if outcome.hypotheses_m is None:
            continue
        request = outcome.request
        stamp = Time(sec=request.stamp_ns // NS, nanosec=request.stamp_ns % NS)
        log_time = request.recorded.log_time_ns if request.recorded is not None else request.log_time_ns
        t0, tracks, times = outcome.points_t0_m, outcome.hypotheses_m, outcome.times_s
        built = {  # scores just before their hypotheses, as the forecaster publishes them
            f"{ns}/trajectory": conversions.tracks_to_trajectory(t0, tracks[0], times, stamp, frame_id),
            f"{ns}/scores": conversions.scores_to_msg(outcome.scores),
            f"{ns}/hypotheses": conversions.hypotheses_to_trajectory(t0, tracks, times, stamp, frame_id),
            f"{ns}/markers": conversions.forecast_to_markers(outcome.points_t0_m, outcome.hypotheses_m, stamp,
                                                             frame_id, None),
        }
        pending.extend((log_time, topic, codec.encode(new_types[topic], msg)) for topic, msg in built.items())
    pending.sort(key=lambda item: item[0])
    with BagReader(source) as reader:
        taken = [t for t in new_types if t in reader.topics]
        if taken:
            raise ReforecastError(f"the bag {str(source)!r} already has {', '.join(taken)}; choose another "
                                  "--namespace for the new forecasts")
        writer = BagWriter(Path(out), compression=compression, folder_action="write the re-forecast bag to")
        try:
            for topic in reader.topics.values():
                definition = topic.schema or codec.definition(topic.type)
                writer.add_topic(TopicMetadata(topic.name, topic.type, list(topic.offered_qos_profiles),
                                               topic.type_description_hash, topic.serialization_format), definition)
            for name, type_name in new_types.items():
                writer.add_topic(TopicMetadata(name, type_name, [latched]), codec.definition(type_name))
            queue = iter(pending)
            due = next(queue, None)
            for message in reader.messages():
                while due is not None and due[0] <= message.log_time:
                    writer.write(due[1], due[2], due[0])
                    due = next(queue, None)
                writer.write(message.topic, message.data, message.log_time, message.publish_time)
            while due is not None:
                writer.write(due[1], due[2], due[0])
                due = next(queue, None)
        finally:
            summary = writer.close()
    return summary


# --- the overlay video -------------------------------------------------------------------------------------------
OLD_COLOUR = (255, 140, 0)  # recorded forecast
NEW_COLOUR = (0, 200, 255)  # re-made forecast
TRUTH_COLOUR = (60, 220, 60)
MIN_VIDEO_WIDTH = 480  # smaller images are scaled up by a whole factor before drawing


def render_video(source: Path | str, out: Path | str, outcomes: list[Outcome], topics: RecordingTopics | None = None,
                 fps: float | None = None, new_label: str = "new", codec: MessageCodec | None = None,
                 progress: bool = True) -> int:
    """An MP4 of the recording's colour frames with the forecasts in force projected into them: the recorded one
    (orange), the new one (cyan) and, in a sim recording, the ground truth (green). Returns the frames written."""
    import av
    from PIL import Image, ImageDraw
    from tqdm import tqdm

    from . import conversions

    topics = topics or RecordingTopics()
    codec = codec or MessageCodec()
    made = sorted((o for o in outcomes if o.hypotheses_m is not None or o.request.recorded is not None),
                  key=lambda o: o.request.stamp_ns)
    infos: dict[int, object] = {}
    with BagReader(source) as reader:
        for message in reader.messages([topics.camera_info]):
            msg = codec.decode(reader.topics[message.topic], message.data)
            infos.setdefault(_stamp_ns(msg.header), msg)
        colours = reader.topics[topics.color].message_count
        stamps = sorted(infos)
        if fps is None:
            fps = 1e9 / float(np.median(np.diff(stamps))) if len(stamps) > 1 else 15.0
        fps = min(max(fps, 1.0), 60.0)
        container = av.open(str(out), mode="w")
        stream = None
        written = 0
        try:
            for message in tqdm(reader.messages([topics.color]), total=colours, desc="video", unit="frame",
                                disable=not progress):
                msg = codec.decode(reader.topics[message.topic], message.data)
                stamp = _stamp_ns(msg.header)
                info = infos.get(stamp)
                if info is None:
                    continue
                try:
                    rgb = conversions.msg_to_rgb(msg)
                    camera, rectifier = conversions.camera_info_to_rectified(info)
                except conversions.ConversionError:
                    continue
                if rectifier is not None and rgb.shape[:2] == (camera.height, camera.width):
                    rgb = rectifier.rgb(rgb)
                current = [o for o in made if o.request.stamp_ns <= stamp]
                scale = max(1, round(MIN_VIDEO_WIDTH / rgb.shape[1]))  # small sim images: room for lines and text
                image = Image.fromarray(np.ascontiguousarray(rgb))
                if scale > 1:
                    image = image.resize((image.width * scale, image.height * scale), Image.BILINEAR)
                draw = ImageDraw.Draw(image)
                if current:
                    outcome = current[-1]
                    cam = camera.with_pose(outcome.request.T_world_cam)
                    _draw_forecast(draw, cam, outcome, new_label, scale)
                if stream is None:
                    stream = container.add_stream("libx264", rate=round(fps))
                    stream.width, stream.height = image.width // 2 * 2, image.height // 2 * 2
                    stream.pix_fmt = "yuv420p"
                frame = np.asarray(image)[: stream.height, : stream.width]
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
                written += 1
            if stream is not None:
                for packet in stream.encode(None):
                    container.mux(packet)
        finally:
            container.close()
    if not written:
        Path(out).unlink(missing_ok=True)
    return written


def _draw_forecast(draw, camera, outcome: Outcome, new_label: str, scale: int = 1) -> None:
    request = outcome.request

    def track(points_t0: np.ndarray, tracks: np.ndarray, colour, width: int) -> None:
        for start, steps in zip(points_t0, tracks, strict=True):
            world = np.vstack([start[None], steps])
            uv, z = camera.project(camera.world_to_cam(world))
            uv = (uv + 0.5) * scale - 0.5  # pixel centres of the scaled image
            pixels = [(float(u), float(v)) for (u, v), depth in zip(uv, z, strict=True) if depth > 0]
            if len(pixels) > 1:
                draw.line(pixels, fill=colour, width=width)
            if pixels:
                x, y = pixels[0]
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=colour)

    lines = [request.instruction[:70]]
    if request.ground_truth is not None and outcome.points_t0_m is not None:
        truth = ground_truth_tracks(outcome.points_t0_m, outcome.times_s, *request.ground_truth)
        track(outcome.points_t0_m, truth, TRUTH_COLOUR, 1)
        lines.append("green: ground truth")
    if request.recorded is not None:
        track(request.recorded.points_t0_m, request.recorded.hypotheses_m[0], OLD_COLOUR, 2)
        lines.append("orange: recorded")
    if outcome.hypotheses_m is not None:
        track(outcome.points_t0_m, outcome.hypotheses_m[0], NEW_COLOUR, 2)
        lines.append(f"cyan: {new_label}")
    elif outcome.refused:
        lines.append(f"{new_label}: {outcome.refused[:60]}")
    for i, text in enumerate(lines):  # white on a black box: readable on any scene
        left, top, right, bottom = draw.textbbox((4, 4 + 12 * i), text)
        draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=(0, 0, 0))
        colour = {"green": TRUTH_COLOUR, "orange": OLD_COLOUR, "cyan": NEW_COLOUR}.get(text.split(":")[0],
                                                                                       (255, 255, 255))
        draw.text((4, 4 + 12 * i), text, fill=colour)


# --- report ------------------------------------------------------------------------------------------------------
def outcome_rows(outcomes: list[Outcome]) -> list[dict]:
    """One JSON-able row per request."""
    rows = []
    for o in outcomes:
        r = o.request
        rows.append({
            "stamp_s": r.stamp_ns / NS, "instruction": r.instruction, "model_instruction": o.model_instruction,
            "episode": r.episode, "refused": o.refused, "compute_ms": o.compute_ms,
            "metrics": o.metrics, "recorded_metrics": o.recorded_metrics,
            "max_diff_to_recorded_m": o.max_diff_to_recorded_m,
            "hypotheses": None if o.hypotheses_m is None else int(o.hypotheses_m.shape[0]),
        })
    return rows


def format_outcomes(outcomes: list[Outcome], summary: dict, label: str) -> str:
    """The per-request table and the summary line the CLI prints."""
    lines = [f"{'stamp s':>10} {'ADE@1 rec':>9} {'ADE@1 ' + label[:8]:>15} {'FDE@1 ' + label[:8]:>15} "
             f"{'max diff m':>10}  instruction"]
    for o in outcomes:
        def cell(m: dict | None, key: str) -> str:
            return f"{m['k1'][key]:.4f}" if m is not None else "-"

        diff = "-" if o.max_diff_to_recorded_m is None else f"{o.max_diff_to_recorded_m:.2e}"
        text = o.request.instruction[:48] + (f"  [{o.refused[:40]}]" if o.refused else "")
        lines.append(f"{o.request.stamp_ns / NS:>10.3f} {cell(o.recorded_metrics, 'ade_best'):>9} "
                     f"{cell(o.metrics, 'ade_best'):>15} {cell(o.metrics, 'fde_best'):>15} {diff:>10}  {text}")
    k1 = summary["k1"]
    lines.append(f"{summary['requests']} requests, {summary['forecast']} forecast, {summary['refused']} refused, "
                 f"{summary['scored']} scored against ground truth"
                 + (f"; mean ADE@1 {k1['ade_best']:.4f} m, FDE@1 {k1['fde_best']:.4f} m" if k1 else ""))
    if summary["max_diff_to_recorded_m"] is not None:
        lines.append(f"largest difference to the recorded forecasts: {summary['max_diff_to_recorded_m']:.2e} m over "
                     f"{summary['compared_to_recorded']} forecasts")
    return "\n".join(lines)


__all__ = ["FRAME_MODES", "Outcome", "RecordedForecast", "Recording", "RecordingTopics", "ReforecastError",
           "Request", "BagReadError", "forecast_requests", "format_outcomes", "ground_truth_tracks", "outcome_rows",
           "read_requests", "render_video", "score_forecast", "summarize_outcomes", "write_bag"]
