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


# --- reading profiles back, and the profile a player offers ----------------------------------------------------------
# The "infinite" durations of bags recorded on Foxy, before RMW_DURATION_INFINITE (rosbag2_storage/qos.cpp translates
# them the same way): Fast-RTPS {2147483647 s, 4294967295 ns}, Connext {2147483647 s, 2147483647 ns}.
_FOXY_INFINITE_NS = {0x7FFFFFFF * 1_000_000_000 + 0xFFFFFFFF, 0x7FFFFFFF * 1_000_000_000 + 0x7FFFFFFF}
_POLICIES = {"history": HISTORY, "reliability": RELIABILITY, "durability": DURABILITY, "liveliness": LIVELINESS}
PLAYBACK_DEPTH = 10  # rmw_qos_profile_default's depth: rosbag2's player keeps the last 10 (Rosbag2QoS::default_history)


def _policy(name: str, value) -> str:
    """A policy from a bag: an rmw name (metadata version 9) or rmw's enum value (version 8 and older)."""
    names = _POLICIES[name]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{name}: {value!r} is not a policy")
    if isinstance(value, int):
        if value not in names:
            raise ValueError(f"{name}: {value} is not an rmw policy value")
        return names[value]
    if value not in names.values():
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(sorted(set(names.values())))}")
    return value


def _duration_ns(name: str, value) -> int:
    try:
        ns = int(value["sec"]) * 1_000_000_000 + int(value["nsec"])
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a duration (sec, nsec)") from None
    return INFINITE_NS if ns in _FOXY_INFINITE_NS or ns >= INFINITE_NS else ns


def profile_from_yaml(entry: dict) -> QosProfile:
    """One profile as a bag stores it (any metadata version); ValueError names the field that is wrong."""
    if not isinstance(entry, dict):
        raise ValueError(f"{entry!r} is not a QoS profile")
    zero = {"sec": 0, "nsec": 0}  # a duration the bag leaves out: rmw's "unspecified"
    depth = entry.get("depth", 0)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth: {depth!r} is not a non-negative integer")
    try:
        return QosProfile(history=_policy("history", entry.get("history", "unknown")), depth=depth,
                          reliability=_policy("reliability", entry["reliability"]),
                          durability=_policy("durability", entry["durability"]),
                          deadline_ns=_duration_ns("deadline", entry.get("deadline", zero)),
                          lifespan_ns=_duration_ns("lifespan", entry.get("lifespan", zero)),
                          liveliness=_policy("liveliness", entry.get("liveliness", "system_default")),
                          liveliness_lease_duration_ns=_duration_ns(
                              "liveliness_lease_duration", entry.get("liveliness_lease_duration", zero)),
                          avoid_ros_namespace_conventions=bool(entry.get("avoid_ros_namespace_conventions", False)))
    except KeyError as err:
        raise ValueError(f"the profile has no {err.args[0]}") from None


def parse_profiles(value) -> list[QosProfile]:
    """``offered_qos_profiles`` as a bag holds it: a YAML list (metadata.yaml version 9), or a YAML string of that
    list (the MCAP channel metadata; metadata.yaml up to version 8). "" and None are no profiles."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"not YAML ({' '.join(str(err).split())})") from None
        if value is None:
            return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of profiles, got {type(value).__name__}")
    return [profile_from_yaml(entry) for entry in value]


def _effectively_same(a: QosProfile, b: QosProfile) -> bool:
    """The policies that decide compatibility (history and lifespan excluded), as rosbag2 compares them."""
    return (a.reliability, a.durability, a.deadline_ns, a.liveliness, a.liveliness_lease_duration_ns) == \
        (b.reliability, b.durability, b.deadline_ns, b.liveliness, b.liveliness_lease_duration_ns)


# rosbag2's Rosbag2QoS{} (rclcpp::QoS(10)): keep the last 10, reliable, volatile, the rest rmw's defaults (0 =
# unspecified).
PLAYBACK_DEFAULT = QosProfile(history="keep_last", depth=PLAYBACK_DEPTH, reliability="reliable",
                              durability="volatile", deadline_ns=0, lifespan_ns=0, liveliness="system_default",
                              liveliness_lease_duration_ns=0)


def playback_qos(offers: list[QosProfile]) -> tuple[QosProfile, str | None]:
    """The profile a player offers for a topic recorded with ``offers`` (rosbag2's
    ``Rosbag2QoS::adapt_offer_to_recorded_offers``): the recorded profile, keeping the last 10, when every recorded
    publisher offered the same compatibility policies (so a transient-local topic is latched again, a best-effort one
    stays best effort); rosbag2's default offer (reliable, volatile) with a warning when they differed, and without one
    when the bag holds no profile. Policies a publisher cannot offer (``unknown``) become the system default."""
    if not offers:
        return PLAYBACK_DEFAULT, None
    first = offers[0]
    if not all(_effectively_same(first, other) for other in offers[1:]):
        return PLAYBACK_DEFAULT, ("its publishers offered different QoS profiles; played with rosbag2's default "
                                  "offer (reliable, volatile), as ros2 bag play does")

    def known(value: str) -> str:
        return "system_default" if value == "unknown" else value

    return QosProfile(history="keep_last", depth=PLAYBACK_DEPTH, reliability=known(first.reliability),
                      durability=known(first.durability), deadline_ns=first.deadline_ns,
                      lifespan_ns=first.lifespan_ns, liveliness=known(first.liveliness),
                      liveliness_lease_duration_ns=first.liveliness_lease_duration_ns,
                      avoid_ros_namespace_conventions=first.avoid_ros_namespace_conventions), None
