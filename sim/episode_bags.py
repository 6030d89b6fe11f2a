"""One rosbag2 bag (MCAP) per harness episode: ``molmomotion sim-eval --record DIR``.

A failed episode can then be replayed (``molmomotion play``) and watched (Foxglove, RViz) with the topics the
``sim_eval`` graph would have published for it, without a ROS graph: the harness has none. Each bag is the folder
``DIR/<suite>-<family>-<seed>/`` (metadata.yaml and ``<suite>-<family>-<seed>_0.mcap``), named as the graph's
per-episode recording names its bags (:func:`molmomotion_ros.bags.episode_split.episode_bag_name`), so
``molmomotion reforecast`` and ``eval-forecast --bag`` take a folder of either; written by
:class:`molmomotion_ros.bags.BagWriter`. Topics, types, frames, encodings and offered QoS are sim_node's (and
forecaster_node's for the forecasts), their relative names resolved at the root namespace:

* at the reset (the scene built and settled), in sim_node's order: ``/sim/episode`` (JSON, as sim_node's),
  ``/sim/ground_truth`` (the oracle's target pose trace, :mod:`.ground_truth`), ``/camera/pose``, ``/instruction``;
  then ``/tf_static`` (world → the camera's optical frame; the graph has no such transform, a viewer needs one to
  place the images) and a camera frame;
* every ``1 / camera_rate_hz`` of simulated time: ``/camera/color/image_raw`` (rgb8), ``/camera/depth/image_raw``
  (32FC1 metres, NaN = no return), ``/camera/color/camera_info`` and ``/camera/pose`` (the optical frame in world);
  every ``1 / joint_state_rate_hz``: ``/joint_states`` (arm and finger joints, positions and velocities) and
  ``/clock`` (the bag plays on its simulated time, as a graph recording does);
* the frame each action starts from, exactly the observation the agent was given, with its stamp (written once
  when a scheduled frame at that stamp is the same image);
* when the agent made a forecast for that action (a planner agent's ``last_result``): ``/forecast/trajectory``,
  ``/forecast/goal_pose``, ``/forecast/scores`` and ``/forecast/hypotheses``, stamped with that frame's stamp.

Stamps are the episode's simulated time (``World.time_s``, from 0 at each episode's scene build); each message's
log time is its stamp. Messages are built with :mod:`molmomotion_ros.conversions` and serialised to CDR by
:class:`molmomotion_ros.bags.codec.MessageCodec` (``mcap_ros2``'s encoder, the installed message definitions):
nothing here imports rclpy. Stepping the world is recorded only while the agent is not deciding, so a planner that
simulates futures in a saved-and-restored copy of the physics (``planner-oracle``) leaves no imagined frames in the
bag.
"""

from __future__ import annotations

import array
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from geometry_msgs.msg import TransformStamped
from mcap.writer import LIBRARY_IDENTIFIER
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from molmomotion_ros import conversions
from molmomotion_ros.bags import (
    BagFolderError,
    BagSummary,
    BagWriter,
    DefinitionSource,
    MessageDefinition,
    QosProfile,
    TopicMetadata,
    prepare_bag_folder,
)
from molmomotion_ros.bags.codec import MessageCodec
from molmomotion_ros.bags.episode_split import episode_bag_name
from molmomotion_ros.conversions.joints import joint_state_msg, time_msg
from molmomotion_ros.robot import ARM_JOINT_NAMES, FINGER_JOINT_NAMES

from .ground_truth import GroundTruthOracle
from .suites import EpisodeSpec
from .tasks.base import Task
from .world import ARM_JOINTS, FINGER_JOINTS, Observation, World

log = logging.getLogger(__name__)

