"""Collision checking of arm configurations against a scene and against the arm itself.

A checker answers ``is_valid(q7)`` (the planner's state validity test) and ``reason(q7)`` (why a state
is refused, for error messages). :class:`PyBulletSceneChecker` keeps its own DIRECT PyBullet client
with a Panda and copies of the scene's collision shapes: the harness table and objects
(:meth:`~PyBulletSceneChecker.sync_from_world`) or boxes given by hand (:meth:`~PyBulletSceneChecker.add_box`).
A state is valid when it lies within the joint limits, no arm link comes within ``scene_margin_m`` of
a scene body, and no two non-adjacent links come within ``self_margin_m`` of each other.
"""

from __future__ import annotations

import contextlib
import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pybullet
from pybullet_utils import bullet_client

from molmomotion_ros.stdio import native_stdout_silenced

from ..robot import GRIPPER_OPEN_M, HOME_JOINTS_RAD, ROBOT_BASE_M
from .kinematics import panda_urdf_path
from .limits import JointLimits

ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
EE_LINK = 11  # panda_grasptarget
HAND_LINKS = (8, 9, 10)  # panda_hand and the fingers: what may touch a carried object
BASE_LINK = -1  # panda_link0, fixed to its mount: contacts with it are not the planner's to avoid
TABLE_URDF = "table/table.urdf"
TABLE_POSITION_M = (0.5, 0.0, 0.0)  # where the harness loads pybullet_data's table


@runtime_checkable
class CollisionChecker(Protocol):
    def is_valid(self, q7: np.ndarray) -> bool:
        """True when the arm at ``q7`` (7,) rad is within its limits and collision-free."""

    def reason(self, q7: np.ndarray, slack_m: float = 0.0) -> str | None:
        """Why ``q7`` is invalid, or None when it is valid; ``slack_m`` shrinks the clearance margins
        (the planner's final check of a timed trajectory allows a little: discrete checks along a motion
        can miss a sub-millimetre dip into the margin between two checked states)."""



def joint_limit_reason(q7: np.ndarray, limits: JointLimits) -> str | None:
    q7 = np.asarray(q7, dtype=float)
    if q7.shape != (len(limits.joint_names),) or not np.all(np.isfinite(q7)):
        return f"need {len(limits.joint_names)} finite joint positions, got {q7!r}"
    for i, (value, lo, hi) in enumerate(zip(q7, limits.position_lower_rad, limits.position_upper_rad, strict=True)):
        if not lo - 1e-9 <= value <= hi + 1e-9:
            return f"{limits.joint_names[i]} at {value:.4f} rad is outside its limits [{lo:.4f}, {hi:.4f}]"
    return None


@dataclass(frozen=True)
class _SceneBody:
    body_id: int  # in the checker's client
    name: str


