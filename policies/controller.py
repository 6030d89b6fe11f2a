"""The closed-loop policy's decisions, free of any simulator or middleware.

:class:`PolicyController` turns what a camera-and-encoder robot knows — the RGB-D frame, the camera,
the grasp target's pose from forward kinematics, the gripper width — into the next set-points of the
grasp target (15 fps samples) and gripper commands, and says when the episode is over. Two adapters
execute them: the harness agent (:mod:`molmomotion_policies.agent`, the simulator's IK and position
controllers) and the ROS manipulation node (pinocchio IK → trajectory_msgs/JointTrajectory), so a
policy evaluated in the harness and one driving an arm through the ROS graph decide identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from molmomotion_ros.robot import TABLE_TOP_Z_M, WORKSPACE_X_M, WORKSPACE_Y_M

from .model import GoalConditionedPolicy
from .observation import (
    FORECAST_POINTS,
    FORECAST_STEPS,
    PolicyError,
    ee_pixel_model,
    frame_inputs,
    proprioception,
    subsample_forecast,
)

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
FORECAST_FM_STEPS = 6  # the forecasting pipeline's (PIPELINE_FM_STEPS), which C was always evaluated with


def shipped_policy(name: str) -> Path:
    """A checkpoint shipped in policies/checkpoints (``A``, ``B``, ...) or a path, checked to exist."""
    path = CHECKPOINT_DIR / f"{name}.pt" if "/" not in name and not name.endswith(".pt") else Path(name)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))) or "none"
        raise PolicyError(f"no policy checkpoint {name!r} (looked at {path}; shipped: {shipped})")
    return path


@dataclass(frozen=True)
class AgentConfig:
    max_samples: int = 150  # 15 fps samples per episode (10 s; the oracle's demonstrations take 3.3–4.7 s)
    execute_steps: int = 4  # of each chunk before observing again
    max_step_m: float = 0.05  # per sample (0.75 m/s): the safety clamp on a set-point's jump
    workspace_margin_m: float = 0.06  # set-points may leave the task workspace by this much
    min_height_m: float = 0.008  # above the table top, for the grasp target
    max_height_m: float = 0.45
    idle_motion_m: float = 0.01  # a chunk moving less than this (gripper open, after a release) is idle
    idle_chunks: int = 2  # consecutive idle chunks after a release end the episode
    ensemble_decay: float = 0.0  # > 0: temporal ensembling (ACT) of the chunks that cover a sample, weights
    #                              exp(-decay * k) for the k-th newest; 0: the newest chunk alone
    forecast_fm_steps: int = FORECAST_FM_STEPS  # Euler steps of the FM sampler of a forecast-conditioned policy (C)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise PolicyError(f"AgentConfig.{name} must be a number, got {value!r}")
        positive = ("max_samples", "execute_steps", "max_step_m", "max_height_m", "idle_chunks", "forecast_fm_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise PolicyError(f"AgentConfig.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("max_samples", "execute_steps", "idle_chunks", "forecast_fm_steps"):
            if int(getattr(self, name)) != getattr(self, name):
                raise PolicyError(f"AgentConfig.{name} must be a whole number, got {getattr(self, name)!r}")
        if min(self.workspace_margin_m, self.min_height_m, self.idle_motion_m, self.ensemble_decay) < 0:
            raise PolicyError("AgentConfig margins, heights, idle motion and ensemble_decay must be >= 0")


@dataclass(frozen=True)
class ArmState:
    """The robot's own state when a frame is taken (world frame, metres, radians)."""

    ee_position_m: np.ndarray  # (3,) grasp target
    ee_yaw_rad: float  # of the pointing-down gripper; fingers close along (sin yaw, -cos yaw)
    gripper_width_m: float  # between the fingers


