"""The PyBullet tabletop: a Franka Panda on a table, coloured objects, containers and an RGB-D camera.

The world owns its physics client (several worlds can live in one process) and knows nothing of
tasks or models. It offers scene building, rendering, two motion primitives (pick-and-place and
push, both executed with IK + position control under real contact physics) and a 15 fps trace of
every object, the end effector and the gripper, from which the motion dataset is cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pybullet
import pybullet_data
from pybullet_utils import bullet_client

from molmomotion_ros.camera import PinholeCamera
from molmomotion_ros.paths import config_path
from molmomotion_ros.robot import (
    GRIPPER_OPEN_M,
    HOME_JOINTS_RAD,
    ROBOT_BASE_M,
    TABLE_TOP_Z_M,
    WORKSPACE_X_M,
    WORKSPACE_Y_M,
)
from molmomotion_ros.stdio import native_stdout_silenced
from molmomotion_ros.vocabulary import Vocabulary, default_vocabulary

PHYSICS_HZ = 240
TRACE_HZ = 15  # MolmoMotion's track rate
ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
EE_LINK = 11  # panda_grasptarget: the point between the finger pads
ARM_FORCES_N = (87.0,) * 4 + (12.0,) * 3
GRIPPER_FORCE_N = 40.0
PUSH_FINGER_OPENING_M = 0.005  # per finger while pushing
EE_SPEED_M_S = 0.6
APPROACH_HEIGHT_M = 0.10  # above a grasp or release point


@dataclass
class SceneObject:
    """A body in the scene with its language name and its size in its own frame."""

    body_id: int
    kind: str  # "block", "duck", "bowl", ...
    colour: str
    is_container: bool
    local_center_m: np.ndarray  # centre of the body's bounding box in its own frame
    half_extents_m: np.ndarray  # of that bounding box, in its own frame (x, y, z)
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


@dataclass(frozen=True)
class Observation:
    """What a camera-and-proprioception agent sees at one instant."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32, metres along the optical axis, NaN = no return
    segmentation: np.ndarray  # (H, W) int32 body ids, -1 = background
    camera: PinholeCamera
    joint_positions_rad: np.ndarray  # (9,) 7 arm joints + 2 finger joints
    time_s: float


@dataclass(frozen=True)
class TraceSample:
    """One 15 fps sample of the world's motion."""

    time_s: float
    object_poses: dict[int, np.ndarray]  # body id → (7,) position (3) + quaternion xyzw (4)
    ee_pose: np.ndarray  # (7,) grasp target position + quaternion xyzw
    gripper_width_m: float
    gripper_closed_cmd: bool
    joint_positions_rad: np.ndarray  # (9,)


class MotionError(RuntimeError):
    """A motion primitive could not be carried out (goal unreachable, outside the workspace...)."""


