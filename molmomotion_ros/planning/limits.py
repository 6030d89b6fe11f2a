"""Joint limits of the arm, read from ``config/robot.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from molmomotion_ros.paths import config_path


class LimitsError(ValueError):
    """A limits file is malformed or a scaling factor is out of (0, 1]."""


@dataclass(frozen=True)
class JointLimits:
    joint_names: tuple[str, ...]
    position_lower_rad: np.ndarray
    position_upper_rad: np.ndarray
    velocity_rad_s: np.ndarray
    acceleration_rad_s2: np.ndarray
    jerk_rad_s3: np.ndarray
    velocity_scaling: float = 0.5
    acceleration_scaling: float = 0.5

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        for name in ("position_lower_rad", "position_upper_rad", "velocity_rad_s", "acceleration_rad_s2",
                     "jerk_rad_s3"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != (n,) or not np.all(np.isfinite(value)):
                raise LimitsError(f"{name} must hold {n} finite numbers")
            object.__setattr__(self, name, value)
        if np.any(self.position_lower_rad >= self.position_upper_rad):
            raise LimitsError("every lower position limit must lie below its upper limit")
        if np.any(self.velocity_rad_s <= 0) or np.any(self.acceleration_rad_s2 <= 0) or np.any(self.jerk_rad_s3 <= 0):
            raise LimitsError("velocity, acceleration and jerk limits must be positive")
        for name in ("velocity_scaling", "acceleration_scaling"):
            if not 0 < getattr(self, name) <= 1:
                raise LimitsError(f"{name} must lie in (0, 1], got {getattr(self, name)}")

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> "JointLimits":
        path = Path(path) if path else config_path("robot.yaml")
        try:
            raw = yaml.safe_load(path.read_text())["robot"]
            return cls(tuple(raw["arm_joints"]), raw["position_lower_rad"], raw["position_upper_rad"],
                       raw["velocity_rad_s"], raw["acceleration_rad_s2"], raw["jerk_rad_s3"],
                       float(raw.get("velocity_scaling", 0.5)), float(raw.get("acceleration_scaling", 0.5)))
        except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
            raise LimitsError(f"cannot read joint limits from {path}: {err}") from None

    def scaled(self, velocity_scaling: float, acceleration_scaling: float | None = None) -> "JointLimits":
        return replace(self, velocity_scaling=velocity_scaling,
                       acceleration_scaling=acceleration_scaling or velocity_scaling)

    @property
    def max_velocity(self) -> np.ndarray:
        return self.velocity_rad_s * self.velocity_scaling

    @property
    def max_acceleration(self) -> np.ndarray:
        return self.acceleration_rad_s2 * self.acceleration_scaling

    @property
    def max_jerk(self) -> np.ndarray:
        return self.jerk_rad_s3 * self.acceleration_scaling

    def within_position_limits(self, q: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        q = np.asarray(q)
        return np.all((q >= self.position_lower_rad - tol) & (q <= self.position_upper_rad + tol), axis=-1)