@dataclass(frozen=True)
class ChunkCommand:
    """The samples to execute now, one per 1/15 s: grasp-target set-points and gripper commands."""

    setpoints_m: np.ndarray  # (n, 3) world frame, already clamped to the safety limits
    yaw_rad: np.ndarray  # (n,) absolute gripper yaw per sample
    gripper_closed: np.ndarray  # (n,) bool: the command from each sample on


def pack_forecast(points_world_m: np.ndarray, points_t0_world_m: np.ndarray, valid: bool) -> dict:
    """The forecast-conditioned policy's forecast input: tracks already subsampled to (P, F=8, 3) and the
    t0 points (P, 3), world frame; ``valid`` False (no forecast) zeroes them, as in training."""
    points = np.asarray(points_world_m, np.float32)
    points_t0 = np.asarray(points_t0_world_m, np.float32)
    if points.shape != (FORECAST_POINTS, FORECAST_STEPS, 3) or points_t0.shape != (FORECAST_POINTS, 3):
        raise PolicyError(f"the policy reads a ({FORECAST_POINTS}, {FORECAST_STEPS}, 3) forecast and "
                          f"({FORECAST_POINTS}, 3) t0 points, got {points.shape} and {points_t0.shape}")
    valid = bool(valid and np.all(np.isfinite(points)) and np.all(np.isfinite(points_t0)))
    return {"forecast_world_m": torch.from_numpy(np.nan_to_num(points))[None],
            "forecast_points_t0_world_m": torch.from_numpy(np.nan_to_num(points_t0))[None],
            "forecast_valid": torch.tensor([valid])}


def forecast_inputs(tracks_world_m: np.ndarray, points_t0_world_m: np.ndarray) -> dict:
    """A forecast hypothesis at the forecasters' resolution (P, 32, 3) → :func:`pack_forecast`'s input."""
    tracks = np.asarray(tracks_world_m, np.float32)
    if tracks.ndim != 3 or tracks.shape[1] < FORECAST_STEPS * 4:
        raise PolicyError(f"need forecast tracks (P, 32, 3), got {tracks.shape}")
    return pack_forecast(subsample_forecast(tracks), points_t0_world_m, True)


