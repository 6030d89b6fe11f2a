"""The closed policy loop, once: observe → predict a chunk → joint set-points by IK → execute → observe.

Both ways of running a policy use this loop: the harness agent (:mod:`molmomotion_policies.agent`, a
PyBullet world stepped in-process) and the ROS policy node (a camera and a ros2_control arm through
messages). Each hands it a :class:`PolicyRobot`, which only moves data: frames in, joint states in,
set-points out. The decisions (:class:`~molmomotion_policies.controller.PolicyController`) and the IK
(:func:`~molmomotion_policies.controller.chunk_joint_targets`, the planner's kinematics) are the same in
both, so an episode in the harness and one through the graph command the same set-points from the same
frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple, Protocol

import numpy as np

from molmomotion_ros.camera import PinholeCamera

from .controller import PolicyController, arm_state_from_joints, chunk_joint_targets, gripper_segments


class Frame(NamedTuple):
    """One RGB-D frame and the camera that took it (intrinsics and the world pose of its optical frame)."""

    rgb: np.ndarray  # (h, w, 3) uint8
    depth_m: np.ndarray  # (h, w) float32 metres, NaN = no return
    camera: PinholeCamera


class PolicyRobot(Protocol):
    """What the loop needs from a robot."""

    def joints(self) -> tuple[np.ndarray, np.ndarray]:
        """Arm joint positions (7,) rad and finger positions (2,) m, now."""

    def command_gripper(self, closed: bool) -> None:
        """Close (with force) or open the gripper; the next set-points follow it."""

    def follow(self, joint_targets_rad: np.ndarray) -> None:
        """Hold each row of (n, 7) for one 1/15 s sample, in order; returns when the last one's slot ends."""

    def observe(self) -> Frame | None:
        """A frame taken after the set-points so far were executed; None ends the episode (no frame came)."""


@dataclass
class EpisodeReport:
    chunks: int = 0
    samples: int = 0
    ik_failures: int = 0
    reason: str = ""  # why the loop stopped: the controller's reason, "" = idle after a release

    def as_dict(self) -> dict:
        return asdict(self)


class NoFrame(RuntimeError):
    """The robot gave no frame to observe; the message says after which chunk."""


def run_policy_loop(controller: PolicyController, robot: PolicyRobot, kinematics, first: Frame,
                    on_chunk=None) -> EpisodeReport:
    """Run an episode the controller was :meth:`~PolicyController.reset` for, starting from ``first``,
    until the controller finishes. ``on_chunk(report, joint_targets)`` (optional) sees each chunk's
    set-points before they are executed. Raises :class:`NoFrame` when the robot has no next frame."""
    report, frame = EpisodeReport(), first
    closed = False  # a reset opens the gripper
    while True:
        q_arm, fingers = robot.joints()
        state = arm_state_from_joints(kinematics, q_arm, fingers)
        chunk = controller.next_chunk(frame.rgb, frame.depth_m, frame.camera, state)
        targets, failures = chunk_joint_targets(kinematics, chunk, q_arm)
        report.chunks += 1
        report.samples += len(targets)
        report.ik_failures += failures
        if on_chunk is not None:
            on_chunk(report, targets)
        for start, stop, segment_closed in gripper_segments(chunk.gripper_closed):
            if segment_closed != closed:
                closed = segment_closed
                robot.command_gripper(closed)
            robot.follow(targets[start:stop])
        if controller.finished:
            report.reason = controller.reason
            return report
        frame = robot.observe()
        if frame is None:
            raise NoFrame(f"no camera frame after chunk {report.chunks}")
