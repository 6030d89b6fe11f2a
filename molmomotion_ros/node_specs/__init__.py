"""Parameter specifications of every node, one module per node (pure Python, no rclpy)."""

from . import episode_runner, forecaster, manipulation, policy, sim, speech  # noqa: F401  (each registers its NodeSpec)
