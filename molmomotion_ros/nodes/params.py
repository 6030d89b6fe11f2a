"""Declare a node's parameters from its :class:`~molmomotion_ros.node_specs.spec.NodeSpec` and validate them.

Every parameter gets a description, read-only flag and integer/float range in its descriptor (so
``ros2 param describe`` shows them), and every value is checked by the spec at start-up (a managed node: at
configure) and on every runtime change: a bad value is refused with a reason instead of reaching the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from ..node_specs.spec import NodeSpec, ParamSpec
from .runtime import StartupError


class ParameterValueError(StartupError, ValueError):
    """A parameter value that the node's spec refuses (at start-up, or at configure)."""


def _descriptor(p: ParamSpec, read_only: bool) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=p.description, read_only=read_only)
    constraints = []
    if p.choices is not None:
        constraints.append("one of: " + ", ".join(map(str, p.choices)))
    if p.read_only and not read_only:
        constraints.append("read at configure: set it while the node is unconfigured")
    descriptor.additional_constraints = "; ".join(constraints)
    if p.range is not None and type(p.default) is int:
        descriptor.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    elif p.range is not None and type(p.default) is float:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                              to_value=float(p.range[1]), step=0.0)]
    # Range descriptors make rclpy itself reject out-of-range values before our check; a
    # wrong type from a params file is caught by our check (dynamic typing keeps rclpy
    # from raising during declare, so all problems are reported at once).
    descriptor.dynamic_typing = True
    return descriptor


def _plain(p: ParamSpec, value):
    """A declared value as the spec checks it (ints for float parameters become floats, arrays lists)."""
    if type(p.default) is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hasattr(value, "tolist"):  # array-valued parameters come back as array.array
        value = value.tolist()
    if value is None and type(p.default) is list:  # a params file's `[]` declares no value
        value = []
    return value


def declare_parameters(node: Node, spec: NodeSpec, on_change=None) -> dict[str, Any]:
    """Declare ``spec``'s parameters on a plain node; return the validated start values.

    ``on_change(name, value)`` is called after a runtime change has been accepted.
    Raises ParameterValueError listing every bad start value.
    """
    values, problems = {}, []
    for p in spec.parameters:
        try:
            value = node.declare_parameter(p.name, p.default, _descriptor(p, p.read_only)).value
        except Exception as err:  # rclpy raises InvalidParameterValueException for out-of-range
            problems.append(f"{p.name}: {err}")
            continue
        value = _plain(p, value)
        problem = p.problem(value)
        if problem:
            problems.append(problem)
        values[p.name] = value
    if problems:
        raise ParameterValueError(f"{spec.name}: bad parameter value(s): " + "; ".join(problems))
    _add_callbacks(node, spec, on_change)
    return values


class ManagedParameters:
    """A managed node's parameters: declared at construction (so they can be set before configure), read and
    checked by :meth:`read` at configure.

    A read-only parameter of the spec is read at configure: it may be set while the node is unconfigured only
    (``is_unconfigured()``), and takes effect at the next configure. A start value that rclpy refused at
    declaration (out of range) leaves the default declared and is a problem of every configure until the
    parameter is set.
    """

    def __init__(self, node: Node, spec: NodeSpec, is_unconfigured: Callable[[], bool],
                 on_change: Callable[[str, Any], None] | None = None):
        self._node, self._spec = node, spec
        self.refused: dict[str, str] = {}  # parameter → why its start value was refused
        for p in spec.parameters:
            try:
                node.declare_parameter(p.name, p.default, _descriptor(p, read_only=False))
            except Exception as err:  # rclpy raises InvalidParameterValueException for out-of-range
                self.refused[p.name] = f"{p.name}: {err}"
                node.declare_parameter(p.name, p.default, _descriptor(p, read_only=False), ignore_override=True)

        def configure_time_only(params) -> SetParametersResult:
            if is_unconfigured():
                return SetParametersResult(successful=True)
            for param in params:
                if any(p.name == param.name and p.read_only for p in spec.parameters):
                    return SetParametersResult(successful=False, reason=(
                        f"{param.name} is read at configure: set it while {spec.name} is unconfigured (deactivate, "
                        "clean up), then configure again"))
            return SetParametersResult(successful=True)

        node.add_on_set_parameters_callback(configure_time_only)

        def changed(name: str, value) -> None:
            self.refused.pop(name, None)
            if on_change is not None:
                on_change(name, value)

        _add_callbacks(node, spec, changed)

    def read(self) -> dict[str, Any]:
        """Every parameter's current value; ParameterValueError listing every problem."""
        values, problems = {}, list(self.refused.values())
        for p in self._spec.parameters:
            value = _plain(p, self._node.get_parameter(p.name).value)
            if p.name not in self.refused and (problem := p.problem(value)):
                problems.append(problem)
            values[p.name] = value
        if problems:
            raise ParameterValueError(f"{self._spec.name}: bad parameter value(s): " + "; ".join(problems))
        return values


def _add_callbacks(node: Node, spec: NodeSpec, on_change) -> None:
    """Refuse a runtime value that the spec refuses; tell ``on_change`` of an accepted one."""

    def validate(params) -> SetParametersResult:
        for param in params:
            try:
                p = spec.spec(param.name)
            except KeyError:
                continue  # use_sim_time and other rclpy-owned parameters
            problem = p.problem(_plain(p, param.value))
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(validate)
    if on_change is not None:
        def after(params) -> None:
            for param in params:
                if any(p.name == param.name for p in spec.parameters):
                    on_change(param.name, _plain(spec.spec(param.name), param.value))
        if hasattr(node, "add_post_set_parameters_callback"):
            node.add_post_set_parameters_callback(after)
