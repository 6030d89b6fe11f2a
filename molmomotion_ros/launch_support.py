"""Build ``ros2 launch`` descriptions from :data:`molmomotion_ros.graph.GRAPHS`.

The files in ``launch/`` are two lines each on top of this, so ``ros2 launch`` and ``molmomotion
launch`` start the same nodes with the same parameter files and overrides. Imports launch and
launch_ros only when called (they exist on a real ROS install, not in the pip venv).

Managed (lifecycle) nodes are launch_ros ``LifecycleNode`` actions started with ``autostart: false``: a
ChangeState event asks each to configure at launch, its transition to 'inactive' asks it to activate, and
a failed configure (back to 'unconfigured') is logged with the node's name and shuts the launch down (the
node's own log line says why), as ``molmomotion launch`` stops the graph. Where launch_ros has no
LifecycleNode, they are plain ``Node`` actions that configure and activate themselves (``autostart``).
"""

from __future__ import annotations

from .graph import PACKAGE, all_nodes, graph


def launch_description(graph_name: str, remappings: dict[str, list[tuple[str, str]]] | None = None):
    """The LaunchDescription of a graph. ``remappings``: node → [(from, to)], applied where given; every graph
    takes the launch argument ``namespace``, and declares its own (``GraphSpec.arguments``, listed by ``ros2
    launch -s``). A graph with arguments starts its nodes from an OpaqueFunction: their values are resolved by
    ``GraphSpec.resolve`` — the same function ``molmomotion launch`` uses, so both start the same nodes with the
    same parameters and remappings (computed ones included, e.g. joint names from arm_id; optional nodes only
    when their argument is true)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    spec = graph(graph_name)
    actions = [DeclareLaunchArgument("namespace", default_value="", description="namespace of every node")]
    for argument in spec.arguments:
        extra = {"choices": [str(c) for c in argument.choices]} if argument.choices else {}
        actions.append(DeclareLaunchArgument(argument.name, default_value=argument.default_text,
                                             description=argument.description, **extra))
    if not spec.arguments:
        return LaunchDescription(actions + node_actions(graph_name, {}, remappings))
    from launch.actions import OpaqueFunction

    def resolve(context):
        values = {a.name: context.launch_configurations[a.name] for a in spec.arguments}
        return node_actions(graph_name, values, remappings)

    return LaunchDescription([*actions, OpaqueFunction(function=resolve)])


def node_actions(graph_name: str, arguments: dict[str, str], remappings: dict | None = None) -> list:
    """The node actions (and their lifecycle bring-up) of a graph with ``arguments`` (name → string value)."""
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    try:
        from launch_ros.actions import LifecycleNode
    except ImportError:
        LifecycleNode = None  # noqa: N806  (the managed nodes then start themselves: autostart)

    spec = graph(graph_name)
    resolved = spec.resolve(arguments)
    nodes = all_nodes()
    actions: list = []
    runner_action = None
    for name in resolved.nodes:
        node = nodes[name]
        params: list = [str(node.params_path)]
        if resolved.overrides.get(name):
            params.append(dict(resolved.overrides[name]))
        managed = node.managed and LifecycleNode is not None
        if managed:
            params.append({"autostart": False})
        action = (LifecycleNode if managed else Node)(
            package=PACKAGE, executable=node.executable, name=node.name, namespace=LaunchConfiguration("namespace"),
            parameters=params, remappings=[*(remappings or {}).get(name, []), *resolved.remappings.get(name, [])],
            output="screen", emulate_tty=True)
        actions.append(action)
        if managed:
            actions += bring_up_actions(action, name)
        if name == spec.runner:
            runner_action = action
    if runner_action is not None:  # the runner's end is the graph's end
        actions.append(RegisterEventHandler(OnProcessExit(target_action=runner_action,
                                                          on_exit=[EmitEvent(event=Shutdown(reason="episodes done"))])))
    return actions


def bring_up_actions(node_action, name: str) -> list:
    """Configure ``node_action`` (a launch_ros LifecycleNode) at launch and activate it once configured; a
    failed configure is logged and shuts the launch down."""
    from launch.actions import EmitEvent, LogInfo, RegisterEventHandler
    from launch.events import Shutdown, matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    def change(transition_id: int):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node_action),
                                           transition_id=transition_id))

    failed = f"{name} failed to configure (its log above says why); stopping the launch"
    return [
        RegisterEventHandler(OnStateTransition(target_lifecycle_node=node_action, start_state="configuring",
                                               goal_state="inactive",
                                               entities=[change(Transition.TRANSITION_ACTIVATE)])),
        RegisterEventHandler(OnStateTransition(target_lifecycle_node=node_action, start_state="configuring",
                                               goal_state="unconfigured",
                                               entities=[LogInfo(msg=failed),
                                                         EmitEvent(event=Shutdown(reason=failed))])),
        change(Transition.TRANSITION_CONFIGURE),
    ]


def camera_remappings(prefix_argument: str = "camera"):
    """Remappings of the standard camera topics to a launch argument's namespace (e.g. a RealSense's)."""
    from launch.substitutions import LaunchConfiguration

    camera = LaunchConfiguration(prefix_argument)
    return [(f"camera/{topic}", [camera, f"/{topic}"]) for topic in
            ("color/image_raw", "depth/image_raw", "color/camera_info", "pose")]
