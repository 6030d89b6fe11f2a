"""Re-forecasting a recording offline (molmomotion_ros.reforecast, `molmomotion reforecast`, `eval-forecast --bag`).

The recording is made here the way the sim graph makes one, with real parts: a PyBullet scene, the shipped FM
model through the forecaster's pipeline (noise keyed on the frame's stamp, as forecaster_node does), the
oracle's ground truth, and the package's bag writer; its messages are serialized with rclpy, as the recorder
stores what it receives.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from molmomotion_ros import conversions  # noqa: E402
from molmomotion_ros.bags import BagReader, BagWriter, DefinitionSource, QosProfile, TopicMetadata  # noqa: E402
from molmomotion_ros.reforecast import (  # noqa: E402
    RecordingTopics,
    ReforecastError,
    forecast_requests,
    ground_truth_tracks,
    read_requests,
    render_video,
    summarize_outcomes,
    write_bag,
)

NS = 1_000_000_000
FAMILIES = ("push", "stack")
SEEDS = {"push": 110003, "stack": 110001}
FRAME_PERIOD_NS = NS // 15


def _time(ns: int) -> Time:
    return Time(sec=ns // NS, nanosec=ns % NS)


@pytest.fixture(scope="module")
def pipeline():
    from molmomotion_ros.forecasting.pipeline import ForecastPipeline

    return ForecastPipeline("fm", device="cpu", num_samples=4, horizon=16, seed=3)


@pytest.fixture(scope="module")
def recording(tmp_path_factory, pipeline):
    """Two episodes (push, stack): per episode the reset's ground truth, camera pose and instruction, five frames,
    and the FM forecast of the second frame, as the sim_eval graph records them."""
    from sim.ground_truth import GroundTruthOracle
    from sim.suites import load_suite
    from sim.tasks import TASKS
    from sim.world import World

    suite = load_suite("main")
    options = {f.family: f.options for f in suite.families}
    folder = tmp_path_factory.mktemp("rec") / "bag"
    definitions = DefinitionSource()
    sensor = QosProfile("keep_last", 5, "best_effort", "volatile")
    latched = QosProfile("keep_last", 1, "reliable", "transient_local")
    types = {"/camera/color/image_raw": ("sensor_msgs/msg/Image", sensor),
             "/camera/depth/image_raw": ("sensor_msgs/msg/Image", sensor),
             "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", sensor),
             "/camera/pose": ("geometry_msgs/msg/PoseStamped", latched),
             "/instruction": ("std_msgs/msg/String", latched), "/sim/episode": ("std_msgs/msg/String", latched),
             "/sim/ground_truth": ("trajectory_msgs/msg/MultiDOFJointTrajectory", latched),
             "/forecast/trajectory": ("trajectory_msgs/msg/MultiDOFJointTrajectory", latched),
             "/forecast/hypotheses": ("trajectory_msgs/msg/MultiDOFJointTrajectory", latched)}
    writer = BagWriter(folder)
    for name, (type_name, qos) in types.items():
        writer.add_topic(TopicMetadata(name, type_name, [qos]), definitions.get(type_name))
    world, oracle = World(), GroundTruthOracle()
    expected = []
    t = 5 * NS
    try:
        for family in FAMILIES:
            seed = SEEDS[family]
            task = TASKS[family](world, options[family])
            task.reset(seed)
            truth = oracle.trace(family, seed, options[family])
            stamp = _time(t)

            def put(topic: str, msg, log_ns: int) -> None:
                writer.write(topic, serialize_message(msg), log_ns)

            put("/sim/ground_truth", conversions.ground_truth_to_msg(truth.times_s, truth.target_poses, stamp,
                                                                      "world"), t)
            put("/camera/pose", conversions.pose_stamped(world.camera.T_world_cam, stamp, "world"), t)
            put("/instruction", String(data=task.instruction), t + 1)
            put("/sim/episode", String(data=json.dumps({"suite": "main", "family": family, "seed": seed})), t + 2)
            obs = world.render()
            for i in range(5):
                frame_ns = t + (i + 1) * FRAME_PERIOD_NS
                s = _time(frame_ns)
                cam = obs.camera
                put("/camera/color/camera_info", conversions.camera_info_msg(cam, s, cam.frame_id), frame_ns)
                put("/camera/color/image_raw", conversions.rgb_to_msg(obs.rgb, s, cam.frame_id), frame_ns)
                put("/camera/depth/image_raw", conversions.depth_to_msg(obs.depth_m, s, cam.frame_id), frame_ns)
                if i == 1:  # the forecaster node's work on this frame, published 0.3 s later
                    rgb, depth_m, camera = conversions.frame_inputs(
                        conversions.rgb_to_msg(obs.rgb, s, cam.frame_id),
                        conversions.depth_to_msg(obs.depth_m, s, cam.frame_id),
                        conversions.camera_info_msg(cam, s, cam.frame_id), cam.T_world_cam)
                    result = pipeline.run(rgb, depth_m, camera, task.instruction, noise_key=frame_ns)
                    put("/forecast/trajectory", conversions.forecast_to_trajectory(
                        result.forecast, result.points_world_t0_m, s, "world"), frame_ns + 3 * NS // 10)
                    put("/forecast/hypotheses", conversions.forecast_to_hypotheses(
                        result.forecast, result.points_world_t0_m, s, "world"), frame_ns + 3 * NS // 10)
                    expected.append({"family": family, "stamp_ns": frame_ns, "instruction": task.instruction,
                                     "result": result, "truth": truth, "T_world_cam": cam.T_world_cam})
            t += 20 * NS
    finally:
        writer.close()
        world.close()
        oracle.close()
    return folder, expected


def test_requests_found_as_the_node_served_them(recording):
    folder, expected = recording
    rec = read_requests(folder)
    assert rec.mode == "recorded"
    assert [r.stamp_ns for r in rec.requests] == [e["stamp_ns"] for e in expected]
    assert [r.instruction for r in rec.requests] == [e["instruction"] for e in expected]
    assert [r.episode["family"] for r in rec.requests] == list(FAMILIES)
    for r, e in zip(rec.requests, expected, strict=True):
        np.testing.assert_allclose(r.T_world_cam, e["T_world_cam"], atol=1e-6)
        np.testing.assert_allclose(r.recorded.hypotheses_m, e["result"].forecast.points_world_m, atol=1e-6)


def test_instruction_mode_takes_the_first_frame_after_each_instruction(recording):
    folder, expected = recording
    rec = read_requests(folder, frames="instructions")
    # the first frame after each instruction is frame 0 of its episode, one period after the reset
    assert [r.stamp_ns for r in rec.requests] == [e["stamp_ns"] - FRAME_PERIOD_NS for e in expected]
    assert all(r.recorded is None for r in rec.requests)


def test_same_checkpoint_and_seed_remake_the_recorded_forecasts(recording, pipeline):
    folder, expected = recording
    outcomes = forecast_requests(read_requests(folder), pipeline, progress=False)
    summary = summarize_outcomes(outcomes)
    assert summary["compared_to_recorded"] == len(expected)
    assert summary["max_diff_to_recorded_m"] <= 1e-5
    # the same scores as scoring the recorded forecast: same forecasts, same ground truth
    for o in outcomes:
        assert o.metrics["kK"]["ade_best"] == pytest.approx(o.recorded_metrics["kK"]["ade_best"], abs=1e-6)


def test_another_seed_gives_other_forecasts(recording):
    from molmomotion_ros.forecasting.pipeline import ForecastPipeline

    folder, _ = recording
    other = ForecastPipeline("fm", device="cpu", num_samples=4, horizon=16, seed=4)
    summary = summarize_outcomes(forecast_requests(read_requests(folder), other, progress=False))
    assert summary["max_diff_to_recorded_m"] > 1e-3


def test_ground_truth_tracks_follow_the_oracle(recording):
    """The score's ground truth is the dataset's: a point on the target moves rigidly with the target's trace."""
    _, expected = recording
    e = expected[0]  # push: the target slides
    truth = e["truth"]
    times = np.arange(1, 17) * 2 / 15
    start = e["result"].points_world_t0_m.astype(float)
    tracks = ground_truth_tracks(start, times, truth.times_s, truth.target_poses)
    assert tracks.shape == (len(start), 16, 3)
    centre_shift = truth.target_poses[min(32, len(truth.target_poses) - 1), :3] - truth.target_poses[0, :3]
    np.testing.assert_allclose(tracks[:, -1].mean(0) - start.mean(0), centre_shift, atol=0.02)
    assert np.linalg.norm(tracks[:, -1] - start, axis=1).min() > 0.03  # it was pushed, not left in place