class PolicyController:
    """One episode of a goal-conditioned policy: :meth:`reset`, then :meth:`next_chunk` per frame
    until :attr:`finished`; :attr:`reason` says why it stopped (empty: went idle after a release)."""

    def __init__(self, policy: GoalConditionedPolicy, config: AgentConfig | None = None):
        from molmomotion_ros.forecasting.text import default_text_encoder

        self.policy = policy.eval()
        self.config = config or AgentConfig()
        self._text = default_text_encoder()
        self.reset("")

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, config: AgentConfig | None = None):
        """→ (controller, checkpoint metadata)."""
        policy, meta = GoalConditionedPolicy.from_checkpoint(shipped_policy(str(checkpoint)))
        return cls(policy, config), meta

    @property
    def needs_forecast(self) -> bool:
        return bool(self.policy.cfg.forecast_conditioning)

    def reset(self, instruction: str, forecast: dict | None = None) -> None:
        """A new episode; ``forecast`` from :func:`forecast_inputs` for a forecast-conditioned policy."""
        if instruction and self.needs_forecast and forecast is None:
            raise PolicyError("this policy is forecast-conditioned: reset it with the forecast made at t0")
        self.instruction = instruction
        self.forecast = forecast
        self.samples_used = 0
        self.closed = False
        self.released = False
        self._idle = 0
        self._encoding_t0 = None
        self._chunks: list[tuple[int, np.ndarray, np.ndarray]] = []  # (first sample, world set-points, yaw)
        self.finished = False
        self.reason = ""

    @torch.no_grad()
    def next_chunk(self, rgb: np.ndarray, depth_m: np.ndarray, camera, state: ArmState) -> ChunkCommand:
        """The samples to execute after observing this frame (empty once :attr:`finished`).

        Call :meth:`next_chunk` again after they were executed; the controller counts them as executed.
        """
        cfg = self.config
        if self.finished:
            return ChunkCommand(np.zeros((0, 3)), np.zeros(0), np.zeros(0, bool))
        pos_m, yaw_rad, closed_cmd = self._predict(rgb, depth_m, camera, state)
        if cfg.ensemble_decay > 0:
            pos_m, yaw_rad = self._ensemble(state, pos_m, yaw_rad)
        n = min(cfg.execute_steps, len(pos_m), cfg.max_samples - self.samples_used)
        setpoints, setpoint = np.zeros((n, 3)), np.asarray(state.ee_position_m, float).copy()
        for j in range(n):
            setpoint = self.safe_setpoint(setpoint, state.ee_position_m + pos_m[j])
            setpoints[j] = setpoint
        closed = np.asarray(closed_cmd[:n], bool)
        for c in closed:  # gripper bookkeeping, sample by sample as they will execute
            if bool(c) != self.closed:
                self.closed = bool(c)
                self.released = self.released or not self.closed
        self.samples_used += n
        moving = float(np.abs(pos_m[: cfg.execute_steps]).max())
        self._idle = self._idle + 1 if (self.released and not self.closed and moving < cfg.idle_motion_m) else 0
        if self._idle >= cfg.idle_chunks:
            self.finished, self.reason = True, ""
        elif self.samples_used >= cfg.max_samples:
            self.finished, self.reason = True, f"policy used its budget of {cfg.max_samples} samples"
        return ChunkCommand(setpoints, state.ee_yaw_rad + yaw_rad[:n].astype(float), closed)

    def _ensemble(self, state: ArmState, pos_m: np.ndarray, yaw_rad: np.ndarray):
        """Offsets (from the current pose) of the weighted mean of every held chunk's prediction for each
        coming sample, this chunk's included; chunks are held in the world frame by the sample they start at."""
        t0 = self.samples_used + 1
        self._chunks.append((t0, state.ee_position_m + pos_m, state.ee_yaw_rad + yaw_rad))
        self._chunks = [c for c in self._chunks if c[0] + len(c[1]) > t0]
        out_pos, out_yaw = pos_m.copy(), yaw_rad.copy()
        for j in range(len(pos_m)):
            covering = [c for c in self._chunks if 0 <= t0 + j - c[0] < len(c[1])]  # oldest first
            weights = np.exp(-self.config.ensemble_decay * np.arange(len(covering))[::-1])  # newest: k = 0
            weights /= weights.sum()
            out_pos[j] = weights @ np.stack([c[1][t0 + j - c[0]] for c in covering]) - state.ee_position_m
            out_yaw[j] = weights @ np.array([c[2][t0 + j - c[0]] for c in covering]) - state.ee_yaw_rad
        return out_pos, out_yaw

    def _predict(self, rgb, depth_m, camera, state: ArmState):
        """One chunk: position offsets (C, 3) m, yaw offsets (C,) rad, gripper closed (C,) bool."""
        small_rgb, xyz = frame_inputs(rgb, depth_m, camera.K)
        tokens, mask = self._text.encode([self.instruction])
        encoding = self.policy.encode(
            torch.from_numpy(small_rgb)[None], torch.from_numpy(xyz)[None], torch.from_numpy(tokens),
            torch.from_numpy(mask), torch.from_numpy(camera.T_world_cam)[None].float(),
            torch.from_numpy(ee_pixel_model(state.ee_position_m, camera))[None],
        )
        proprio = proprioception(state.ee_position_m, state.ee_yaw_rad, state.gripper_width_m, self.closed,
                                 self.samples_used)[None]
        if self._encoding_t0 is None:
            self._encoding_t0 = encoding
        chunk = self.policy(encoding, torch.from_numpy(proprio), self._encoding_t0, **(self.forecast or {}))
        return chunk.pos_m[0].numpy(), chunk.yaw_rad[0].numpy(), (chunk.gripper_logits[0] > 0).numpy()

    def safe_setpoint(self, previous_m: np.ndarray, wanted_m: np.ndarray) -> np.ndarray:
        """Clamp a set-point to the step limit, the (widened) workspace and the height band over the table."""
        cfg = self.config
        step = wanted_m - previous_m
        norm = float(np.linalg.norm(step))
        if norm > cfg.max_step_m:
            step *= cfg.max_step_m / norm
        target = previous_m + step
        m = cfg.workspace_margin_m
        target[0] = np.clip(target[0], WORKSPACE_X_M[0] - m, WORKSPACE_X_M[1] + m)
        target[1] = np.clip(target[1], WORKSPACE_Y_M[0] - m, WORKSPACE_Y_M[1] + m)
        target[2] = np.clip(target[2], TABLE_TOP_Z_M + cfg.min_height_m, TABLE_TOP_Z_M + cfg.max_height_m)
        return target