class PyBulletSceneChecker:
    """Self- and scene-collision checks of the Panda in a private DIRECT PyBullet client.

    ``world``: a ``molmomotion_sim.world.World`` to mirror at once (its robot must sit where
    ``base_position_m`` says); otherwise the harness table is added unless ``with_table`` is false.
    ``limits``: joint limits (default ``config/robot.yaml``). Distances come from
    ``getClosestPoints`` (exact for the convex collision hulls), asked only for link/body and link/link
    pairs whose bounding boxes come within the margin: about 0.1 ms per state. Self-collision pairs are
    all links with geometry except kinematic neighbours and pairs already touching at home
    (``self_pairs``). Contacts with ``panda_link0`` (bolted to the table) are ignored.
    """

    def __init__(self, world=None, limits: JointLimits | None = None, base_position_m=ROBOT_BASE_M,
                 scene_margin_m: float = 0.005, self_margin_m: float = 0.002, with_table: bool = True):
        self.limits = limits or JointLimits.from_yaml()
        self._lower = self.limits.position_lower_rad - 1e-9
        self._upper = self.limits.position_upper_rad + 1e-9
        self.scene_margin_m = scene_margin_m
        self.self_margin_m = self_margin_m
        with native_stdout_silenced():
            self.client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        import pybullet_data

        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.robot_id = self.client.loadURDF(str(panda_urdf_path()), list(base_position_m), useFixedBase=True,
                                             flags=pybullet.URDF_USE_SELF_COLLISION)
        self._link_names = {BASE_LINK: "panda_link0"}
        for j in range(self.client.getNumJoints(self.robot_id)):
            self._link_names[j] = self.client.getJointInfo(self.robot_id, j)[12].decode()
        for joint in FINGER_JOINTS:
            self.client.resetJointState(self.robot_id, joint, GRIPPER_OPEN_M)
        self._q_set: np.ndarray | None = None
        # The hot path calls PyBullet directly: bullet_client's attribute lookup costs as much as a query.
        cid = self.client._client
        self._reset_joints = functools.partial(pybullet.resetJointStatesMultiDof, physicsClientId=cid)
        self._get_aabb = functools.partial(pybullet.getAABB, physicsClientId=cid)
        self._closest_points = functools.partial(pybullet.getClosestPoints, physicsClientId=cid)
        self._links = [link for link in [BASE_LINK, *range(self.client.getNumJoints(self.robot_id))]
                       if self.client.getCollisionShapeData(self.robot_id, link)]
        self.self_pairs = self._self_collision_pairs()
        index = {link: i for i, link in enumerate(self._links)}
        self._pair_index = np.array([[index[a], index[b]] for a, b in self.self_pairs], dtype=int).reshape(-1, 2)
        self._moving = np.array([i for i, link in enumerate(self._links) if link != BASE_LINK])
        self._scene_aabbs: tuple[list[int], np.ndarray] | None = None  # cache, reset when the scene changes
        self.scene: dict[int, _SceneBody] = {}  # checker body id → body
        self._mirrored: dict[int, list[tuple[int, int]]] = {}  # source world body → [(its link, checker body)]
        self._signatures: dict[int, tuple] = {}  # source world body → its collision shape data when copied
        self._attached: tuple[int, np.ndarray] | None = None  # (body id, T_ee_object)
        self._default_table = self.add_table() if with_table and world is None else None
        if world is not None:
            self.sync_from_world(world)

    # --- robot --------------------------------------------------------------------------------
    def _set_joints(self, q7: np.ndarray) -> None:
        if self._q_set is not None and np.array_equal(q7, self._q_set):
            return
        self._reset_joints(self.robot_id, ARM_JOINTS, [[float(v)] for v in q7])
        self._q_set = np.array(q7, dtype=float)

    def _link_aabbs(self) -> np.ndarray:
        """(L, 2, 3) world AABBs (min, max) of the links with collision geometry, in ``self._links`` order."""
        get_aabb, robot = self._get_aabb, self.robot_id
        return np.array([get_aabb(robot, link) for link in self._links])

    def _self_collision_pairs(self) -> list[tuple[int, int]]:
        """Link pairs to test for self-collision: all pairs with collision geometry except kinematic
        neighbours (parent and child, looking through geometry-less links) and pairs already touching
        at home (their convex hulls overlap by construction)."""
        p = self.client
        has_geometry = self._links

        def geometric_parent(link: int) -> int:
            parent = p.getJointInfo(self.robot_id, link)[16]
            while parent not in has_geometry and parent != BASE_LINK:
                parent = p.getJointInfo(self.robot_id, parent)[16]
            return parent

        adjacent = {frozenset((link, geometric_parent(link))) for link in has_geometry if link != BASE_LINK}
        self._set_joints(np.asarray(HOME_JOINTS_RAD))
        pairs = []
        for i, a in enumerate(has_geometry):
            for b in has_geometry[i + 1:]:
                if frozenset((a, b)) in adjacent or {a, b} == {9, 10}:  # the two fingers slide on one axis
                    continue
                if not p.getClosestPoints(self.robot_id, self.robot_id, self.self_margin_m, a, b):
                    pairs.append((a, b))
        return pairs

    def link_name(self, link: int) -> str:
        return self._link_names.get(link, f"link {link}")

    # --- scene --------------------------------------------------------------------------------
    def add_table(self, position_m=TABLE_POSITION_M) -> int:
        """pybullet_data's table where the harness puts it (top at z = 0.626 m)."""
        body = self.client.loadURDF(TABLE_URDF, list(position_m), useFixedBase=True)
        self.scene[body] = _SceneBody(body, "table")
        self._scene_aabbs = None
        return body

    def add_box(self, center_m, half_extents_m, name: str = "box", quaternion_xyzw=(0, 0, 0, 1)) -> int:
        """A static box obstacle; returns its id (for :meth:`remove`)."""
        p = self.client
        shape = p.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[float(v) for v in half_extents_m])
        body = p.createMultiBody(0.0, shape, -1, [float(v) for v in center_m], list(quaternion_xyzw))
        self.scene[body] = _SceneBody(body, name)
        self._scene_aabbs = None
        return body

    def remove(self, body_id: int) -> None:
        self.client.removeBody(body_id)
        del self.scene[body_id]
        self._scene_aabbs = None

    def clear(self) -> None:
        """Remove every scene body (the table included)."""
        for body in list(self.scene):
            self.remove(body)
        self._mirrored, self._signatures = {}, {}
        self._default_table = None

    def sync_from_world(self, world, ignore_bodies=()) -> None:
        """Mirror every body of a harness ``World`` except its robot and ``ignore_bodies`` (ids in the
        world, e.g. an object about to be grasped): same collision shapes, same poses. Bodies already
        mirrored are moved; removed ones are dropped; changed ones rebuilt. The world's table replaces
        the default one."""
        src = world.client
        skip = {world.robot_id, *ignore_bodies}
        present = [src.getBodyUniqueId(i) for i in range(src.getNumBodies())]
        present = [b for b in present if b not in skip]
        if self._default_table is not None:
            self.remove(self._default_table)
            self._default_table = None
        for source in list(self._mirrored):
            if source not in present:
                self._drop_mirror(source)
        names = {b: o.name for b, o in getattr(world, "objects", {}).items()}
        if getattr(world, "table_id", None) is not None:
            names[world.table_id] = "table"
        for source in present:
            links = [-1, *range(src.getNumJoints(source))]
            signature = tuple(src.getCollisionShapeData(source, link) for link in links)
            if source in self._mirrored and self._signatures[source] != signature:
                self._drop_mirror(source)
            if source not in self._mirrored:
                copies = []
                for link, shapes in zip(links, signature, strict=True):
                    if shapes:
                        body = self._copy_shapes(shapes)
                        self.scene[body] = _SceneBody(body, names.get(source, f"body {source}"))
                        copies.append((link, body))
                self._mirrored[source] = copies
                self._signatures[source] = signature
            for link, body in self._mirrored[source]:
                # Both poses are of the link's inertial frame, which collision shape frames refer to.
                pose = src.getBasePositionAndOrientation(source) if link == -1 else src.getLinkState(source, link)[:2]
                self.client.resetBasePositionAndOrientation(body, pose[0], pose[1])
        self._scene_aabbs = None

    def _drop_mirror(self, source: int) -> None:
        del self._signatures[source]
        for _, body in self._mirrored.pop(source):
            self.remove(body)

    def _copy_shapes(self, shapes) -> int:
        """A static body with the collision shapes ``getCollisionShapeData`` reported (frames relative
        to the source link's inertial frame, which the copy's base frame then stands for)."""
        p = self.client
        kwargs: dict[str, list] = {"shapeTypes": [], "radii": [], "halfExtents": [], "lengths": [], "fileNames": [],
                                   "meshScales": [], "collisionFramePositions": [], "collisionFrameOrientations": []}
        for shape in shapes:
            geom, dims, filename, position, orientation = shape[2], shape[3], shape[4], shape[5], shape[6]
            radius, half, length, name, scale = 0.0, [0.0] * 3, 0.0, "", [1.0] * 3
            if geom == pybullet.GEOM_BOX:
                half = [d / 2 for d in dims]
            elif geom == pybullet.GEOM_SPHERE:
                radius = dims[0]
            elif geom in (pybullet.GEOM_CYLINDER, pybullet.GEOM_CAPSULE):
                length, radius = dims[0], dims[1]
            elif geom == pybullet.GEOM_MESH and filename:
                name, scale = filename.decode(), list(dims)
            else:
                raise ValueError(f"cannot copy a collision shape of PyBullet geometry type {geom}")
            for key, value in zip(kwargs, (geom, radius, half, length, name, scale, position, orientation),
                                  strict=True):
                kwargs[key].append(value)
        shape_id = p.createCollisionShapeArray(**kwargs)
        return p.createMultiBody(0.0, shape_id, -1, [0, 0, 0], [0, 0, 0, 1])

    # --- a carried object ---------------------------------------------------------------------
    def attach(self, half_extents_m, T_ee_object: np.ndarray) -> int:
        """Carry a box (half extents, m) rigidly at ``T_ee_object`` (4x4) from the grasp target: it is
        then checked against the scene and the arm (the hand and fingers, which hold it, excepted)."""
        self.detach()
        p = self.client
        shape = p.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[float(v) for v in half_extents_m])
        body = p.createMultiBody(0.0, shape, -1, [0, 0, -10], [0, 0, 0, 1])
        self._attached = (body, np.asarray(T_ee_object, dtype=float))
        self._q_set = None
        return body

    def detach(self) -> None:
        if self._attached is not None:
            self.client.removeBody(self._attached[0])
            self._attached = None

    def _place_attached(self) -> None:
        p = self.client
        state = p.getLinkState(self.robot_id, EE_LINK, computeForwardKinematics=True)
        T_world_ee = np.eye(4)
        T_world_ee[:3, :3] = np.asarray(p.getMatrixFromQuaternion(state[5])).reshape(3, 3)
        T_world_ee[:3, 3] = state[4]
        T = T_world_ee @ self._attached[1]
        p.resetBasePositionAndOrientation(self._attached[0], T[:3, 3].tolist(), _quaternion_xyzw(T[:3, :3]))

    # --- queries ------------------------------------------------------------------------------
    def is_valid(self, q7) -> bool:
        return self.reason(q7) is None

    def reason(self, q7, slack_m: float = 0.0) -> str | None:
        q7 = np.asarray(q7, dtype=float)
        scene_margin, self_margin = max(0.0, self.scene_margin_m - slack_m), max(0.0, self.self_margin_m - slack_m)
        if q7.shape != self._lower.shape or not ((q7 >= self._lower) & (q7 <= self._upper)).all():
            return joint_limit_reason(q7, self.limits) or f"need 7 finite joint positions, got {q7!r}"
        closest, robot = self._closest_points, self.robot_id
        self._set_joints(q7)
        # Exact distance queries only where the margin-grown bounding boxes overlap (most pairs do not).
        link_aabbs = self._link_aabbs()
        body_ids, body_aabbs = self._scene_boxes()
        if body_ids:
            moving = link_aabbs[self._moving]
            near = _overlaps(moving[:, None], body_aabbs[None], scene_margin)  # (L-1, B)
            for i, j in zip(*np.nonzero(near), strict=True):
                link, body = self._links[self._moving[i]], body_ids[j]
                contacts = closest(robot, body, scene_margin, linkIndexA=link)
                if contacts:
                    return (f"{self.link_name(link)} collides with {self.scene[body].name} (distance "
                            f"{min(c[8] for c in contacts) * 1e3:.1f} mm, margin {scene_margin * 1e3:.1f} mm)")
        near = _overlaps(link_aabbs[self._pair_index[:, 0]], link_aabbs[self._pair_index[:, 1]], self_margin)
        for k in np.flatnonzero(near):
            a, b = self.self_pairs[k]
            if closest(robot, robot, self_margin, a, b):
                return f"self-collision between {self.link_name(a)} and {self.link_name(b)}"
        if self._attached is not None:
            carried = self._attached[0]
            self._place_attached()
            for body, entry in self.scene.items():
                if closest(carried, body, scene_margin):
                    return f"the carried object collides with {entry.name}"
            for contact in closest(carried, robot, self_margin):
                if contact[4] not in HAND_LINKS:
                    return f"the carried object collides with {self.link_name(contact[4])}"
        return None

    def _scene_boxes(self) -> tuple[list[int], np.ndarray]:
        if self._scene_aabbs is None:
            ids = list(self.scene)
            boxes = np.array([self.client.getAABB(body, -1) for body in ids]).reshape(-1, 2, 3)
            self._scene_aabbs = (ids, boxes)
        return self._scene_aabbs

    def close(self) -> None:
        with contextlib.suppress(pybullet.error):
            self.client.disconnect()


