"""Managed (lifecycle) nodes, as nav2 and yolo_ros run theirs: :class:`ManagedNode` is the base of every node that
loads a model or talks to the robot (forecaster_node, speech_node, manipulation_node, policy_node).

The transitions (``~/change_state``, lifecycle_msgs/srv/ChangeState; ``~/get_state`` answers the state):

* **configure** (unconfigured → inactive): read and check every parameter, then the node's :meth:`configure`
  loads its model (planner, recogniser) and creates its publishers (lifecycle publishers: they send nothing
  until the node is active). A failure returns FAILURE: the node stays alive and *unconfigured*, logs the
  reason once as an error and reports it on ``/diagnostics`` (ERROR, status ``"<node>: configure"``, every
  :data:`PROBLEM_REPEAT_S`); set the parameter it names and configure again.
* **activate** (inactive → active): publishers on, then :meth:`activate` creates the subscriptions, services
  and timers (through :meth:`while_active`) and starts the worker thread.
* **deactivate** (active → inactive): :meth:`deactivate` stops motion (the arm nodes send the stop hold) and
  the worker, then the subscriptions, services and timers are destroyed and the publishers switched off.
  A later activate is a fresh start (a latched message is delivered again; the arm nodes skip one they
  already took, :class:`TakenMessages`).
* **cleanup** (inactive → unconfigured): :meth:`cleanup` releases the model; the publishers are destroyed.
* **shutdown** (any → finalized): deactivate and clean up as needed.

The ``autostart`` parameter (default true) makes :meth:`start` configure and activate the node itself, so a node
started alone comes up as before; ``molmomotion launch`` and the launch files set it false and drive the
transitions (:mod:`.lifecycle_manager`, :mod:`molmomotion_ros.launch_support`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.client import Client
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from std_msgs.msg import String

from .. import conversions
from ..node_specs.spec import NodeSpec
from .params import ManagedParameters
from .runtime import StartupError

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
PROBLEM_REPEAT_S = 1.0  # a failed configure's reason is re-published on /diagnostics this often
CONFIGURE_STAGE = "configure"  # the /diagnostics status "<node>: configure" tells a configure's outcome


class ManagedNode(LifecycleNode):
    """A lifecycle node whose parameters come from ``spec``; subclasses fill in the hooks :meth:`configure`,
    :meth:`activate`, :meth:`deactivate`, :meth:`cleanup` and :meth:`apply_parameter`."""

    def __init__(self, spec: NodeSpec, **kwargs):
        super().__init__(spec.name, **kwargs)
        self.spec = spec
        self._declared = ManagedParameters(self, spec, lambda: self.state == "unconfigured", self._changed)
        self._params: dict[str, Any] = {p.name: self.get_parameter(p.name).value for p in spec.parameters}
        # A plain publisher: a failed configure is reported while the node is unconfigured.
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._configure_problem: str | None = None
        self._problem_timer = self.create_timer(PROBLEM_REPEAT_S, self._repeat_problem)
        self._active_entities: list = []

    # --- hooks --------------------------------------------------------------------------------------------
    def configure(self) -> None:
        """Load the model and create the publishers (``create_lifecycle_publisher``) from ``self._params``;
        raise StartupError with the reason (and what to change) when that cannot be done."""

    def activate(self) -> None:
        """Create the subscriptions, services and timers (each through :meth:`while_active`) and start work."""

    def deactivate(self) -> None:
        """Stop motion and work (the subscriptions, services and timers are destroyed afterwards)."""

    def cleanup(self) -> None:
        """Release what :meth:`configure` loaded (also after a configure that failed half-way)."""

    def apply_parameter(self, name: str, value) -> None:
        """A runtime parameter change, while configured (``self._params`` already holds it)."""

    # --- for the hooks ------------------------------------------------------------------------------------
    def while_active(self, entity):
        """Record a subscription, service, client or timer that :meth:`activate` created: it is destroyed at
        deactivate. Returns ``entity``."""
        self._active_entities.append(entity)
        return entity

    def subscribe_instructions(self, callback) -> None:
        """Subscribe ``callback(msg, info)`` to ``instruction`` for publishers of either durability, while active.

        A transient-local subscription hears the instruction latched before it joined, but DDS never matches
        it with a volatile publisher (``ros2 topic pub --once``, most nodes); a volatile one hears both kinds
        of publisher but not what was latched before. So the node subscribes both ways and takes each message
        once, by its DDS identity (:class:`TakenMessages`)."""
        taken = TakenMessages()

        def once(msg: String, info) -> None:
            if taken.first_time(info):
                callback(msg, info)

        for durability in (DurabilityPolicy.TRANSIENT_LOCAL, DurabilityPolicy.VOLATILE):
            qos = QoSProfile(depth=1 if durability == DurabilityPolicy.TRANSIENT_LOCAL else 10,
                             reliability=ReliabilityPolicy.RELIABLE, durability=durability)
            self.while_active(self.create_subscription(String, "instruction", once, qos))

    @property
    def state(self) -> str:
        """The lifecycle state's label: unconfigured, inactive, active, finalized (or a transition's)."""
        return self._state_machine.current_state[1]

    def diag(self, stage: str, level: str, message: str, values: dict | None = None) -> None:
        """One status on /diagnostics, named ``"<node>: <stage>"``."""
        if self.context.ok():
            self._pub_diag.publish(conversions.diagnostic_array(self.get_name(), stage, level, message,
                                                                self.get_clock().now().to_msg(), values))

    # --- autostart and exit -----------------------------------------------------------------------------
    def start(self) -> None:
        """With ``autostart`` (the default) configure and activate now; else wait for ~/change_state."""
        if not self._params["autostart"]:
            self.get_logger().info("unconfigured: waiting for a lifecycle manager (autostart is false)")
            return
        if self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def close(self) -> None:
        """The process is ending (the context may already be shut down): stop work and release the model
        without further transitions."""
        state = self.state
        if state == "active":
            self._stop_activity()
        if state in ("active", "inactive"):
            self._release()

    # --- transitions ----------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._params = self._declared.read()
            self.configure()
        except StartupError as err:
            return self._configure_failed(str(err))
        except Exception as err:  # noqa: BLE001  (a bug in a hook: the node stays up and says what happened)
            return self._configure_failed(f"unexpected {type(err).__name__} while configuring: {err}")
        self._configure_problem = None
        self.diag(CONFIGURE_STAGE, "OK", "configured")
        self.get_logger().info("configured")
        return SUCCESS

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self._release()
        self._configure_problem = reason
        self.get_logger().error(f"configure failed: {reason}")
        self._repeat_problem()
        return FAILURE

    def _repeat_problem(self) -> None:
        if self._configure_problem is not None and self.state == "unconfigured":
            self.diag(CONFIGURE_STAGE, "ERROR", self._configure_problem[:300], {"reason": self._configure_problem})

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        super().on_activate(state)  # the lifecycle publishers on
        try:
            self.activate()
        except Exception as err:  # noqa: BLE001  (back to inactive with the reason)
            self.get_logger().error(f"activate failed: {type(err).__name__}: {err}")
            self._stop_activity()
            return FAILURE
        self.get_logger().info("active")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_activity()
        self.get_logger().info("inactive")
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self._stop_activity()
        if state.label in ("active", "inactive"):
            self._release()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised (rclpy turned it into ERROR): release everything, back to unconfigured."""
        self.get_logger().error(f"error while leaving {state.label}: releasing everything")
        try:
            if state.label == "active":
                self._stop_activity()
            self._release()
        except Exception as err:  # noqa: BLE001  (finalized rather than half-released)
            self.get_logger().error(f"releasing failed: {type(err).__name__}: {err}")
            return FAILURE
        return SUCCESS

    def _stop_activity(self) -> None:
        try:
            self.deactivate()
        finally:
            for entity in reversed(self._active_entities):
                _destroy(self, entity)
            self._active_entities.clear()
            super().on_deactivate(None)  # the lifecycle publishers off (after the hooks' last messages)

    def _release(self) -> None:
        try:
            self.cleanup()
        finally:
            for entity in list(self._managed_entities):
                if isinstance(entity, LifecyclePublisher):
                    self.destroy_lifecycle_publisher(entity)

    def _changed(self, name: str, value) -> None:
        self._params[name] = value
        if self.state in ("inactive", "active"):
            self.apply_parameter(name, value)


def _destroy(node: ManagedNode, entity) -> None:
    if isinstance(entity, Subscription):
        node.destroy_subscription(entity)
    elif isinstance(entity, Service):
        node.destroy_service(entity)
    elif isinstance(entity, Client):
        node.destroy_client(entity)
    elif isinstance(entity, Timer):
        node.destroy_timer(entity)
    else:
        raise TypeError(f"cannot destroy {entity!r}")


class TakenMessages:
    """Which latched messages a node has taken, by the identity DDS gives each message (the writer's source
    timestamp and sequence number, rclpy's MessageInfo): after a re-activation the new subscription is sent the
    last message again (transient-local durability), and a node that moves the arm must not act on it twice."""

    def __init__(self, size: int = 16):
        self._seen: deque[tuple] = deque(maxlen=size)

    def first_time(self, info) -> bool:
        """True the first time the message with this MessageInfo is seen (then remembered)."""
        key = (info.get("source_timestamp"), info.get("publication_sequence_number"))
        if key in self._seen:
            return False
        self._seen.append(key)
        return True