# --- joint-space execution (the ROS manipulation node; the harness uses the simulator's own IK) -------
def arm_state_from_joints(kinematics, q_arm_rad: np.ndarray, finger_positions_m) -> ArmState:
    """:class:`ArmState` from joint positions: forward kinematics of the grasp target (world frame) and
    the fingers' opening summed, as the simulator reports them."""
    T = kinematics.fk(np.asarray(q_arm_rad, float))
    # The fingers close along the hand's y axis = (sin yaw, -cos yaw) when pointing down (World.ee_yaw).
    yaw = float(np.arctan2(T[0, 1], -T[1, 1]))
    return ArmState(T[:3, 3].copy(), yaw, float(np.sum(finger_positions_m)))


def chunk_joint_targets(kinematics, chunk: ChunkCommand, q_start_rad: np.ndarray) -> tuple[np.ndarray, int]:
    """Joint set-points (n, 7) for the chunk's grasp-target set-points, each IK solution seeded by the
    previous one, and how many samples had no solution (those hold the previous set-point).

    The gripper is symmetric under a half turn, so a yaw the last joint cannot reach is tried turned by
    ±pi before giving up."""
    from molmomotion_ros.planning.kinematics import IKError
    from molmomotion_ros.planning.skills import down_pose

    q_prev = np.asarray(q_start_rad, float)
    targets, failures = np.zeros((len(chunk.setpoints_m), 7)), 0
    for j, (position, yaw) in enumerate(zip(chunk.setpoints_m, chunk.yaw_rad, strict=True)):
        q = None
        for turn in (0.0, np.pi, -np.pi):
            try:
                q = kinematics.ik(down_pose(position, float(yaw) + turn), seeds=[q_prev], max_solutions=1,
                                  n_random_seeds=2)
                break
            except IKError:
                continue
        if q is None:
            failures += 1
            q = q_prev
        targets[j] = q_prev = q
    return targets, failures


def gripper_segments(gripper_closed: np.ndarray) -> list[tuple[int, int, bool]]:
    """Runs of equal gripper commands as (start, stop, closed): a gripper change splits the chunk."""
    closed = np.asarray(gripper_closed, bool)
    segments, start = [], 0
    for j in range(1, len(closed) + 1):
        if j == len(closed) or closed[j] != closed[start]:
            segments.append((start, j, bool(closed[start])))
            start = j
    return segments


def hold_times(n: int, sample_s: float, rise_s: float) -> np.ndarray:
    """time_from_start of a zero-order hold of ``n`` set-points, one per ``sample_s``: each is reached
    ``rise_s`` into its slot and held to the slot's end, two trajectory points per sample."""
    if not 0 < rise_s < sample_s:
        raise PolicyError(f"the set-point rise time must lie in (0, {sample_s}) s, got {rise_s}")
    starts = np.arange(n) * sample_s
    return np.stack([starts + rise_s, starts + sample_s], axis=1).reshape(-1)