def _overlaps(a: np.ndarray, b: np.ndarray, margin: float) -> np.ndarray:
    """Whether boxes ``a`` and ``b`` (..., 2, 3: min and max corners) come within ``margin`` (broadcast)."""
    return ((a[..., 0, :] - margin <= b[..., 1, :]) & (b[..., 0, :] - margin <= a[..., 1, :])).all(axis=-1)


def _quaternion_xyzw(R: np.ndarray) -> list[float]:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_quat().tolist()


def _obj_surface_points(path: str, per_triangle: int = 6) -> np.ndarray:
    """Points (N, 3) on the surface of a Wavefront OBJ mesh: its vertices plus ``per_triangle`` points
    spread over each triangle (coarse hulls have few vertices and long faces)."""
    vertices, triangles = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("v "):
                vertices.append([float(v) for v in line.split()[1:4]])
            elif line.startswith("f "):
                corners = [int(token.split("/")[0]) - 1 for token in line.split()[1:]]
                triangles += [(corners[0], corners[i], corners[i + 1]) for i in range(1, len(corners) - 1)]
    vertices = np.array(vertices)
    if not triangles:
        return vertices
    a, b, c = (vertices[np.array(triangles)[:, i]] for i in range(3))  # (T, 3) each
    weights = np.random.default_rng(0).dirichlet(np.ones(3), size=per_triangle)  # (K, 3) barycentric
    inside = weights[:, 0, None, None] * a + weights[:, 1, None, None] * b + weights[:, 2, None, None] * c
    return np.concatenate([vertices, inside.reshape(-1, 3)])