CAMERA_RATE_HZ = 15.0  # MolmoMotion's frame rate, half sim_node's default: rendering is most of the cost
JOINT_STATE_RATE_HZ = 100.0  # sim_node's default, as its /clock's
WORLD_FRAME = "world"  # sim_node's and forecaster_node's world_frame default
LIBRARY = f"molmomotion_ros sim-eval; {LIBRARY_IDENTIFIER}"
JOINT_NAMES = ARM_JOINT_NAMES + FINGER_JOINT_NAMES

# The QoS the graph reports for sim_node's and forecaster_node's publishers (history and depth are not sent in
# discovery: rosbag2 stores them as unknown/0, as molmomotion record does).
SENSOR_DATA = QosProfile(reliability="best_effort", durability="volatile")
LATCHED = QosProfile(reliability="reliable", durability="transient_local")
RELIABLE = QosProfile(reliability="reliable", durability="volatile")

# topic → (type, offered QoS)
TOPICS: dict[str, tuple[str, QosProfile]] = {
    "/camera/color/image_raw": ("sensor_msgs/msg/Image", SENSOR_DATA),
    "/camera/depth/image_raw": ("sensor_msgs/msg/Image", SENSOR_DATA),
    "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", SENSOR_DATA),
    "/camera/pose": ("geometry_msgs/msg/PoseStamped", LATCHED),
    "/joint_states": ("sensor_msgs/msg/JointState", RELIABLE),
    "/clock": ("rosgraph_msgs/msg/Clock", RELIABLE),
    "/tf_static": ("tf2_msgs/msg/TFMessage", LATCHED),
    "/instruction": ("std_msgs/msg/String", LATCHED),
    "/sim/episode": ("std_msgs/msg/String", LATCHED),
    "/sim/ground_truth": ("trajectory_msgs/msg/MultiDOFJointTrajectory", LATCHED),
    "/forecast/trajectory": ("trajectory_msgs/msg/MultiDOFJointTrajectory", LATCHED),
    "/forecast/hypotheses": ("trajectory_msgs/msg/MultiDOFJointTrajectory", LATCHED),
    "/forecast/scores": ("std_msgs/msg/Float32MultiArray", LATCHED),
    "/forecast/goal_pose": ("geometry_msgs/msg/PoseStamped", LATCHED),
}