def test_new_bag_holds_the_recording_and_the_new_forecasts(recording, pipeline, tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    folder, expected = recording
    outcomes = forecast_requests(read_requests(folder), pipeline, progress=False)
    write_bag(folder, tmp_path / "out", outcomes)
    with BagReader(tmp_path / "out") as out, BagReader(folder) as source:
        for name, topic in source.topics.items():
            assert out.topics[name].message_count == topic.message_count
        assert out.topics["/reforecast/trajectory"].message_count == len(expected)
    files = sorted((tmp_path / "out").glob("*.mcap"))
    stamps = []
    with open(files[0], "rb") as stream:
        for _, _, _, msg in make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages(
                topics=["/reforecast/trajectory"]):
            stamps.append(msg.header.stamp.sec * NS + msg.header.stamp.nanosec)
            assert msg.header.frame_id == "world" and len(msg.joint_names) == 8
    assert stamps == [e["stamp_ns"] for e in expected]
    with pytest.raises(ReforecastError, match="already has /reforecast/trajectory"):
        write_bag(tmp_path / "out", tmp_path / "again", outcomes)


def test_overlay_video_has_every_colour_frame(recording, pipeline, tmp_path):
    import av

    folder, _ = recording
    outcomes = forecast_requests(read_requests(folder), pipeline, progress=False)
    path = tmp_path / "overlay.mp4"
    written = render_video(folder, path, outcomes, progress=False)
    assert written == 10
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 10
    # the first frame has no forecast yet, the last shows the new one (cyan) drawn over the scene
    cyan = np.array([0, 200, 255])

    def cyan_pixels(img: np.ndarray) -> int:
        return int((np.abs(img.astype(int) - cyan).sum(-1) < 60).sum())

    assert cyan_pixels(frames[0]) < cyan_pixels(frames[-1])


def test_bad_bags_end_with_one_line(recording, tmp_path):
    folder, _ = recording
    with pytest.raises(ReforecastError, match="has no /cell/camera/color/image_raw.*--namespace"):
        read_requests(folder, topics=RecordingTopics.under("cell"))
    (tmp_path / "not.mcap").write_bytes(b"hello")
    from molmomotion_ros.bags import BagReadError

    with pytest.raises(BagReadError):
        read_requests(tmp_path / "not.mcap")


def test_cli_reforecast_and_eval_forecast_bag_agree(recording, tmp_path):
    folder, expected = recording
    common = ["--samples", "4", "--horizon", "16", "--seed", "3", "--device", "cpu", "--no-progress"]
    run = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "reforecast", str(folder), "--model", "fm",
                          "--out", str(tmp_path / "new"), "--video", str(tmp_path / "v.mp4"), *common],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "largest difference to the recorded forecasts" in run.stdout
    report = json.loads((tmp_path / "new" / "reforecast.json").read_text())
    assert report["summary"]["max_diff_to_recorded_m"] <= 1e-5
    run = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "eval-forecast", "--bag", str(folder),
                          "--models", "fm,stationary", "--out", str(tmp_path / "eval"), "--instruction-parser",
                          *common],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    evaluated = json.loads((tmp_path / "eval" / "forecast-eval.json").read_text())
    fm = evaluated["summary"]["fm"]
    assert fm["k1"]["ade_best"] == pytest.approx(report["summary"]["k1"]["ade_best"], abs=1e-6)
    assert fm["k4"]["fde_best"] == pytest.approx(report["summary"]["kK"]["fde_best"], abs=1e-6)
    assert evaluated["summary"]["stationary"]["k1"]["ade_best"] > fm["k1"]["ade_best"]  # the motion matters
    bad = subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", "reforecast", str(tmp_path / "missing"),
                          "--model", "fm", "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "missing" in bad.stderr
