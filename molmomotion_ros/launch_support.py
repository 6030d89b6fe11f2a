"""Build ``ros2 launch`` descriptions from :data:`molmomotion_ros.graph.GRAPHS`.

The files in ``launch/`` are two lines each on top of this, so ``ros2 launch`` and ``molmomotion
launch`` start the same nodes with the same parameter files and overrides. Imports launch and
launch_ros only when called (they exist on a real ROS install, not in the pip venv).
"""

from __future__ import annotations

from .graph import PACKAGE, all_nodes, graph


def launch_description(graph_name: str, remappings: dict[str, list[tuple[str, str]]] | None = None):
    """The LaunchDescription of a graph. ``remappings``: node → [(from, to)], applied where given;
    every graph also takes the launch argument ``namespace``."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    spec = graph(graph_name)
    nodes = all_nodes()
    actions = [DeclareLaunchArgument("namespace", default_value="", description="namespace of every node")]
    runner_action = None
    for name in spec.nodes + ((spec.runner,) if spec.runner else ()):
        node = nodes[name]
        params: list = [str(node.params_path)]
        if spec.overrides.get(name):
            params.append(dict(spec.overrides[name]))
        action = Node(package=PACKAGE, executable=node.executable, name=node.name,
                      namespace=LaunchConfiguration("namespace"), parameters=params,
                      remappings=(remappings or {}).get(name, []), output="screen", emulate_tty=True)
        actions.append(action)
        if name == spec.runner:
            runner_action = action
    if runner_action is not None:  # the runner's end is the graph's end
        actions.append(RegisterEventHandler(OnProcessExit(target_action=runner_action,
                                                          on_exit=[EmitEvent(event=Shutdown(reason="episodes done"))])))
    return LaunchDescription(actions)


def camera_remappings(prefix_argument: str = "camera"):
    """Remappings of the standard camera topics to a launch argument's namespace (e.g. a RealSense's)."""
    from launch.substitutions import LaunchConfiguration

    camera = LaunchConfiguration(prefix_argument)
    return [(f"camera/{topic}", [camera, f"/{topic}"]) for topic in
            ("color/image_raw", "depth/image_raw", "color/camera_info", "pose")]
