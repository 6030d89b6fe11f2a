"""control_msgs and tf2_msgs, which no pip wheel ships: set-up generates them from interfaces/
(scripts/build_interfaces.sh); a ROS install provides its own. Either way a real Franka cell's
nodes must interoperate with ours, so this checks, with real rclpy and no mocks:

- the types carry the same RIHS01 type hashes as ROS's own builds (the hash covers type names,
  field names and field types, recursively), both in the installed type descriptions and on the
  graph (what a remote node compares);
- a FollowJointTrajectory and a GripperCommand action round trip against a server in another
  process (interface_peer.py), every goal field echoed back;
- TFMessage on /tf (volatile) and /tf_static (latched, joined late) from another process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import rclpy
from builtin_interfaces.msg import Duration
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosutil import stop, wait_until
from trajectory_msgs.msg import JointTrajectoryPoint

try:
    from control_msgs.action import FollowJointTrajectory, GripperCommand
    from control_msgs.msg import GripperCommand as GripperCommandMsg
    from control_msgs.msg import JointComponentTolerance, JointTolerance
    from tf2_msgs.msg import TF2Error, TFMessage
except ImportError as error:  # pragma: no cover - set-up problem, say how to fix it
    raise ImportError(f"{error}: control_msgs/tf2_msgs are built by set-up when no ROS install provides "
                      "them; run `bash scripts/bootstrap.sh` (or `bash scripts/build_interfaces.sh`)") from error

PEER = Path(__file__).with_name("interface_peer.py")
ARM_ACTION = "/fr3_arm_controller/follow_joint_trajectory"
GRIPPER_ACTION = "/franka_gripper/gripper_action"
ARM = [f"fr3_joint{i}" for i in range(1, 8)]
TIMEOUT_S = 30.0

# RIHS01 hashes of ROS's own builds of these types. control_msgs: the type_hash of every type in
# rosidl_generator_c's *__description.c of a colcon build of upstream control_msgs against an
# /opt/ros install (all 29 below agreed with what our generator wrote, byte for byte). tf2_msgs:
# `ros2 topic info -v /tf` on a Jazzy node, and tf2_msgs/TF2Error as published in golden-hash tests.
ROS_TYPE_HASHES = {
    "control_msgs/action/FollowJointTrajectory":
        "RIHS01_738ebcb7a2d7cfa42f9f1001cc99ce3a4383d1cfe508015d9be8485e4b1c66f6",
    "control_msgs/action/FollowJointTrajectory_Goal":
        "RIHS01_8a9060704b269608f5a340934cc26e66869dd14bdac29e2e7fd9ec8b9882d205",
    "control_msgs/action/FollowJointTrajectory_Result":
        "RIHS01_8002e99ed2c14c6faa522f2a93c26d744c5982f254f9e98ff9c6f19789bdb220",
    "control_msgs/action/FollowJointTrajectory_Feedback":
        "RIHS01_3fd0aaecf71725121ae1ff7f01098a5e0da581e672be18a6b2c286cb43d96b49",
    "control_msgs/action/FollowJointTrajectory_SendGoal":
        "RIHS01_b13789dddc325a7a962825c45e28c77d37237ec129dd0c34dc5994562938c57f",
    "control_msgs/action/FollowJointTrajectory_SendGoal_Request":
        "RIHS01_179c93691f1f6d1d115881ff88c3917b7cc6eac2ba4bf56766cc7c4389e19ef1",
    "control_msgs/action/FollowJointTrajectory_SendGoal_Response":
        "RIHS01_e6a48ba740ae254500129a877f0b071be8663a115da1a539b74599cc97921fbf",
    "control_msgs/action/FollowJointTrajectory_SendGoal_Event":
        "RIHS01_906dd566308db02673c73c654f69bdd84738589629c1bc2841ddb49059ed1c6f",
    "control_msgs/action/FollowJointTrajectory_GetResult":
        "RIHS01_e3ceb38e3e1867c8dc0f46014df26e90eb93422f27e9e97f936e07f94be4bc8b",
    "control_msgs/action/FollowJointTrajectory_GetResult_Request":
        "RIHS01_ecf7ea8463d3beec7084bca75216d0b01b87b6e1e4e09679bb26093041efcbe9",
    "control_msgs/action/FollowJointTrajectory_GetResult_Response":
        "RIHS01_08eefbaa146ce02ba45898d5e99160afd6c4c54a30d159aee0f2ca6035b1580f",
    "control_msgs/action/FollowJointTrajectory_GetResult_Event":
        "RIHS01_43161a489e52daaa5bbc2fa74f73f1804d099574fcf8f819170807d75472662a",
    "control_msgs/action/FollowJointTrajectory_FeedbackMessage":
        "RIHS01_80398fcb9674a79081a9906e2ccf0c804dd7cb15e22e362e606ee87186beab71",
    "control_msgs/msg/JointTolerance":
        "RIHS01_c254f9cece0f3b733017b6990fd46d1326e25242d6b8844398c97d9a88e7d648",
    "control_msgs/msg/JointComponentTolerance":
        "RIHS01_739ea7566931944d33830fa10f1bf5e7a7fbdc3172bce7a7eaac642bd6e3ffa4",
    "control_msgs/action/GripperCommand":
        "RIHS01_e17c0e644eccf14bea84a0a93e0977182872c2eb7873ca6694900059b46dbc84",
    "control_msgs/action/GripperCommand_Goal":
        "RIHS01_607d9f41eb241e1922e90f02125e87ae6bfb78f7f64a71dc92630263d01f8b6d",
    "control_msgs/action/GripperCommand_Result":
        "RIHS01_bf512d5aa6a0e4fe4d8be22b2ec4a1973c3d250fa1f65e47450322c25c45c0a0",
    "control_msgs/action/GripperCommand_Feedback":
        "RIHS01_8f7c520077bab528bb9161ee3b83c81eee1f8aecadb8922ce82c79d667a819c4",
    "control_msgs/action/GripperCommand_SendGoal":
        "RIHS01_6bf8cc4ce80cd499e7dd3258c03c50c3fa6672b469ff8355339ef1df77fcd212",
    "control_msgs/action/GripperCommand_SendGoal_Request":
        "RIHS01_1b869b7b4042272dc0f8ed65468c4e57c9e532ea5e53ce74fda0767eefbfa983",
    "control_msgs/action/GripperCommand_SendGoal_Response":
        "RIHS01_0c8dda5e9d39ab5e3162b66e79b292a4258659ddfcf8722d39463f718b6c59bc",
    "control_msgs/action/GripperCommand_SendGoal_Event":
        "RIHS01_5c80eac98bcde7d64faf4b94f77ef69f12e442870dc1eba26d25b4681ef9ac0a",
    "control_msgs/action/GripperCommand_GetResult":
        "RIHS01_7e60a7606063d4a2728d21badac099e68b734a196ac3ab42d1d4c668eb0bb3cd",
    "control_msgs/action/GripperCommand_GetResult_Request":
        "RIHS01_1a3308da3acbc62cd8a3c823de80ba9e5f9b6bb6f6056d1ad6b29f5f285f97ae",
    "control_msgs/action/GripperCommand_GetResult_Response":
        "RIHS01_32ed5e1b5906767a3e9914dca4c4aed22529918f6c2360e6fb382363d4df4b45",
    "control_msgs/action/GripperCommand_GetResult_Event":
        "RIHS01_c6a1f7afeb87bf8b3165bd7b03ec0173ffada35f083a583144ab7ac96edc5a04",
    "control_msgs/action/GripperCommand_FeedbackMessage":
        "RIHS01_392ff03fcd872f9dc2405cbeb2897fcf011ad9998458b6aa85c603b8a49e431d",
    "control_msgs/msg/GripperCommand":
        "RIHS01_57eb8f326c9889ca8bb34ead82cc94cc09bf6bc5c3b6c09546dca3a00b589890",
    "tf2_msgs/msg/TFMessage":
        "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    "tf2_msgs/msg/TF2Error":
        "RIHS01_db2485e7d6a0ec75bf087e058ee45df682acc3a621ca7780503d10aac141809a",
}


def installed_type_hashes() -> dict[str, str]:
    """Every type hash in the type descriptions (share/<pkg>/{msg,action}/*.json) that the
    rosidl generator installed next to the Python packages (<prefix>/lib/pythonX.Y/site-packages)."""
    import control_msgs
    import tf2_msgs

    hashes = {}
    for package in (control_msgs, tf2_msgs):
        prefix = Path(package.__file__).resolve().parents[4]
        share = prefix / "share" / package.__name__
        files = sorted(share.glob("*/*.json"))
        assert files, f"no type descriptions under {share}"
        for path in files:
            for entry in json.loads(path.read_text())["type_hashes"]:
                hashes[entry["type_name"]] = entry["hash_string"]
    return hashes


def test_type_hashes_are_those_of_ros_builds():
    hashes = installed_type_hashes()
    different = {name: (hashes.get(name), expected) for name, expected in ROS_TYPE_HASHES.items()
                 if hashes.get(name) != expected}
    assert not different, f"type hashes differ from ROS's (ours, ROS's): {different}"


def test_fields_follow_the_upstream_definitions():
    goal = FollowJointTrajectory.Goal.get_fields_and_field_types()
    assert goal == {
        "trajectory": "trajectory_msgs/JointTrajectory",
        "multi_dof_trajectory": "trajectory_msgs/MultiDOFJointTrajectory",
        "path_tolerance": "sequence<control_msgs/JointTolerance>",
        "component_path_tolerance": "sequence<control_msgs/JointComponentTolerance>",
        "goal_tolerance": "sequence<control_msgs/JointTolerance>",
        "component_goal_tolerance": "sequence<control_msgs/JointComponentTolerance>",
        "goal_time_tolerance": "builtin_interfaces/Duration",
    }
    assert FollowJointTrajectory.Result.get_fields_and_field_types() == {
        "error_code": "int32", "error_string": "string"}
    result = FollowJointTrajectory.Result
    assert (result.SUCCESSFUL, result.INVALID_GOAL, result.INVALID_JOINTS, result.OLD_HEADER_TIMESTAMP,
            result.PATH_TOLERANCE_VIOLATED, result.GOAL_TOLERANCE_VIOLATED) == (0, -1, -2, -3, -4, -5)
    assert list(FollowJointTrajectory.Feedback.get_fields_and_field_types()) == [
        "header", "joint_names", "desired", "actual", "error",
        "multi_dof_joint_names", "multi_dof_desired", "multi_dof_actual", "multi_dof_error"]
    assert JointTolerance.get_fields_and_field_types() == {
        "name": "string", "position": "double", "velocity": "double", "acceleration": "double"}
    assert JointComponentTolerance.get_fields_and_field_types() == {
        "joint_name": "string", "component": "uint16", "position": "double", "velocity": "double",
        "acceleration": "double"}
    assert (JointComponentTolerance.X_AXIS, JointComponentTolerance.ROTATION) == (1, 5)
    assert GripperCommandMsg.get_fields_and_field_types() == {"position": "double", "max_effort": "double"}
    assert GripperCommand.Goal.get_fields_and_field_types() == {"command": "control_msgs/GripperCommand"}
    assert GripperCommand.Result.get_fields_and_field_types() == {
        "position": "double", "effort": "double", "stalled": "boolean", "reached_goal": "boolean"}
    assert TFMessage.get_fields_and_field_types() == {"transforms": "sequence<geometry_msgs/TransformStamped>"}
    assert TF2Error.get_fields_and_field_types() == {"error": "uint8", "error_string": "string"}
    assert (TF2Error.NO_ERROR, TF2Error.TRANSFORM_ERROR) == (0, 6)


class Side:
    """The test's own node (the second process is the peer)."""

    def __init__(self, name: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin(self) -> None:
        self.executor.spin_once(timeout_sec=0.02)

    def wait(self, predicate, what: str, peer_log: Path, timeout_s: float = TIMEOUT_S) -> None:
        try:
            wait_until(predicate, timeout_s, spin=self.spin, what=what)
        except TimeoutError as error:
            raise AssertionError(f"{error}; peer log:\n{peer_log.read_text()}") from None

    def result_of(self, future, what: str, peer_log: Path):
        self.wait(future.done, what, peer_log)
        return future.result()

    def graph_hash(self, topic: str) -> tuple[str, str]:
        infos = self.node.get_publishers_info_by_topic(topic)
        assert infos, f"no publisher on {topic}"
        return infos[0].topic_type, str(infos[0].topic_type_hash)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def peer(ros_env, tmp_path):
    """Start interface_peer.py in MODE with this test's interpreter and isolated domain."""
    import subprocess

    processes = []

    def start(mode: str) -> Path:
        log = tmp_path / f"peer_{mode}.log"
        processes.append(subprocess.Popen([sys.executable, str(PEER), mode], env=ros_env,
                                          stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                          start_new_session=True))
        return log

    yield start
    for process in processes:
        assert stop(process) == 0, "the peer did not exit cleanly on SIGINT"


def arm_goal(joint_names: list[str]) -> FollowJointTrajectory.Goal:
    goal = FollowJointTrajectory.Goal()
    goal.trajectory.header.frame_id = "fr3_link0"
    goal.trajectory.joint_names = joint_names
    for k in range(3):
        goal.trajectory.points.append(JointTrajectoryPoint(
            positions=[0.1 * k + 0.01 * j for j in range(len(joint_names))],
            time_from_start=Duration(sec=k, nanosec=500_000_000)))
    goal.path_tolerance = [JointTolerance(name="fr3_joint1", position=0.05, velocity=0.5, acceleration=-1.0)]
    goal.goal_tolerance = [JointTolerance(name=name, position=0.01) for name in joint_names]
    goal.component_path_tolerance = [
        JointComponentTolerance(joint_name="base", component=JointComponentTolerance.ROTATION, position=0.2)]
    goal.goal_time_tolerance = Duration(sec=0, nanosec=250_000_000)
    return goal


def test_follow_joint_trajectory_and_gripper_across_processes(peer):
    log = peer("controllers")
    side = Side("interface_test_client")
    try:
        arm = ActionClient(side.node, FollowJointTrajectory, ARM_ACTION)
        side.wait(arm.server_is_ready, f"action server {ARM_ACTION}", log)

        feedback = []
        goal = arm_goal(ARM)
        handle = side.result_of(arm.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback)),
                                "the goal's acceptance", log)
        assert handle.accepted
        response = side.result_of(handle.get_result_async(), "the result", log)
        assert response.status == 4, f"status {response.status}, expected SUCCEEDED (4)"  # GoalStatus.STATUS_SUCCEEDED
        assert response.result.error_code == FollowJointTrajectory.Result.SUCCESSFUL
        echoed = json.loads(response.result.error_string)
        assert echoed == {
            "joint_names": ARM,
            "points": [[[0.1 * k + 0.01 * j for j in range(7)], k, 500_000_000] for k in range(3)],
            "path_tolerance": [["fr3_joint1", 0.05, 0.5, -1.0]],
            "goal_tolerance": [[name, 0.01, 0.0, 0.0] for name in ARM],
            "component_path_tolerance": [["base", JointComponentTolerance.ROTATION, 0.2]],
            "goal_time_tolerance": [0, 250_000_000],
            "multi_dof_joint_names": [],
        }
        # Feedback travels apart from the result: wait for the last point's. The peer waits until it
        # sees our feedback subscription before sending any; should one still be lost while the
        # other direction is matching, the rest must come in order.
        points = [list(p.positions) for p in goal.trajectory.points]
        side.wait(lambda: feedback and list(feedback[-1].desired.positions) == points[-1],
                  "the last point's feedback", log)
        desired = [list(f.desired.positions) for f in feedback]
        assert desired == points[len(points) - len(desired):], desired
        assert all(list(f.joint_names) == ARM and list(f.actual.positions) == list(f.desired.positions)
                   for f in feedback)
        assert side.graph_hash(f"{ARM_ACTION}/_action/feedback") == (
            "control_msgs/action/FollowJointTrajectory_FeedbackMessage",
            ROS_TYPE_HASHES["control_msgs/action/FollowJointTrajectory_FeedbackMessage"])

        # A goal without joints: aborted with INVALID_JOINTS, as joint_trajectory_controller does.
        handle = side.result_of(arm.send_goal_async(arm_goal([])), "the second goal's acceptance", log)
        response = side.result_of(handle.get_result_async(), "the second result", log)
        assert response.status == 6, f"status {response.status}, expected ABORTED (6)"
        assert response.result.error_code == FollowJointTrajectory.Result.INVALID_JOINTS

        gripper = ActionClient(side.node, GripperCommand, GRIPPER_ACTION)
        side.wait(gripper.server_is_ready, f"action server {GRIPPER_ACTION}", log)
        command = GripperCommand.Goal(command=GripperCommandMsg(position=0.04, max_effort=20.0))
        handle = side.result_of(gripper.send_goal_async(command), "the gripper goal's acceptance", log)
        response = side.result_of(handle.get_result_async(), "the gripper result", log)
        assert response.status == 4
        assert (response.result.position, response.result.effort, response.result.reached_goal) == (0.04, 20.0, True)
        arm.destroy()
        gripper.destroy()
    finally:
        side.close()


