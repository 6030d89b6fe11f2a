"""A small TF buffer (tf2's core, without ROS): a tree of frames joined by static and dynamic transforms, looked up
at a stamp.

``set_transform(parent, child, T_parent_child, stamp_ns, static)`` adds an edge sample, as a
geometry_msgs/TransformStamped does (header.frame_id = parent, child_frame_id = child). A child has one parent
(a newer sample naming another parent re-parents it, as in tf2). Static edges hold at every stamp; dynamic
ones are interpolated between the two samples around the stamp (translation linearly, rotation by slerp) and
kept for ``cache_s`` behind the newest sample of their edge. ``lookup(target, source, stamp_ns)`` composes the
chain source → common ancestor → target and returns T_target_source (4x4: maps source-frame points into the
target frame). Each failure is a :class:`TransformError` that says why: which frame is unknown (and which are
known), which chains do not meet, by how much a stamp lies outside an edge's samples.

``molmomotion_ros.nodes.tf_listener`` feeds it from /tf and /tf_static where tf2_ros is not installed.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

from .geometry import quat_to_matrix

NS = 1_000_000_000
DEFAULT_CACHE_S = 10.0  # tf2_ros.Buffer's default cache time


class TransformError(LookupError):
    """No transform between two frames at a stamp; the message says why."""


class FrameUnknownError(TransformError):
    """A frame no transform has named."""


class ConnectivityError(TransformError):
    """Both frames are known, but their parent chains never meet."""


class ExtrapolationError(TransformError):
    """The stamp lies outside the samples of an edge of the chain (stale, or not yet arrived)."""

    def __init__(self, message: str, gap_s: float):
        super().__init__(message)
        self.gap_s = gap_s  # seconds beyond the samples: > 0 the stamp is newer than the newest, < 0 older


def rotation_to_quat(R: np.ndarray) -> np.ndarray:
    """A rotation matrix (3, 3) → unit quaternion xyzw (Shepperd's method: stable for every rotation)."""
    R = np.asarray(R, dtype=float)
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i], q[j], q[k] = 0.25 * s, (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions (xyzw) along the shorter arc; t in [0, 1]."""
    dot = float(np.dot(q0, q1))
    if dot < 0:  # q and -q are one rotation: take the short way
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: lerp is exact to ~1e-8 and avoids dividing by sin(≈0)
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


def interpolate(T0: np.ndarray, T1: np.ndarray, t: float) -> np.ndarray:
    """The rigid transform a fraction ``t`` of the way from T0 to T1 (lerp + slerp)."""
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(slerp(rotation_to_quat(T0[:3, :3]), rotation_to_quat(T1[:3, :3]), t))
    T[:3, 3] = (1 - t) * T0[:3, 3] + t * T1[:3, 3]
    return T


@dataclass
class _Edge:
    """The transforms from one child frame to its parent: one static, or dynamic samples sorted by stamp."""

    parent: str
    static: np.ndarray | None = None
    stamps: list[int] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)

    def at(self, child: str, stamp_ns: int | None) -> np.ndarray:
        if self.static is not None:
            return self.static
        if stamp_ns is None:
            return self.matrices[-1]
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return self.matrices[i]
        if i == 0 or i == len(self.stamps):
            gap_ns = stamp_ns - (self.stamps[-1] if i else self.stamps[0])
            when = "newer than the newest" if gap_ns > 0 else "older than the oldest"
            raise ExtrapolationError(
                f"{self.parent} ← {child} at {stamp_ns / NS:.3f} s: the stamp is {abs(gap_ns) / NS:.3f} s {when} "
                f"sample ({len(self.stamps)} held, {self.stamps[0] / NS:.3f}–{self.stamps[-1] / NS:.3f} s)",
                gap_ns / NS)
        t = (stamp_ns - self.stamps[i - 1]) / (self.stamps[i] - self.stamps[i - 1])
        return interpolate(self.matrices[i - 1], self.matrices[i], t)


class TransformBuffer:
    """Static and dynamic transforms between named frames; thread-safe (callbacks add, a worker looks up)."""

    def __init__(self, cache_s: float = DEFAULT_CACHE_S):
        if cache_s <= 0:
            raise ValueError(f"cache_s must be > 0, got {cache_s}")
        self._cache_ns = int(cache_s * NS)
        self._edges: dict[str, _Edge] = {}  # child → its edge to the parent
        self._lock = threading.Lock()

    def set_transform(self, parent: str, child: str, T_parent_child: np.ndarray, stamp_ns: int,
                      static: bool = False) -> None:
        """Add one sample of ``parent ← child``; ValueError for an empty or self-referencing frame name or a
        matrix that is not a finite rigid transform."""
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs two different non-empty frames, got {parent!r} ← {child!r}")
        T = np.asarray(T_parent_child, dtype=float)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)) or \
                not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4) or not np.allclose(T[3], [0, 0, 0, 1]):
            raise ValueError(f"{parent} ← {child}: not a finite rigid 4x4 transform")
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or (edge.static is not None) != static:
                edge = self._edges[child] = _Edge(parent)  # new, re-parented, or switched static ⇄ dynamic
            if static:
                edge.static = T
                return
            i = bisect.bisect_left(edge.stamps, stamp_ns)
            if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
                edge.matrices[i] = T
            else:
                edge.stamps.insert(i, stamp_ns)
                edge.matrices.insert(i, T)
            oldest_kept = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self._cache_ns)
            del edge.stamps[:oldest_kept], edge.matrices[:oldest_kept]

    def frames(self) -> list[str]:
        """Every frame named by a transform, sorted."""
        with self._lock:
            return sorted(set(self._edges) | {edge.parent for edge in self._edges.values()})

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray:
        """T_target_source (4x4) at ``stamp_ns`` (None: each edge's newest sample); raises TransformError."""
        with self._lock:
            known = set(self._edges) | {edge.parent for edge in self._edges.values()}
            for frame in (target, source):
                if frame not in known:
                    raise FrameUnknownError(f"frame {frame!r} is not in the TF tree (known frames: "
                                            f"{', '.join(sorted(known)) or 'none yet'})")
            if target == source:
                return np.eye(4)
            source_chain, target_chain = self._chain(source), self._chain(target)
            common = next((frame for frame in source_chain if frame in target_chain), None)
            if common is None:
                raise ConnectivityError(
                    f"no transform {target} ← {source}: their parent chains never meet ({' → '.join(source_chain)} "
                    f"and {' → '.join(target_chain)}); a transform joining {source_chain[-1]!r} and "
                    f"{target_chain[-1]!r} is missing")
            T_common_source = self._to_ancestor(source_chain, common, stamp_ns)
            T_common_target = self._to_ancestor(target_chain, common, stamp_ns)
        return np.linalg.inv(T_common_target) @ T_common_source

    def _chain(self, frame: str) -> list[str]:
        """``frame`` and its ancestors up to the root."""
        chain = [frame]
        while (edge := self._edges.get(chain[-1])) is not None and edge.parent not in chain:
            chain.append(edge.parent)
        return chain

    def _to_ancestor(self, chain: list[str], ancestor: str, stamp_ns: int | None) -> np.ndarray:
        T = np.eye(4)
        for child in chain[: chain.index(ancestor)]:
            T = self._edges[child].at(child, stamp_ns) @ T
        return T
