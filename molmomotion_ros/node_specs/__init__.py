"""Parameter specifications of every node, one module per node (pure Python, no rclpy).

Imports point one way: :mod:`molmomotion_ros.graph` imports this package, which imports only its own
modules (the data types are in :mod:`.spec`).
"""

from .episode_runner import EPISODE_RUNNER
from .fake_franka import FAKE_FRANKA
from .forecaster import FORECASTER_NODE
from .manipulation import MANIPULATION_NODE
from .policy import POLICY_NODE
from .sim import SIM_NODE
from .spec import NodeSpec, ParamSpec
from .speech import SPEECH_NODE

NODES: dict[str, NodeSpec] = {spec.name: spec for spec in (
    EPISODE_RUNNER, FORECASTER_NODE, MANIPULATION_NODE, POLICY_NODE, SIM_NODE, SPEECH_NODE)}
NODES[FAKE_FRANKA.name] = FAKE_FRANKA  # the simulated Franka cell (issue 17)

__all__ = ["NODES", "NodeSpec", "ParamSpec"]