def test_tf_messages_across_processes(peer):
    log = peer("tf")
    side = Side("interface_test_tf_listener")
    try:
        heard = {"/tf": [], "/tf_static": []}
        side.node.create_subscription(TFMessage, "/tf", heard["/tf"].append, 100)
        side.wait(lambda: len(heard["/tf"]) >= 5, "5 messages on /tf", log)
        stamped = heard["/tf"][-1].transforms[0]
        assert (stamped.header.frame_id, stamped.child_frame_id) == ("fr3_link0", "fr3_hand_tcp")
        xs = [m.transforms[0].transform.translation.x for m in heard["/tf"]]
        assert xs == sorted(xs) and xs[-1] > 0.0

        # /tf_static was published once, before this subscription existed: latched, it still arrives.
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        side.node.create_subscription(TFMessage, "/tf_static", heard["/tf_static"].append, latched)
        side.wait(lambda: heard["/tf_static"], "the latched /tf_static message", log)
        static = heard["/tf_static"][0].transforms[0]
        assert (static.header.frame_id, static.child_frame_id, static.transform.translation.x) == (
            "fr3_link0", "camera_link", 0.5)
        assert side.graph_hash("/tf") == ("tf2_msgs/msg/TFMessage", ROS_TYPE_HASHES["tf2_msgs/msg/TFMessage"])
    finally:
        side.close()