def _spheres_along_axis(vertices: np.ndarray, max_spheres: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Spheres (centres (k, 3), radii (k,)) covering every point: the points are cut into slices along
    their principal axis, one sphere per slice around the slice's centre."""
    centre = vertices.mean(0)
    axis = np.linalg.svd(vertices - centre, full_matrices=False)[2][0]
    t = (vertices - centre) @ axis
    edges = np.linspace(t.min(), t.max() + 1e-9, max_spheres + 1)
    centres, radii = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        chunk = vertices[(t >= lo) & (t < hi)]
        if len(chunk):
            c = (chunk.min(0) + chunk.max(0)) / 2
            centres.append(c)
            radii.append(float(np.max(np.linalg.norm(chunk - c, axis=1))))
    return np.array(centres), np.array(radii)


class PointCloudChecker:
    """Collision checks for the real arm: a perceived point cloud (voxelised with open3d) and the table.

    The arm's links are covered by spheres (a few per collision mesh, each around a slice of the mesh's
    surface points); a state is in collision when a sphere comes within ``margin_m`` of an occupied
    voxel or dips below the table plane ``z = table_z_m`` (world frame; default: the robot base's
    height). Joint limits and self-collision are checked by ``self_checker`` (default: a
    :class:`PyBulletSceneChecker` without a table).
    Call :meth:`set_points` with each new cloud, passing the arm's current joints so the points on the
    arm itself are dropped.
    """

    def __init__(self, kinematics=None, table_z_m: float | None = None, voxel_size_m: float = 0.01,
                 margin_m: float = 0.01, self_checker: CollisionChecker | None = None):
        import pinocchio as pin

        from .kinematics import PandaKinematics

        self.kinematics = kinematics or PandaKinematics()
        self._pin = pin
        k = self.kinematics
        self.table_z_m = k.base_pose[2, 3] if table_z_m is None else table_z_m
        self.voxel_size_m = voxel_size_m
        self.margin_m = margin_m
        self.self_checker = self_checker or PyBulletSceneChecker(limits=k.limits, base_position_m=k.base_pose[:3, 3],
                                                                 with_table=False)
        geometry = pin.buildGeomFromUrdf(k.model, str(k.urdf_path), pin.GeometryType.COLLISION,
                                         package_dirs=[str(k.urdf_path.parent)])
        self._sphere_joint, centres, radii, self._sphere_link = [], [], [], []
        for obj in geometry.geometryObjects:
            if k.model.frames[obj.parentFrame].name == "panda_link0":
                continue  # the fixed base: not the planner's to move out of the way
            c, r = _spheres_along_axis(_obj_surface_points(obj.meshPath) * np.asarray(obj.meshScale))
            c = c @ obj.placement.rotation.T + obj.placement.translation  # mesh → parent joint frame
            centres.append(c)
            radii.append(r)
            self._sphere_joint += [obj.parentJoint] * len(r)
            self._sphere_link += [k.model.frames[obj.parentFrame].name] * len(r)
        self._centres_local = np.concatenate(centres)  # (S, 3) in their joint's frame
        self.radii_m = np.concatenate(radii)  # (S,)
        self._sphere_joint = np.asarray(self._sphere_joint)
        self._tree = None
        self._voxel_centres = np.zeros((0, 3))
        self._sphere_link = np.asarray(self._sphere_link)
        self.allowed_links: frozenset[str] = frozenset()  # may touch the cloud (MoveIt's allowed collisions)

    @contextmanager
    def allowing(self, links):
        """Let ``links`` (e.g. the fingers while grasping or pushing) touch the point cloud; they must
        still keep their centres above the table plane."""
        saved = self.allowed_links
        self.allowed_links = frozenset(links)
        try:
            yield self
        finally:
            self.allowed_links = saved

    def sphere_centres(self, q7) -> np.ndarray:
        """(S, 3) world positions of the link spheres at joints ``q7``."""
        pin, k = self._pin, self.kinematics
        pin.forwardKinematics(k.model, k.data, k.full_configuration(q7))
        out = np.empty_like(self._centres_local)
        for joint in np.unique(self._sphere_joint):
            placement = k.data.oMi[int(joint)]
            rows = self._sphere_joint == joint
            out[rows] = self._centres_local[rows] @ placement.rotation.T + placement.translation
        return out @ k.base_pose[:3, :3].T + k.base_pose[:3, 3]

    def set_points(self, points, T_world_cam: np.ndarray | None = None, q_robot=None) -> int:
        """Replace the obstacle cloud with ``points`` (N, 3) (camera frame when ``T_world_cam`` is given,
        else world); points on the arm at ``q_robot`` and below the table top are dropped. Returns the
        number of occupied voxels."""
        import open3d as o3d
        from scipy.spatial import cKDTree

        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if T_world_cam is not None:
            pts = pts @ np.asarray(T_world_cam)[:3, :3].T + np.asarray(T_world_cam)[:3, 3]
        pts = pts[pts[:, 2] > self.table_z_m + self.voxel_size_m]  # the table is the plane, not points
        if q_robot is not None and len(pts):
            # Far enough that the voxels of the points kept never count as touching the arm there.
            reach = self.radii_m + self.margin_m + self.voxel_size_m * np.sqrt(3) + 1e-3
            on_arm = cKDTree(pts).query_ball_point(self.sphere_centres(q_robot), reach)
            keep = np.ones(len(pts), bool)
            keep[np.concatenate([np.asarray(i, dtype=int) for i in on_arm])] = False
            pts = pts[keep]
        if not len(pts):
            self._tree, self._voxel_centres = None, np.zeros((0, 3))
            return 0
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        grid = o3d.geometry.VoxelGrid.create_from_point_cloud(cloud, self.voxel_size_m)
        index = np.array([v.grid_index for v in grid.get_voxels()], dtype=float)
        self._voxel_centres = np.asarray(grid.origin) + (index + 0.5) * self.voxel_size_m
        self._tree = cKDTree(self._voxel_centres)
        return len(self._voxel_centres)

    def _sphere_distance(self, tree, centres: np.ndarray, inflation: float):
        bound = float(self.radii_m.max()) + inflation
        distance, index = tree.query(centres, distance_upper_bound=bound)
        return distance - self.radii_m, index

    def reason(self, q7, slack_m: float = 0.0) -> str | None:
        problem = self.self_checker.reason(q7, slack_m)
        if problem:
            return problem
        centres = self.sphere_centres(np.asarray(q7, dtype=float))
        allowed = np.isin(self._sphere_link, list(self.allowed_links))
        # The spheres are already generous: no margin here; allowed links only keep their centres up.
        low = centres[:, 2] - np.where(allowed, 0.0, self.radii_m) < self.table_z_m
        if low.any():
            return f"{self._sphere_link[int(np.argmax(low))]} reaches the table plane"
        if self._tree is not None:
            half_diagonal = self.voxel_size_m * np.sqrt(3) / 2
            margin = max(0.0, self.margin_m - slack_m)
            gap, _ = self._sphere_distance(self._tree, centres, half_diagonal + margin)
            hit = (gap < half_diagonal + margin) & ~allowed
            if hit.any():
                return f"{self._sphere_link[int(np.argmax(hit))]} collides with the point cloud"
        return None

    def is_valid(self, q7) -> bool:
        return self.reason(q7) is None