class World:
    def __init__(self, camera: PinholeCamera | None = None, vocabulary: Vocabulary | None = None):
        self.default_camera = camera or PinholeCamera.from_yaml(config_path("camera.yaml"))
        self.camera = self.default_camera  # tasks may jitter this one per episode
        self.vocabulary = vocabulary or default_vocabulary()
        with native_stdout_silenced():  # PyBullet's C code prints "argv[0]=" on connect
            self.client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.objects: dict[int, SceneObject] = {}
        self.trace: list[TraceSample] = []
        self.record = True
        self._step_count = 0
        self._gripper_closed = False
        self.robot_id: int | None = None
        self.reset()

    # --- scene --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty table, robot at home, gripper open, clock and trace at zero.

        The table and the robot are loaded once (loading the Panda costs ~110 ms); later resets
        remove the other bodies and reset the robot's joints, which gives the same physics as a
        fresh client (checked by test_world_reset_matches_a_fresh_world).
        """
        p = self.client
        if self.robot_id is None:
            p.resetSimulation()
            p.setGravity(0, 0, -9.81)
            p.setTimeStep(1.0 / PHYSICS_HZ)
            # Sorted contact pairs: results then do not depend on the broadphase's insert/remove history.
            p.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
            self.table_id = p.loadURDF("table/table.urdf", [0.5, 0, 0], useFixedBase=True)
            self.robot_id = p.loadURDF("franka_panda/panda.urdf", ROBOT_BASE_M, useFixedBase=True)
            for joint in FINGER_JOINTS:
                p.changeDynamics(self.robot_id, joint, lateralFriction=3.0, spinningFriction=0.01)
            # The real gripper's fingers are geared together. Without the coupling both fingers push
            # with their force limit wherever they stand, so a held object floats along the closing
            # axis and slides a centimetre or more whenever the arm accelerates sideways.
            gear = p.createConstraint(self.robot_id, FINGER_JOINTS[0], self.robot_id, FINGER_JOINTS[1],
                                      jointType=pybullet.JOINT_GEAR, jointAxis=[1, 0, 0], parentFramePosition=[0, 0, 0],
                                      childFramePosition=[0, 0, 0])
            p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50)
            self._joint_limits = np.array(
                [p.getJointInfo(self.robot_id, j)[8:10] for j in ARM_JOINTS], dtype=float
            )
            for joint, q in zip(ARM_JOINTS, HOME_JOINTS_RAD, strict=True):
                p.resetJointState(self.robot_id, joint, q)
            for joint in FINGER_JOINTS:
                p.resetJointState(self.robot_id, joint, GRIPPER_OPEN_M)
            self._home_state = p.saveState()
        for body in sorted(self.objects, reverse=True):  # freed ids come back lowest first, as in a fresh client
            p.removeBody(body)
        p.restoreState(self._home_state)
        self.objects = {}
        self.trace = []
        self._step_count = 0
        self._gripper_closed = False
        self._hold_arm(HOME_JOINTS_RAD)
        self._command_gripper(closed=False)

    def add_object(self, kind: str, colour: str, xy_m, yaw_rad: float = 0.0) -> SceneObject:
        """Place an object or container of the vocabulary on the table at ``xy_m``."""
        p = self.client
        rgba = self.vocabulary.colours[colour]
        orientation = p.getQuaternionFromEuler([0, 0, yaw_rad])
        if kind in self.vocabulary.containers:
            body = self._build_container(kind, rgba, orientation)
            is_container = True
        elif kind in self.vocabulary.objects:
            body = self._build_object(kind, rgba, orientation)
            is_container = False
        else:
            raise KeyError(f"unknown object kind {kind!r}")
        center, half = self._local_box(body, orientation)
        z = TABLE_TOP_Z_M + half[2] - center[2] + 0.001
        p.resetBasePositionAndOrientation(body, [xy_m[0], xy_m[1], z], orientation)
        obj = SceneObject(body, kind, colour, is_container, center, half)
        self.objects[body] = obj
        return obj

    def _build_object(self, kind: str, rgba, orientation) -> int:
        p = self.client
        spec = self.vocabulary.objects[kind]
        if spec["shape"] == "box":
            half = spec["half_extents"]
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba)
            mass = 8 * np.prod(half) * 600.0  # wood-like density, kg
            body = p.createMultiBody(mass, col, vis, [0, 0, 1], orientation)
        else:
            body = p.loadURDF(spec["urdf"], [0, 0, 1], orientation, globalScaling=spec["scale"])
            p.changeVisualShape(body, -1, rgbaColor=rgba, textureUniqueId=-1)
            p.changeDynamics(body, -1, mass=0.05)
        # mu 0.5 against the table (friction multiplies): pushed at mid-height, a cube slides and does not tip.
        p.changeDynamics(body, -1, lateralFriction=0.5, spinningFriction=0.005, rollingFriction=0.0005)
        return body

    def _build_container(self, kind: str, rgba, orientation) -> int:
        """A static bowl (a ring of wall segments) or tray (four walls) on a thin base."""
        p = self.client
        spec = self.vocabulary.containers[kind]
        wall_h, thickness, base_h = spec["wall_height"], 0.008, 0.006
        boxes = []  # (half_extents, position, yaw)
        if spec["shape"] == "bowl":
            r = spec["inner_radius"]
            segments = 15  # + the floor = 16 shapes, PyBullet's most for one compound body
            seg_len = 2 * np.pi * (r + thickness) / segments
            boxes.append(([r + thickness, r + thickness, base_h / 2], [0, 0, base_h / 2], 0.0))
            for i in range(segments):
                a = 2 * np.pi * i / segments
                c = r + thickness / 2
                boxes.append(
                    ([thickness / 2, seg_len / 2 + 0.001, wall_h / 2], [c * np.cos(a), c * np.sin(a), wall_h / 2], a)
                )
        else:
            h = spec["inner_half_extent"]
            boxes.append(([h + thickness, h + thickness, base_h / 2], [0, 0, base_h / 2], 0.0))
            for a in (0, np.pi / 2, np.pi, 3 * np.pi / 2):
                c = h + thickness / 2
                boxes.append(
                    ([thickness / 2, h + thickness, wall_h / 2], [c * np.cos(a), c * np.sin(a), wall_h / 2], a)
                )
        n = len(boxes)
        quats = [p.getQuaternionFromEuler([0, 0, yaw]) for _, _, yaw in boxes]
        col = p.createCollisionShapeArray(
            [p.GEOM_BOX] * n, halfExtents=[b[0] for b in boxes],
            collisionFramePositions=[b[1] for b in boxes], collisionFrameOrientations=quats,
        )
        vis = p.createVisualShapeArray(
            [p.GEOM_BOX] * n, halfExtents=[b[0] for b in boxes], visualFramePositions=[b[1] for b in boxes],
            visualFrameOrientations=quats,
        )
        body = p.createMultiBody(0.0, col, vis, [0, 0, 1], orientation)
        p.changeVisualShape(body, -1, rgbaColor=rgba)
        p.changeDynamics(body, -1, lateralFriction=1.0)
        return body

    def _local_box(self, body: int, orientation) -> tuple[np.ndarray, np.ndarray]:
        """Bounding box centre and half extents of a body in its own frame."""
        p = self.client
        p.resetBasePositionAndOrientation(body, [0, 0, 1], [0, 0, 0, 1])
        lo, hi = (np.asarray(v) for v in p.getAABB(body, -1))
        p.resetBasePositionAndOrientation(body, [0, 0, 1], orientation)
        return (lo + hi) / 2 - np.array([0, 0, 1.0]), (hi - lo) / 2

    def remove_object(self, obj: SceneObject) -> None:
        self.client.removeBody(obj.body_id)
        del self.objects[obj.body_id]

    def find(self, colour: str, kind: str) -> SceneObject:
        for obj in self.objects.values():
            if obj.colour == colour and obj.kind == kind:
                return obj
        raise KeyError(f"no {colour} {kind} in the scene")

    # --- state --------------------------------------------------------------------------------
    @property
    def time_s(self) -> float:
        return self._step_count / PHYSICS_HZ

    def object_pose(self, obj: SceneObject | int) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) and quaternion xyzw (4,) of a body's frame in the world."""
        body = obj.body_id if isinstance(obj, SceneObject) else obj
        pos, quat = self.client.getBasePositionAndOrientation(body)
        return np.asarray(pos), np.asarray(quat)

    def object_center(self, obj: SceneObject) -> np.ndarray:
        """World position of the object's bounding-box centre."""
        pos, quat = self.object_pose(obj)
        return pos + self.rotation(quat) @ obj.local_center_m

    def object_yaw(self, obj: SceneObject) -> float:
        return float(self.client.getEulerFromQuaternion(self.object_pose(obj)[1])[2])

    def object_top_z(self, obj: SceneObject) -> float:
        return float(self.client.getAABB(obj.body_id, -1)[1][2])

    def rotation(self, quat) -> np.ndarray:
        return np.asarray(self.client.getMatrixFromQuaternion(quat)).reshape(3, 3)

    def is_at_rest(self, obj: SceneObject, lin_tol_m_s: float = 0.02, ang_tol_rad_s: float = 0.3) -> bool:
        lin, ang = self.client.getBaseVelocity(obj.body_id)
        return bool(np.linalg.norm(lin) < lin_tol_m_s and np.linalg.norm(ang) < ang_tol_rad_s)

    def touches_gripper(self, obj: SceneObject) -> bool:
        contacts = self.client.getContactPoints(self.robot_id, obj.body_id)
        return any(c[3] >= 7 for c in contacts)  # links 7+ are the hand and the fingers

    def joint_positions(self) -> np.ndarray:
        states = self.client.getJointStates(self.robot_id, ARM_JOINTS + FINGER_JOINTS)
        return np.array([s[0] for s in states])

    def ee_pose(self) -> np.ndarray:
        state = self.client.getLinkState(self.robot_id, EE_LINK, computeForwardKinematics=True)
        return np.concatenate([state[4], state[5]])

    def ee_yaw(self) -> float:
        """Yaw of a down-pointing gripper, in the convention of :meth:`down_orientation`."""
        finger_axis = self.rotation(self.ee_pose()[3:])[:, 1]  # = (sin yaw, -cos yaw, 0) when pointing down
        return float(np.arctan2(finger_axis[0], -finger_axis[1]))

    def gripper_width_m(self) -> float:
        return float(sum(self.joint_positions()[7:]))

    # --- camera -------------------------------------------------------------------------------
    def render(self, camera: PinholeCamera | None = None) -> Observation:
        cam = camera or self.camera
        T_world_gl = cam.T_world_cam @ np.diag([1.0, -1.0, -1.0, 1.0])  # optical → OpenGL axes
        view = np.linalg.inv(T_world_gl)
        n, f, w, h = cam.near_m, cam.far_m, cam.width, cam.height
        # OpenGL projection from K. TinyRenderer samples pixel (u, v) at NDC x = 2u/W - 1 and
        # y = 1 - 2(v + 1)/H (measured: these offsets make rendered depth exact on oblique planes).
        proj = np.array([
            [2 * cam.fx / w, 0, 1 - 2 * cam.cx / w, 0],
            [0, 2 * cam.fy / h, 2 * (cam.cy + 1.0) / h - 1, 0],
            [0, 0, -(f + n) / (f - n), -2 * f * n / (f - n)],
            [0, 0, -1, 0],
        ])
        _, _, rgba, depth_buffer, seg = self.client.getCameraImage(
            w, h, viewMatrix=view.T.flatten().tolist(), projectionMatrix=proj.T.flatten().tolist(),
            renderer=pybullet.ER_TINY_RENDERER, shadow=0,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[..., :3].copy()
        d = np.asarray(depth_buffer, dtype=np.float64).reshape(h, w)
        depth_m = (f * n / (f - (f - n) * d)).astype(np.float32)
        depth_m[d >= 1.0 - 1e-7] = np.nan
        segmentation = np.asarray(seg, dtype=np.int32).reshape(h, w)
        return Observation(rgb, depth_m, segmentation, cam, self.joint_positions(), self.time_s)

    # --- stepping and recording ---------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.client.stepSimulation()
            self._step_count += 1
            if self.record and self._step_count % (PHYSICS_HZ // TRACE_HZ) == 0:
                self.trace.append(self._sample())

    def _sample(self) -> TraceSample:
        poses = {}
        for body in self.objects:
            pos, quat = self.client.getBasePositionAndOrientation(body)
            poses[body] = np.array([*pos, *quat])
        return TraceSample(
            self.time_s, poses, self.ee_pose(), self.gripper_width_m(), self._gripper_closed,
            self.joint_positions(),
        )

    def settle(self, max_steps: int = 240, bodies: list[SceneObject] | None = None) -> None:
        """Step until the given objects (default: all) are at rest, or ``max_steps`` passed."""
        movable = [o for o in (bodies or self.objects.values()) if not o.is_container]
        for i in range(max_steps):
            self.step()
            if i >= 10 and i % 10 == 0 and all(self.is_at_rest(o, 0.005, 0.05) for o in movable):
                return

    # --- low-level control --------------------------------------------------------------------
    def _hold_arm(self, joints) -> None:
        self.client.setJointMotorControlArray(
            self.robot_id, ARM_JOINTS, pybullet.POSITION_CONTROL, targetPositions=list(joints),
            forces=ARM_FORCES_N, positionGains=[0.1] * 7,
        )

    def _command_gripper(self, closed: bool, opening_m: float | None = None, force_n: float | None = None) -> None:
        self._gripper_closed = closed
        target = opening_m if opening_m is not None else (0.0 if closed else GRIPPER_OPEN_M)
        force = GRIPPER_FORCE_N if force_n is None else force_n
        self.client.setJointMotorControlArray(
            self.robot_id, FINGER_JOINTS, pybullet.POSITION_CONTROL, targetPositions=[target] * 2,
            forces=[force] * 2,
        )

    def down_orientation(self, yaw_rad: float) -> tuple:
        """Gripper pointing down; its fingers close along the direction (sin yaw, -cos yaw)."""
        return self.client.getQuaternionFromEuler([np.pi, 0.0, yaw_rad])

    def solve_ik(self, position_m, yaw_rad: float) -> np.ndarray:
        """Joint angles (7,) for the grasp target at ``position_m``, pointing down, or MotionError."""
        p = self.client
        quat = self.down_orientation(yaw_rad)
        lower, upper = self._joint_limits[:, 0], self._joint_limits[:, 1]
        q = p.calculateInverseKinematics(
            self.robot_id, EE_LINK, list(position_m), quat,
            lowerLimits=list(lower) + [0, 0], upperLimits=list(upper) + [0.04, 0.04],
            jointRanges=list(upper - lower) + [0.04, 0.04], restPoses=list(HOME_JOINTS_RAD) + [0.02, 0.02],
            maxNumIterations=60, residualThreshold=1e-5,
        )
        return np.clip(np.asarray(q[:7]), lower, upper)

    def move_ee(self, position_m, yaw_rad: float, speed_m_s: float = EE_SPEED_M_S, settle_steps: int = 40) -> None:
        """Move the grasp target along a straight line to ``position_m`` with the gripper down."""
        target = np.asarray(position_m, dtype=float)
        start = self.ee_pose()[:3]
        start_yaw = self.ee_yaw()
        turn = (yaw_rad - start_yaw + np.pi) % (2 * np.pi) - np.pi
        distance = float(np.linalg.norm(target - start))
        # Waypoints every 1 cm and at most 0.05 rad of wrist turn: a sudden turn shakes a held object loose.
        n_waypoints = max(1, int(np.ceil(distance / 0.01)), int(np.ceil(abs(turn) / 0.05)))
        steps_per_waypoint = max(1, int(round(distance / n_waypoints / speed_m_s * PHYSICS_HZ)))
        for i in range(1, n_waypoints + 1):
            fraction = i / n_waypoints
            self._hold_arm(self.solve_ik(start + (target - start) * fraction, start_yaw + turn * fraction))
            self.step(steps_per_waypoint)
        q_goal = self.solve_ik(target, yaw_rad)
        self._hold_arm(q_goal)
        for _ in range(settle_steps):
            self.step()
            if np.linalg.norm(self.ee_pose()[:3] - target) < 0.002:
                break

    def follow_joint_trajectory(self, follower, settle_tol_rad: float = 0.01, max_settle_s: float = 0.5) -> None:
        """Servo the arm along a timed joint trajectory (a ``control.JointTrajectoryFollower``) on
        the physics clock, then hold its last point until the joints are within ``settle_tol_rad``."""
        start = self._step_count
        while (self._step_count - start) / PHYSICS_HZ < follower.duration_s:
            self._hold_arm(follower.target((self._step_count - start + 1) / PHYSICS_HZ))
            self.step()
        self._hold_arm(follower.final_rad)
        for _ in range(int(max_settle_s * PHYSICS_HZ)):
            if np.max(np.abs(self.joint_positions()[:7] - follower.final_rad)) < settle_tol_rad:
                break
            self.step()

    def hold_arm(self, joints_rad) -> None:
        """Make ``joints_rad`` (7,) the arm's position set-point (takes effect on the next step)."""
        self._hold_arm(joints_rad)

    def command_gripper(self, closed: bool, opening_m: float | None = None, force_n: float | None = None) -> None:
        """Set the finger set-point (and each finger's force limit, default GRIPPER_FORCE_N) without stepping
        (sim_node and fake_franka step on their own clock)."""
        self._command_gripper(closed, opening_m, force_n)

    def move_home(self) -> None:
        self._hold_arm(HOME_JOINTS_RAD)
        for _ in range(PHYSICS_HZ):
            self.step()
            if np.max(np.abs(self.joint_positions()[:7] - HOME_JOINTS_RAD)) < 0.01:
                break

    def set_gripper(self, closed: bool, steps: int = 60, opening_m: float | None = None) -> None:
        self._command_gripper(closed, opening_m)
        previous = self.gripper_width_m()
        for i in range(steps):
            self.step()
            width = self.gripper_width_m()
            if i > 10 and abs(width - previous) < 1e-5:  # fingers stopped: open, shut or on the object
                break
            previous = width

    # --- motion primitives --------------------------------------------------------------------
    def check_reachable(self, position_m) -> None:
        x, y = position_m[0], position_m[1]
        if not (WORKSPACE_X_M[0] <= x <= WORKSPACE_X_M[1] and WORKSPACE_Y_M[0] <= y <= WORKSPACE_Y_M[1]):
            raise MotionError(f"target ({x:.2f}, {y:.2f}) m is outside the workspace")

    def pick_and_place(self, pick_m, pick_yaw_rad: float, place_m, place_yaw_rad: float) -> None:
        """Top-down grasp at ``pick_m``, carry, release with the grasp target at ``place_m``."""
        pick_m, place_m = np.asarray(pick_m, float), np.asarray(place_m, float)
        self.check_reachable(pick_m)
        self.check_reachable(place_m)
        carry_z = max(pick_m[2], place_m[2]) + APPROACH_HEIGHT_M
        self.set_gripper(closed=False, steps=30)
        self.move_ee([*pick_m[:2], pick_m[2] + APPROACH_HEIGHT_M], pick_yaw_rad)
        self.move_ee(pick_m, pick_yaw_rad, speed_m_s=0.25)
        self.set_gripper(closed=True)
        self.move_ee([*pick_m[:2], carry_z], pick_yaw_rad, speed_m_s=0.4)
        self.move_ee([*place_m[:2], carry_z], place_yaw_rad)
        self.move_ee(place_m, place_yaw_rad, speed_m_s=0.25)
        self.set_gripper(closed=False)
        self.move_ee([*place_m[:2], place_m[2] + APPROACH_HEIGHT_M], place_yaw_rad, speed_m_s=0.4)
        self.move_home()

    def push(self, start_m, end_m) -> None:
        """Closed gripper lowered at ``start_m`` and driven in a straight line to ``end_m``."""
        start_m, end_m = np.asarray(start_m, float), np.asarray(end_m, float)
        self.check_reachable(start_m)
        self.check_reachable(end_m)
        direction = end_m[:2] - start_m[:2]
        yaw = float(np.arctan2(direction[1], direction[0]))  # fingers side by side across the push line
        # Fingers slightly apart: two contacts a few cm apart keep the object from spinning away.
        self.set_gripper(closed=True, steps=40, opening_m=PUSH_FINGER_OPENING_M)
        self.move_ee([*start_m[:2], start_m[2] + APPROACH_HEIGHT_M], yaw)
        self.move_ee(start_m, yaw, speed_m_s=0.25)
        self.move_ee(end_m, yaw, speed_m_s=0.15)
        back_off = end_m.copy()  # leave the object's face before lifting, or friction drags it up
        back_off[:2] -= direction / (np.linalg.norm(direction) + 1e-9) * 0.02
        self.move_ee(back_off, yaw, speed_m_s=0.15)
        self.move_ee([*back_off[:2], end_m[2] + APPROACH_HEIGHT_M], yaw, speed_m_s=0.4)
        self.set_gripper(closed=False, steps=30)
        self.move_home()

    def close(self) -> None:
        try:
            self.client.disconnect()
        except pybullet.error:
            pass

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
