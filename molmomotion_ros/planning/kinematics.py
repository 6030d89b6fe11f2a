"""Forward and inverse kinematics of the Franka Panda's grasp target (pinocchio).

The model is pybullet_data's ``franka_panda/panda.urdf`` (the arm the harness simulates), its base
placed in the world by ``base_pose`` and the fingers held open. Poses are 4x4 homogeneous matrices in
the world frame, joint vectors the 7 arm joints in radians.

IK is damped least squares on the SE(3) log error of the grasp target, clamped to the joint limits of
``config/robot.yaml`` (tighter than the URDF's), from several seeds: the caller's (the current joints
first), then random ones drawn from a seeded generator, so a call is deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..robot import GRIPPER_OPEN_M, HOME_JOINTS_RAD, ROBOT_BASE_M
from .limits import JointLimits

EE_FRAME = "panda_grasptarget"


class IKError(ValueError):
    """No joint configuration within the limits reaches the pose (from any of the seeds tried)."""


def panda_urdf_path() -> Path:
    import pybullet_data

    return Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"


def translation(xyz) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = xyz
    return T


def pose_error(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """Position distance (m) and rotation angle (rad) between two 4x4 poses."""
    position_m = float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]))
    cos_angle = (np.trace(T_a[:3, :3].T @ T_b[:3, :3]) - 1.0) / 2.0
    return position_m, float(np.arccos(np.clip(cos_angle, -1.0, 1.0)))


class PandaKinematics:
    """FK/IK of the grasp target in the world frame.

    ``urdf``: path of a Panda URDF (default pybullet_data's); ``base_pose``: 4x4 world pose of
    ``panda_link0`` (default: the harness's, on the table top); ``limits``: joint limits (default
    ``config/robot.yaml``); ``seed``: seed of the random IK restarts.
    """

    def __init__(self, urdf: str | os.PathLike | None = None, base_pose: np.ndarray | None = None,
                 limits: JointLimits | None = None, ee_frame: str = EE_FRAME, seed: int = 0):
        import pinocchio as pin

        self._pin = pin
        self.urdf_path = Path(urdf) if urdf else panda_urdf_path()
        self.model = pin.buildModelFromUrdf(str(self.urdf_path))
        self.data = self.model.createData()
        if not self.model.existFrame(ee_frame):
            raise ValueError(f"{self.urdf_path} has no frame {ee_frame!r}")
        self.frame_id = self.model.getFrameId(ee_frame)
        self.base_pose = translation(ROBOT_BASE_M) if base_pose is None else np.asarray(base_pose, float)
        self._base_inv = np.linalg.inv(self.base_pose)
        self.limits = limits or JointLimits.from_yaml()
        self.lower_rad = self.limits.position_lower_rad
        self.upper_rad = self.limits.position_upper_rad
        self.home_rad = np.clip(np.asarray(HOME_JOINTS_RAD), self.lower_rad, self.upper_rad)
        self.seed = seed
        self._q_full = np.zeros(self.model.nq)  # 7 arm joints + 2 finger joints
        self._q_full[7:] = GRIPPER_OPEN_M  # held open

    def full_configuration(self, q7: np.ndarray) -> np.ndarray:
        """The model's configuration (nq,): the 7 arm joints and the fingers held open."""
        q = self._q_full.copy()
        q[:7] = q7
        return q

    def _fk_base(self, q7: np.ndarray):
        """The grasp target's pose in the base frame as a pinocchio SE3."""
        pin = self._pin
        pin.framesForwardKinematics(self.model, self.data, self.full_configuration(q7))
        return self.data.oMf[self.frame_id]

    def fk(self, q7) -> np.ndarray:
        """World pose (4x4) of the grasp target at joints ``q7`` (7,)."""
        q7 = np.asarray(q7, dtype=float)
        if q7.shape != (7,):
            raise ValueError(f"need 7 arm joint positions, got shape {q7.shape}")
        return self.base_pose @ self._fk_base(q7).homogeneous

    def random_configuration(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.lower_rad, self.upper_rad)

    def ik_solutions(self, T_target, seeds=None, position_tol_m: float = 0.001, rotation_tol_rad: float = 0.01,
                     n_random_seeds: int = 8, max_solutions: int | None = None, max_iterations: int = 150,
                     damping: float = 1e-4, accept: Callable[[np.ndarray], bool] | None = None) -> list[np.ndarray]:
        """Distinct solutions (each (7,), within the limits) sorted by distance to the first seed.

        Seeds are ``seeds`` (default: home), the first of them with its last joint turned by ±90° and
        ±180° (where the limits allow), then ``n_random_seeds`` random configurations; the search stops
        early once ``max_solutions`` solutions are found that ``accept`` (e.g. a collision check) approves.
        Rejected solutions are returned too: the caller can tell "unreachable" from "reachable only
        in collision".
        """
        pin = self._pin
        T_target = np.asarray(T_target, dtype=float)
        if T_target.shape != (4, 4) or not np.all(np.isfinite(T_target)):
            raise IKError(f"the target must be a finite 4x4 pose, got shape {T_target.shape}")
        target = pin.SE3(self._base_inv @ T_target)
        rng = np.random.default_rng(self.seed)
        given = [self.home_rad] if seeds is None else [np.asarray(s, dtype=float) for s in seeds]
        if not given:
            given = [self.home_rad]
        all_seeds = [np.clip(s, self.lower_rad, self.upper_rad) for s in given]
        # The first seed with the last joint turned by a quarter or half turn: the same arm posture with
        # the hand rotated, which a local solver struggles to reach when the target's yaw is far off.
        for turn in (np.pi, -np.pi, np.pi / 2, -np.pi / 2):
            flipped = all_seeds[0].copy()
            flipped[6] += turn
            if self.lower_rad[6] <= flipped[6] <= self.upper_rad[6]:
                all_seeds.append(flipped)
        all_seeds += [self.random_configuration(rng) for _ in range(n_random_seeds)]
        solutions: list[np.ndarray] = []
        accepted = 0
        for seed in all_seeds:
            q = self._solve(seed, target, position_tol_m, rotation_tol_rad, max_iterations, damping)
            if q is not None and not any(np.max(np.abs(q - s)) < 1e-3 for s in solutions):
                solutions.append(q)
                accepted += accept is None or bool(accept(q))
                if max_solutions is not None and accepted >= max_solutions:
                    break
        return sorted(solutions, key=lambda q: float(np.linalg.norm(q - all_seeds[0])))

    def ik(self, T_target, seeds=None, position_tol_m: float = 0.001, rotation_tol_rad: float = 0.01,
           **kwargs) -> np.ndarray:
        """Joints (7,) that put the grasp target at ``T_target`` (4x4, world), closest to the first seed.

        Raises :class:`IKError` when no seed converges within the tolerances and the joint limits.
        """
        solutions = self.ik_solutions(T_target, seeds, position_tol_m, rotation_tol_rad, **kwargs)
        if not solutions:
            p = np.asarray(T_target, float)[:3, 3]
            reach = float(np.linalg.norm(p - self.base_pose[:3, 3]))
            raise IKError(f"no IK solution within the joint limits for the pose at ({p[0]:.3f}, {p[1]:.3f}, "
                          f"{p[2]:.3f}) m ({reach:.2f} m from the robot base; tolerances {position_tol_m * 1e3:.1f}"
                          f" mm / {np.degrees(rotation_tol_rad):.2f} deg)")
        return solutions[0]

    def _solve(self, q0: np.ndarray, target, position_tol_m: float, rotation_tol_rad: float, max_iterations: int,
               damping: float) -> np.ndarray | None:
        """Damped least squares from ``q0``; None if it does not converge."""
        pin = self._pin
        q = q0.copy()
        for _ in range(max_iterations):
            current = self._fk_base(q)
            error_local = current.actInv(target)  # the target seen from the current frame
            position_error = np.linalg.norm(current.translation - target.translation)
            rotation_error = np.linalg.norm(pin.log3(error_local.rotation))
            if position_error <= position_tol_m * 0.5 and rotation_error <= rotation_tol_rad * 0.5:
                return q
            err = pin.log6(error_local).vector  # (6,) in the current frame
            q_full = self.full_configuration(q)
            J = pin.computeFrameJacobian(self.model, self.data, q_full, self.frame_id, pin.LOCAL)[:, :7]
            J = pin.Jlog6(error_local.inverse()) @ J  # d(err)/dq up to sign (pinocchio's IK example)
            dq = J.T @ np.linalg.solve(J @ J.T + damping * np.eye(6), err)
            step = np.max(np.abs(dq))
            if step > 0.5:  # keep steps small: the linearisation holds and the clamp bites gently
                dq *= 0.5 / step
            q = np.clip(q + dq, self.lower_rad, self.upper_rad)
        current = self._fk_base(q)
        position_error = np.linalg.norm(current.translation - target.translation)
        rotation_error = np.linalg.norm(pin.log3(current.actInv(target).rotation))
        return q if position_error <= position_tol_m and rotation_error <= rotation_tol_rad else None