@dataclass(frozen=True)
class BagOptions:
    """Where and how the episodes are recorded (picklable: each worker process records its own episodes)."""

    root: Path
    suite: str
    camera_rate_hz: float = CAMERA_RATE_HZ
    joint_state_rate_hz: float = JOINT_STATE_RATE_HZ
    depth_encoding: str = "32FC1"  # sim_node's default; 16UC1 millimetres is its other choice
    compression: str = "zstd"
    ground_truth: bool = True

    def __post_init__(self):
        for name in ("camera_rate_hz", "joint_state_rate_hz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    def folder(self, family: str, seed: int) -> Path:
        """``root/<suite>-<family>-<seed>`` (characters a folder name should not hold become ``_``)."""
        return Path(self.root) / episode_bag_name({"suite": self.suite, "family": family, "seed": int(seed)})


def prepare_bag_folders(options: BagOptions, episodes: Iterable[EpisodeSpec]) -> dict[tuple[str, int], Path]:
    """Create every episode's (empty) bag folder before the first episode runs; BagFolderError when one already
    holds something (a bag is never overwritten or mixed with another) or cannot be written. A message type
    without an installed definition is a DefinitionNotFoundError now, not in every episode."""
    definitions = DefinitionSource()
    for type_name, _ in TOPICS.values():
        definitions.get(type_name)
    folders: dict[tuple[str, int], Path] = {}
    for spec in episodes:
        key = (spec.family, int(spec.seed))
        folder = options.folder(*key)
        if key in folders or folder in folders.values():
            raise BagFolderError(f"cannot record {spec.family} seed {spec.seed} into {str(folder)!r}: another "
                                 "episode's bag goes there (one bag per episode)")
        folders[key] = prepare_bag_folder(folder)
    return folders


class _CdrView:
    """A message as mcap_ros2's encoder reads it (by attribute): rclpy keeps fixed-size arrays (CameraInfo.k)
    as numpy arrays, which the encoder refuses; they are handed over as lists."""

    __slots__ = ("_msg",)

    def __init__(self, msg):
        self._msg = msg

    def __getattr__(self, name: str):
        return _cdr_value(getattr(self._msg, name))


def _cdr_value(value):
    if isinstance(value, (str, bytes, int, float, array.array)):  # most fields: as they are
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return value if not value or isinstance(value[0], (str, int, float)) else [_cdr_value(v) for v in value]
    if hasattr(value, "get_fields_and_field_types"):  # a nested message
        return _CdrView(value)
    return value


def type_hash(definitions: DefinitionSource, type_name: str) -> str:
    """The type's RIHS01 hash from the installed ``<pkg>/msg/<Type>.json`` (what the graph reports), or ""."""
    package, _, name = type_name.partition("/msg/")
    share = definitions.share_dir(package)
    try:
        hashes = json.loads((share / "msg" / f"{name}.json").read_text(encoding="utf-8"))["type_hashes"]
        return next(h["hash_string"] for h in hashes if h["type_name"] == type_name)
    except (TypeError, OSError, ValueError, KeyError, StopIteration):
        return ""


class StepHookWorld(World):
    """A World that calls ``on_step`` after every physics step while one is set."""

    on_step: Callable[[], None] | None = None

    def step(self, n: int = 1) -> None:
        if self.on_step is None:
            super().step(n)
            return
        for _ in range(n):
            super().step(1)
            if self.on_step is not None:
                self.on_step()


class _Schedule:
    """Due every ``period_s`` of simulated time from a start; catches up by restarting, never in a burst."""

    def __init__(self, rate_hz: float):
        self.period_s = 1.0 / rate_hz
        self.next_s = math.inf

    def start(self, now_s: float) -> None:
        self.next_s = now_s + self.period_s

    def due(self, now_s: float) -> bool:
        if now_s + 1e-9 < self.next_s:
            return False
        self.next_s += self.period_s
        if self.next_s <= now_s:
            self.next_s = now_s + self.period_s
        return True


class EpisodeBags:
    """One process's recorder: a bag per episode (:meth:`open`), one ground-truth oracle World reused."""

    def __init__(self, options: BagOptions):
        self.options = options
        self.definitions = DefinitionSource()
        self.codec = MessageCodec(self.definitions)
        self._type_hashes: dict[str, str] = {}
        self._oracle: GroundTruthOracle | None = None

    def topic(self, name: str) -> tuple[TopicMetadata, MessageDefinition]:
        """A topic of :data:`TOPICS` as a bag registers it."""
        type_name, qos = TOPICS[name]
        if type_name not in self._type_hashes:
            self._type_hashes[type_name] = type_hash(self.definitions, type_name)
        return TopicMetadata(name, type_name, [qos], self._type_hashes[type_name]), self.codec.definition(type_name)

    def encode(self, type_name: str, msg) -> bytes:
        """CDR of a message object (fixed-size arrays, numpy in rclpy's classes, handed over as lists)."""
        return self.codec.encode(type_name, _CdrView(msg))

    def new_world(self) -> StepHookWorld:
        return StepHookWorld()

    def open(self, episode: EpisodeSpec) -> EpisodeRecording:
        """The episode's bag, created now (BagFolderError when its folder is not empty)."""
        folder = self.options.folder(episode.family, episode.seed)
        writer = BagWriter(folder, compression=self.options.compression, library=LIBRARY)
        return EpisodeRecording(self, writer, episode)

    def ground_truth(self, episode: EpisodeSpec):
        if self._oracle is None:
            self._oracle = GroundTruthOracle()
        return self._oracle.trace(episode.family, episode.seed, episode.options)

    def close(self) -> None:
        if self._oracle is not None:
            self._oracle.close()
            self._oracle = None


class EpisodeRecording:
    """Writes one episode's bag: :meth:`attach` hooks the world and wraps the agent, :meth:`close` finishes it."""

    def __init__(self, bags: EpisodeBags, writer: BagWriter, episode: EpisodeSpec):
        self._bags = bags
        self.options = bags.options
        self.writer = writer
        self.episode = episode
        self.world: StepHookWorld | None = None
        self._camera = _Schedule(self.options.camera_rate_hz)
        self._joints = _Schedule(self.options.joint_state_rate_hz)  # and /clock
        self._last_frame: tuple[int, np.ndarray, np.ndarray] | None = None  # (stamp ns, rgb, depth)
        self._last_result = None
        self.frames = 0

    @property
    def folder(self) -> Path:
        return self.writer.folder

    def attach(self, world: StepHookWorld, agent) -> RecordingAgent:
        """The agent to run the episode with; the world's steps are recorded from the agent's reset on."""
        if not isinstance(world, StepHookWorld):
            raise TypeError(f"recording needs a StepHookWorld (EpisodeBags.new_world), got {type(world).__name__}")
        self.world = world
        return RecordingAgent(agent, self)

    def close(self) -> BagSummary:
        """Unhook the world and finish the bag (also after a failed episode: what was written stays readable)."""
        if self.world is not None:
            self.world.on_step = None
        return self.writer.close()

    # --- what the agent wrapper reports --------------------------------------------------------------
    def on_reset(self, task: Task) -> None:
        world = self.world
        now_s = world.time_s
        stamp = time_msg(now_s)
        episode = {"suite": self.options.suite, "family": task.family, "seed": int(self.episode.seed),
                   "instruction": task.instruction}
        camera = world.camera
        self._write("/sim/episode", String(data=json.dumps(episode)), stamp)
        self._write_ground_truth(stamp)
        self._write("/camera/pose", conversions.pose_stamped(camera.T_world_cam, stamp, WORLD_FRAME), stamp)
        self._write("/instruction", String(data=task.instruction), stamp)
        transform = conversions.matrix_to_transform(camera.T_world_cam)
        tf = TFMessage(transforms=[_transform_stamped(transform, stamp, WORLD_FRAME, camera.frame_id)])
        self._write("/tf_static", tf, stamp)
        self._write_frame(world.render(), stamp)
        self._write_joints_and_clock(stamp)
        self._camera.start(now_s)
        self._joints.start(now_s)
        world.on_step = self._on_step

    def before_act(self, observation: Observation | None) -> None:
        if observation is not None:
            self._write_observation(observation)
        self.world.on_step = None  # the agent's own simulation (a saved-and-restored future) is not the episode

    def after_act(self, agent, observation: Observation | None) -> None:
        self.world.on_step = self._on_step
        result = getattr(agent, "last_result", None)
        if result is not None and result is not self._last_result and observation is not None:
            self._last_result = result
            self._write_forecast(result, time_msg(observation.time_s))

    # --- writing -------------------------------------------------------------------------------------
    def _on_step(self) -> None:
        now_s = self.world.time_s
        if self._joints.due(now_s):
            self._write_joints_and_clock(time_msg(now_s))
        if self._camera.due(now_s):
            self._write_frame(self.world.render(), time_msg(now_s))

    def _write(self, topic: str, msg, stamp) -> None:
        if topic not in self.writer.topics:
            self.writer.add_topic(*self._bags.topic(topic))
        self.writer.write(topic, self._bags.encode(TOPICS[topic][0], msg), _ns(stamp))

    def _write_frame(self, observation: Observation, stamp) -> None:
        camera = observation.camera
        frame = camera.frame_id
        self._write("/camera/color/camera_info", conversions.camera_info_msg(camera, stamp, frame), stamp)
        self._write("/camera/pose", conversions.pose_stamped(camera.T_world_cam, stamp, WORLD_FRAME), stamp)
        self._write("/camera/color/image_raw", conversions.rgb_to_msg(observation.rgb, stamp, frame), stamp)
        self._write("/camera/depth/image_raw", conversions.depth_to_msg(observation.depth_m, stamp, frame,
                                                                        self.options.depth_encoding), stamp)
        self._last_frame = (_ns(stamp), observation.rgb, observation.depth_m)
        self.frames += 1

    def _write_observation(self, observation: Observation) -> None:
        stamp = time_msg(observation.time_s)
        last = self._last_frame
        if last is not None and last[0] == _ns(stamp) and np.array_equal(last[1], observation.rgb) \
                and np.array_equal(last[2], observation.depth_m, equal_nan=True):
            return  # the frame already in the bag at this stamp is this observation
        self._write_frame(observation, stamp)

    def _write_joints_and_clock(self, stamp) -> None:
        world = self.world
        states = world.client.getJointStates(world.robot_id, ARM_JOINTS + FINGER_JOINTS)
        msg = joint_state_msg(JOINT_NAMES, [s[0] for s in states], stamp, velocities_rad_s=[s[1] for s in states])
        self._write("/joint_states", msg, stamp)
        self._write("/clock", Clock(clock=stamp), stamp)

    def _write_ground_truth(self, stamp) -> None:
        if not self.options.ground_truth:
            return
        try:
            truth = self._bags.ground_truth(self.episode)
            msg = conversions.ground_truth_to_msg(truth.times_s, truth.target_poses, stamp, WORLD_FRAME)
        except Exception as err:  # the episode itself is not at stake: its bag goes without ground truth
            log.warning("%s seed %d: no ground truth in the bag: %s: %s", self.episode.family, self.episode.seed,
                        type(err).__name__, err)
            return
        self._write("/sim/ground_truth", msg, stamp)

    def _write_forecast(self, result, stamp) -> None:
        """forecaster_node's outputs for ``result`` (a ForecastPipeline result), in its order: the trajectory, the
        goal pose, then the scores just before the hypotheses they belong to."""
        forecast, points_t0 = result.forecast, result.points_world_t0_m
        try:
            messages = [("/forecast/trajectory",
                         conversions.forecast_to_trajectory(forecast, points_t0, stamp, WORLD_FRAME))]
            if result.target_motion is not None:
                messages.append(("/forecast/goal_pose", conversions.pose_stamped(
                    result.target_motion.goal_pose_world, stamp, WORLD_FRAME)))
            messages.append(("/forecast/scores", conversions.scores_to_msg(forecast.scores)))
            messages.append(("/forecast/hypotheses",
                             conversions.forecast_to_hypotheses(forecast, points_t0, stamp, WORLD_FRAME)))
        except conversions.ConversionError as err:  # a forecast the node could not publish either
            log.warning("%s seed %d: forecast not recorded: %s", self.episode.family, self.episode.seed, err)
            return
        for topic, msg in messages:
            self._write(topic, msg, stamp)


class RecordingAgent:
    """The episode's agent, seen through the recording: it is always given the rendered frame (the bag records
    the frame each action starts from, also for agents that act on privileged state, which get ``None`` as
    before), and its forecast is recorded after it acts. Everything else is the agent's."""

    needs_observation = True

    def __init__(self, agent, recording: EpisodeRecording):
        self._agent = agent
        self._recording = recording

    def __getattr__(self, name: str):
        return getattr(self._agent, name)

    def reset(self, task: Task) -> None:
        self._recording.on_reset(task)
        self._agent.reset(task)

    def act(self, observation: Observation | None, instruction: str):
        self._recording.before_act(observation)
        try:
            return self._agent.act(observation if self._agent.needs_observation else None, instruction)
        finally:
            self._recording.after_act(self._agent, observation)


def _transform_stamped(transform, stamp, parent: str, child: str) -> TransformStamped:
    msg = TransformStamped(transform=transform, child_frame_id=child)
    msg.header.stamp, msg.header.frame_id = stamp, parent
    return msg


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec
