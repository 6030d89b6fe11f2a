"""The client side of managed nodes: bring a graph's managed nodes to 'active' through their lifecycle services,
as nav2's lifecycle_manager does with ``autostart``, and wait until nodes report 'active'.

``molmomotion launch`` starts the managed nodes with ``autostart:=false`` and runs this module as a process
(``python -m molmomotion_ros.nodes.lifecycle_manager --ros-args -p node_names:="[a, b]"``): it asks every node to
configure at once (``~/change_state``, lifecycle_msgs/srv/ChangeState; each loads its model in its own process),
then to activate, in the given order, and exits 0 when all are active. A node that fails to configure is named
with its reason (the ERROR status ``"<node>: configure"`` it publishes on /diagnostics) in one logged error line,
and the manager exits with status 2. The episode runner uses :func:`wait_until_active` (``~/get_state``).
"""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from .lifecycle import CONFIGURE_STAGE
from .runtime import StartupError, run_node

NAME = "molmomotion_lifecycle_manager"
POLL_S = 0.25  # how often wait_until_active asks again
REASON_WAIT_S = 3.0  # how long a failed configure's reason may take to arrive on /diagnostics


def call(client, request, timeout_s: float):
    """Call a service (the node spins in another thread); the response, or None after ``timeout_s``."""
    future = client.call_async(request)
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(max(0.0, timeout_s)):
        client.remove_pending_request(future)
        return None
    return future.result()


class LifecycleClient:
    """One managed node's ``~/get_state`` and ``~/change_state``."""

    def __init__(self, node: Node, name: str):
        self.name = name.lstrip("/")
        # Relative: a graph launched in a namespace has its nodes, and this manager, in it.
        self._get = node.create_client(GetState, f"{self.name}/get_state")
        self._change = node.create_client(ChangeState, f"{self.name}/change_state")

    def wait_for_services(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        return (self._get.wait_for_service(timeout_sec=max(0.0, timeout_s))
                and self._change.wait_for_service(timeout_sec=max(0.0, end - time.monotonic())))

    def state(self, timeout_s: float) -> str | None:
        """The state's label (unconfigured, inactive, active, ...), or None when the node did not answer."""
        response = call(self._get, GetState.Request(), timeout_s)
        return None if response is None else response.current_state.label

    def change_async(self, transition_id: int):
        return self._change.call_async(ChangeState.Request(transition=Transition(id=transition_id)))

    def change(self, transition_id: int, timeout_s: float) -> bool | None:
        """True when the transition succeeded, False when the node refused or failed it, None on timeout."""
        response = call(self._change, ChangeState.Request(transition=Transition(id=transition_id)), timeout_s)
        return None if response is None else response.success


class ConfigureReasons:
    """The newest configure-failure reason each node published on /diagnostics."""

    def __init__(self, node: Node):
        self._reasons: dict[str, str] = {}
        self._cond = threading.Condition()
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            name, _, stage = status.name.partition(": ")
            if stage == CONFIGURE_STAGE and status.level == DiagnosticStatus.ERROR:
                values = {kv.key: kv.value for kv in status.values}
                with self._cond:
                    self._reasons[name] = values.get("reason", status.message)
                    self._cond.notify_all()

    def wait(self, name: str, timeout_s: float) -> str | None:
        with self._cond:
            self._cond.wait_for(lambda: name in self._reasons, timeout=timeout_s)
            return self._reasons.get(name)


def bring_up(node: Node, names: list[str], timeout_s: float, reasons: ConfigureReasons) -> dict[str, float]:
    """Configure (all at once) and activate (in order) every managed node of ``names`` that is not active yet;
    returns each node's configure time in s. Raises StartupError naming each node that failed and why."""
    end = time.monotonic() + timeout_s

    def left() -> float:
        return max(0.0, end - time.monotonic())

    clients = [LifecycleClient(node, name) for name in names]
    for client in clients:
        if not client.wait_for_services(left()):
            raise StartupError(f"{client.name} offers no lifecycle services (~/change_state) within {timeout_s:.0f} "
                               "s: is it running, and is it a managed node?")
    states = {client.name: client.state(left()) for client in clients}
    start = time.monotonic()
    configuring = {client: client.change_async(Transition.TRANSITION_CONFIGURE) for client in clients
                   if states[client.name] == "unconfigured"}
    seconds, problems = {}, []
    for client, future in configuring.items():
        done = threading.Event()
        future.add_done_callback(lambda _, done=done: done.set())
        if not done.wait(left()):
            problems.append(f"{client.name} did not finish configuring within {timeout_s:.0f} s")
        elif not future.result().success:
            reason = reasons.wait(client.name, REASON_WAIT_S) or "no reason on /diagnostics; see its log"
            problems.append(f"{client.name} failed to configure: {reason}")
        else:
            seconds[client.name] = time.monotonic() - start
    if problems:
        raise StartupError("; ".join(problems))
    for client in clients:
        if states[client.name] == "active":
            continue
        outcome = client.change(Transition.TRANSITION_ACTIVATE, left())
        if not outcome:
            raise StartupError(f"{client.name} " + ("did not answer its activate request in time" if outcome is None
                                                   else "failed to activate (its log says why)"))
    return seconds


def wait_until_active(node: Node, names: list[str], timeout_s: float) -> None:
    """Wait until every node of ``names`` reports 'active' on ~/get_state; StartupError naming the nodes that
    did not (and their last state) after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    clients = [LifecycleClient(node, name) for name in names]
    states: dict[str, str | None] = {client.name: None for client in clients}
    for client in clients:
        if not client.wait_for_services(max(0.0, end - time.monotonic())):
            break
        while time.monotonic() < end:
            states[client.name] = client.state(max(0.0, end - time.monotonic()))
            if states[client.name] == "active":
                break
            time.sleep(POLL_S)
    waiting = [f"{name} ({state or 'not found'})" for name, state in states.items() if state != "active"]
    if waiting:
        raise StartupError(f"not active after {timeout_s:.0f} s: {', '.join(waiting)}; an 'unconfigured' node "
                           "failed to configure (its log and /diagnostics say why) or was never asked to")


class LifecycleManagerNode(Node):
    def __init__(self) -> None:
        super().__init__(NAME)
        self.names = list(self.declare_parameter(
            "node_names", [""], ParameterDescriptor(description="managed nodes to configure (at once) and "
                                                    "activate (in this order)", read_only=True)).value)
        self.timeout_s = self.declare_parameter(
            "timeout_s", 300.0, ParameterDescriptor(description="wall-clock seconds for the whole bring-up",
                                                    read_only=True)).value
        self.reasons = ConfigureReasons(self)


def run(node: LifecycleManagerNode) -> int:
    names = [name for name in node.names if name]
    seconds = bring_up(node, names, node.timeout_s, node.reasons)
    configured = ", ".join(f"{name} configured in {s:.1f} s" for name, s in seconds.items())
    node.get_logger().info(f"active: {', '.join(names)}" + (f" ({configured})" if configured else ""))
    return 0


def main(args=None) -> None:
    run_node(NAME, LifecycleManagerNode, args, work=run)


if __name__ == "__main__":
    main()
