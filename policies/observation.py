"""What a policy sees and does, in one place for the recorder, the trainer and the agent.

Observation: the current RGB-D frame at the encoder's 80x60 input size, proprioception (grasp-target
position in the world, gripper yaw, gripper width and command), the instruction, and optionally a
forecast of the target's motion made at t0 (P=8 points, F=8 steps, world frame).
Action: a chunk of ``CHUNK_STEPS`` future 15 fps samples of the grasp target, as offsets from the
current pose (world frame, metres; yaw in radians), plus the gripper command at each sample.
"""

from __future__ import annotations

import numpy as np

from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.forecasting.preprocess import depth_to_xyz_cam, pixels_to_model, resize_inputs
from molmomotion_ros.geometry import quat_to_matrix
from molmomotion_ros.robot import GRIPPER_OPEN_M
from molmomotion_sim.world import PHYSICS_HZ, TRACE_HZ

MODEL_WIDTH, MODEL_HEIGHT = 80, 60  # the encoder's input size (EncoderConfig)
CHUNK_STEPS = 8  # action chunk: 8 samples at 15 fps = 0.53 s
PHYSICS_STEPS_PER_SAMPLE = PHYSICS_HZ // TRACE_HZ  # 16
FORECAST_POINTS = 8  # MolmoMotion's P
FORECAST_STEPS = 8  # MolmoMotion's robot policies were conditioned on F=8 steps
FORECAST_EVERY = 4  # of the shipped forecasters' 32 stride-2 steps: 8 steps over 4.3 s
WORKSPACE_CENTRE_M = np.array([0.5, 0.0, 0.75])  # proprioception is centred here and scaled by POSITION_SCALE_M
POSITION_SCALE_M = 0.1
PROPRIO_DIM = 8  # (ee − centre)/scale (3), sin/cos yaw (2), width/open width (1), closed command (1), time (1)
TIME_SCALE_SAMPLES = 100.0  # elapsed 15 fps samples since t0 enter divided by this
FOOTPRINT_RADIUS_M = 0.04  # the target's footprint: points this close (xy) to its grounded position...
FOOTPRINT_MIN_HEIGHT_M = 0.01  # ...and this far above the table (objects stand >= 9 cm apart)
FOOTPRINT_TOP_BAND_M = 0.008  # ...and this close to the highest of them (the top face)


class PolicyError(ValueError):
    """Bad policy input: demonstrations, checkpoints or experiment settings that cannot be used."""


def yaw_from_quat(quat_xyzw: np.ndarray) -> np.ndarray:
    """Yaw of a down-pointing gripper (World.ee_yaw's convention) from quaternions (..., 4) → (...)."""
    q = np.asarray(quat_xyzw, dtype=float)
    flat = q.reshape(-1, 4)
    axes = np.stack([quat_to_matrix(x)[:, 1] for x in flat])  # finger axis = (sin yaw, −cos yaw, 0)
    return np.arctan2(axes[:, 0], -axes[:, 1]).reshape(q.shape[:-1])


def wrap_angle(angle_rad: np.ndarray) -> np.ndarray:
    return (np.asarray(angle_rad) + np.pi) % (2 * np.pi) - np.pi


def frame_inputs(rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB (h, w, 3) uint8 + depth (h, w) m → encoder-size rgb (3, 60, 80) uint8 and xyz (3, 60, 80) float32
    in the camera frame (NaN = no return), exactly as the forecasters preprocess their frames."""
    rgb_small, xyz_small = resize_inputs(rgb, depth_to_xyz_cam(depth_m, K), MODEL_WIDTH, MODEL_HEIGHT)
    return rgb_small.numpy(), xyz_small.numpy()


def ee_pixel_model(ee_pos_world_m: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """Where the grasp target projects in the encoder's input (2,) model pixels, clipped to the image."""
    uv, _ = camera.project(camera.world_to_cam(np.asarray(ee_pos_world_m, float)[None]))
    uv_model = pixels_to_model(uv, (camera.width, camera.height), (MODEL_WIDTH, MODEL_HEIGHT))[0]
    return np.clip(np.nan_to_num(uv_model), 0, [MODEL_WIDTH - 1, MODEL_HEIGHT - 1]).astype(np.float32)


def proprioception(ee_pos_world_m, ee_yaw_rad, gripper_width_m, gripper_closed, elapsed_samples) -> np.ndarray:
    """(..., PROPRIO_DIM) float32 from arrays with leading shape (...). The robot's own clock (samples since
    t0) tells phases apart that look alike, e.g. the gripper open above the target before and after."""
    pos = (np.asarray(ee_pos_world_m, float) - WORKSPACE_CENTRE_M) / POSITION_SCALE_M
    yaw = np.asarray(ee_yaw_rad, float)
    width = np.asarray(gripper_width_m, float) / (2 * GRIPPER_OPEN_M)
    closed = np.asarray(gripper_closed, float)
    elapsed = np.asarray(elapsed_samples, float) / TIME_SCALE_SAMPLES
    return np.concatenate([pos, np.sin(yaw)[..., None], np.cos(yaw)[..., None], width[..., None],
                           closed[..., None], elapsed[..., None]], -1).astype(np.float32)


def action_chunks(ee_pos_world_m: np.ndarray, ee_yaw_rad: np.ndarray, gripper_closed: np.ndarray,
                  indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels at trace samples ``indices`` (M,): offsets of samples k+1..k+CHUNK_STEPS from sample k.

    → position offsets (M, C, 3) m, yaw offsets (M, C) rad, gripper closed (M, C) bool. Samples past
    the trace's end repeat its last one (the arm at home, gripper open).
    """
    T = len(ee_pos_world_m)
    future = np.minimum(np.asarray(indices)[:, None] + np.arange(1, CHUNK_STEPS + 1)[None], T - 1)  # (M, C)
    pos = ee_pos_world_m[future] - ee_pos_world_m[indices][:, None]
    yaw = wrap_angle(ee_yaw_rad[future] - ee_yaw_rad[indices][:, None])
    return pos.astype(np.float32), yaw.astype(np.float32), gripper_closed[future].astype(bool)


def subsample_forecast(points_world_m: np.ndarray) -> np.ndarray:
    """A forecast hypothesis (P, 32, 3) → (P, FORECAST_STEPS, 3): every FORECAST_EVERY-th step."""
    steps = np.arange(FORECAST_EVERY - 1, FORECAST_EVERY * FORECAST_STEPS, FORECAST_EVERY)
    return np.asarray(points_world_m)[:, steps].astype(np.float32)
