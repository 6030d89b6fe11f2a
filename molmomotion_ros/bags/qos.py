"""QoS profiles as rosbag2 stores them, and the subscription QoS a recorder asks for.

``ros2 bag play`` re-creates each topic's publishers from the profiles the recorded publishers offered, read from
the MCAP channel's ``offered_qos_profiles`` metadata (a YAML string) and from metadata.yaml (a YAML list). Bag
metadata version 9 (Jazzy) writes the policies as rmw's names (``reliable``, ``transient_local``; ``unknown``
where rmw has none), durations as ``sec``/``nsec``. The integer values below are rmw's enums (rmw/types.h), the
form the ROS graph reports a publisher's profile in; rclpy needs not be imported to read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

# rmw enum value → rmw_qos_*_policy_to_str (None there → "unknown", as rosbag2 writes it).
HISTORY = {0: "system_default", 1: "keep_last", 2: "keep_all", 3: "unknown"}
RELIABILITY = {0: "system_default", 1: "reliable", 2: "best_effort", 3: "unknown", 4: "best_available"}
DURABILITY = {0: "system_default", 1: "transient_local", 2: "volatile", 3: "unknown", 4: "best_available"}
LIVELINESS = {0: "system_default", 1: "automatic", 3: "manual_by_topic", 4: "unknown", 5: "best_available"}
INFINITE_NS = 9223372036854775807  # RMW_DURATION_INFINITE: {sec: 9223372036, nsec: 854775807}


def _duration(ns: int) -> dict[str, int]:
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return {"sec": sec, "nsec": nsec}


@dataclass(frozen=True)
class QosProfile:
    """One publisher's offered QoS, with rmw's policy names."""

    history: str = "unknown"
    depth: int = 0
    reliability: str = "reliable"
    durability: str = "volatile"
    deadline_ns: int = INFINITE_NS
    lifespan_ns: int = INFINITE_NS
    liveliness: str = "automatic"
    liveliness_lease_duration_ns: int = INFINITE_NS
    avoid_ros_namespace_conventions: bool = False

    @classmethod
    def from_rmw(cls, history: int, depth: int, reliability: int, durability: int, deadline_ns: int,
                 lifespan_ns: int, liveliness: int, liveliness_lease_duration_ns: int,
                 avoid_ros_namespace_conventions: bool) -> QosProfile:
        """From rmw's enum values (what ``get_publishers_info_by_topic`` reports); unknown values read ``unknown``."""
        return cls(HISTORY.get(int(history), "unknown"), int(depth), RELIABILITY.get(int(reliability), "unknown"),
                   DURABILITY.get(int(durability), "unknown"), int(deadline_ns), int(lifespan_ns),
                   LIVELINESS.get(int(liveliness), "unknown"), int(liveliness_lease_duration_ns),
                   bool(avoid_ros_namespace_conventions))

    def to_yaml_dict(self) -> dict:
        """The profile in rosbag2's key order (metadata version 9)."""
        return {"history": self.history, "depth": self.depth, "reliability": self.reliability,
                "durability": self.durability, "deadline": _duration(self.deadline_ns),
                "lifespan": _duration(self.lifespan_ns), "liveliness": self.liveliness,
                "liveliness_lease_duration": _duration(self.liveliness_lease_duration_ns),
                "avoid_ros_namespace_conventions": self.avoid_ros_namespace_conventions}


def profiles_yaml(profiles: list[QosProfile]) -> str:
    """The MCAP channel metadata value ``offered_qos_profiles``: the profiles as a YAML list (``[]`` for none)."""
    if not profiles:
        return "[]"
    return yaml.safe_dump([p.to_yaml_dict() for p in profiles], sort_keys=False, default_flow_style=False).rstrip("\n")


@dataclass(frozen=True)
class SubscriptionQos:
    """What a recorder asks for: reliable only when every publisher offers it (a reliable request does not match
    a best-effort publisher), transient-local only when every publisher offers it (then the latched messages sent
    before the recorder started arrive too)."""

    reliable: bool
    transient_local: bool
    mixed: tuple[str, ...] = ()  # policies some but not all publishers offer (recorded from all, but weaker)


def subscription_qos(offers: list[QosProfile]) -> SubscriptionQos:
    """rosbag2's rule (``Rosbag2QoS::adapt_request_to_offers``): request a policy only where every offer has it."""
    if not offers:
        return SubscriptionQos(reliable=True, transient_local=False)
    reliable = [o.reliability == "reliable" for o in offers]
    latched = [o.durability == "transient_local" for o in offers]
    mixed = tuple(name for name, flags in (("reliable", reliable), ("transient_local", latched))
                  if any(flags) and not all(flags))
    return SubscriptionQos(reliable=all(reliable), transient_local=all(latched), mixed=mixed)


def incompatible_offer(requested: SubscriptionQos, offer: QosProfile) -> str | None:
    """Why a publisher that appeared after the subscription was made cannot be heard by it (None if it can)."""
    if requested.reliable and offer.reliability == "best_effort":
        return "it offers best_effort, the recorder asked for reliable"
    if requested.transient_local and offer.durability == "volatile":
        return "it offers volatile, the recorder asked for transient_local"
    return None
