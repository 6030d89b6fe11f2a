"""Declare a node's parameters from its :class:`~molmomotion_ros.node_specs.spec.NodeSpec` and validate them.

Every parameter gets a description, read-only flag and integer/float range in its descriptor (so
``ros2 param describe`` shows them), and every value is checked by the spec at start-up and on
every runtime change: a bad value is refused with a reason instead of reaching the library.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from ..node_specs.spec import NodeSpec
from .runtime import StartupError


class ParameterValueError(StartupError, ValueError):
    """A parameter value that the node's spec refuses (at start-up)."""


def declare_parameters(node: Node, spec: NodeSpec, on_change=None) -> dict[str, Any]:
    """Declare ``spec``'s parameters on ``node``; return the validated start values.

    ``on_change(name, value)`` is called after a runtime change has been accepted.
    Raises ParameterValueError listing every bad start value.
    """
    values, problems = {}, []
    for p in spec.parameters:
        descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
        if p.choices is not None:
            descriptor.additional_constraints = "one of: " + ", ".join(map(str, p.choices))
        if p.range is not None and type(p.default) is int:
            descriptor.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
        elif p.range is not None and type(p.default) is float:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                                  to_value=float(p.range[1]), step=0.0)]
        # Range descriptors make rclpy itself reject out-of-range values before our check; a
        # wrong type from a params file is caught by our check below (dynamic typing keeps rclpy
        # from raising during declare, so all problems are reported at once).
        descriptor.dynamic_typing = True
        try:
            value = node.declare_parameter(p.name, p.default, descriptor).value
        except Exception as err:  # rclpy raises InvalidParameterValueException for out-of-range
            problems.append(f"{p.name}: {err}")
            continue
        if type(p.default) is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if hasattr(value, "tolist"):  # array-valued parameters come back as array.array
            value = value.tolist()
        problem = p.problem(value)
        if problem:
            problems.append(problem)
        values[p.name] = value
    if problems:
        raise ParameterValueError(f"{spec.name}: bad parameter value(s): " + "; ".join(problems))

    def validate(params) -> SetParametersResult:
        for param in params:
            try:
                p = spec.spec(param.name)
            except KeyError:
                continue  # use_sim_time and other rclpy-owned parameters
            value = param.value
            if hasattr(value, "tolist"):
                value = value.tolist()
            problem = p.problem(value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(validate)
    if on_change is not None:
        def after(params) -> None:
            for param in params:
                if any(p.name == param.name for p in spec.parameters):
                    on_change(param.name, param.value)
        if hasattr(node, "add_post_set_parameters_callback"):
            node.add_post_set_parameters_callback(after)
    return values
