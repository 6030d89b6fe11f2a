"""Faults on the simulated Franka cell, through the real_arm graph: each ends with a stated reason, the next works.

Start the cell and the graph (same ROS_DOMAIN_ID), then this script (plain rclpy and message packages):

    molmomotion launch fake_franka --set fake_franka.camera_rate_hz=15 &
    molmomotion launch real_arm execute:=true &
    python scripts/cell_faults.py       # --tf-missing first when fake_franka started with fault_hand_eye_missing:=true

For each case it resets fake_franka, injects the fault (fake_franka's fault_* parameters), publishes the
instruction and waits for the episode's end on manipulation/status; the last case has no fault and must succeed
in carrying the motion out ("done"). Exit status 1 when a case does not end as expected.
"""

from __future__ import annotations

import json
import sys
import time

import rclpy
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
INSTRUCTION = "move the red cube on the cyan tray"  # fake_franka's default episode (place-in-container, 110000)
NO_FAULT = {"trajectory_tolerance_rad": 0.0, "fault_push_rad": 0.0, "fault_stop_joint_states": False,
            "fault_distortion_model": ""}
# (name, fault parameters, expected end state, words the reason must hold, action while executing)
CASES = [
    ("goal aborted mid-way", {"trajectory_tolerance_rad": 0.05, "fault_push_rad": 0.3, "fault_push_after_s": 1.0},
     "failed", "PATH_TOLERANCE_VIOLATED", None),
    ("joint states stale", {"fault_stop_joint_states": True}, "failed", "joint_states", None),
    ("camera_info of another distortion model (the forecaster refuses every frame; its reason is relayed)",
     {"fault_distortion_model": "equidistant"}, "failed", "equidistant", None),
    ("~/stop during motion", {}, "stopped", "", "stop"),
    ("no fault: the next instruction is handled", {}, "done", "", None),
]
# Run first when fake_franka was started with fault_hand_eye_missing:=true (--tf-missing): running nodes keep a
# static transform they once had, so only a graph that never saw the hand-eye transform can miss it.
TF_MISSING = ("hand-eye transform missing from TF", {}, "failed", "no camera pose", None)
END_STATES = ("done", "failed", "stopped")


class Cell:
    def __init__(self) -> None:
        self.node = rclpy.create_node("cell_faults")
        self.statuses: list[dict] = []
        self.node.create_subscription(String, "manipulation/status",
                                      lambda msg: self.statuses.append(json.loads(msg.data)), LATCHED)
        self.instruction = self.node.create_publisher(String, "instruction", LATCHED)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def call(self, srv_type, name: str, request, timeout_s: float = 60.0):
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise SystemExit(f"{name} did not appear within {timeout_s:.0f} s: is fake_franka running?")
        future = client.call_async(request)
        end = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
        self.node.destroy_client(client)
        if not future.done():
            raise SystemExit(f"{name} did not answer within {timeout_s:.0f} s")
        return future.result()

    def set_faults(self, values: dict) -> None:
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        refused = [r.reason for r in self.call(SetParameters, "fake_franka/set_parameters", request).results
                   if not r.successful]
        if refused:
            raise SystemExit(f"fake_franka refused the fault parameters: {refused}")

    def episode(self, faults: dict, timeout_s: float, during: str | None = None) -> dict | None:
        """Reset, inject, instruct; the episode's last status, or None when none ended within ``timeout_s``.
        ``during="stop"`` calls manipulation_node's ~/stop a second after the motion began."""
        self.set_faults(NO_FAULT)
        answer = self.call(Trigger, "fake_franka/reset", Trigger.Request())
        if not answer.success:
            raise SystemExit(f"fake_franka's reset failed: {answer.message}")
        self.spin(1.0)
        self.set_faults(faults)
        seen = len(self.statuses)
        self.instruction.publish(String(data=json.loads(answer.message)["instruction"] or INSTRUCTION))
        end = time.monotonic() + timeout_s
        stopped = False
        while time.monotonic() < end:
            self.spin(0.2)
            ended = [s for s in self.statuses[seen:] if s.get("state") in END_STATES]
            if ended:
                return ended[-1]
            if during == "stop" and not stopped and any(s.get("state") == "executing" for s in self.statuses[seen:]):
                self.spin(1.0)
                answer = self.call(Trigger, "manipulation_node/stop", Trigger.Request())
                stopped = True
                print(f"    ~/stop: {answer.message}", flush=True)
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cases = ([TF_MISSING] if "--tf-missing" in argv else []) + CASES
    rclpy.init()
    cell = Cell()
    print("waiting for manipulation_node's status (is `molmomotion launch real_arm execute:=true` running?)",
          flush=True)
    while not cell.statuses:
        cell.spin(0.5)
    failures = 0
    for name, faults, expected, words, during in cases:
        status = cell.episode(faults, timeout_s=240.0, during=during)
        state, reason = (status or {}).get("state"), (status or {}).get("reason", "")
        ok = state == expected and words in (reason or "")
        failures += not ok
        print(f"{'ok ' if ok else 'BAD'} {name}: {state or 'no episode end'}{': ' + reason if reason else ''}",
              flush=True)
        if name == TF_MISSING[0]:
            cell.set_faults({"fault_hand_eye_missing": False})  # the calibration is published again
            cell.spin(1.0)
    cell.set_faults(NO_FAULT)
    rclpy.try_shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
