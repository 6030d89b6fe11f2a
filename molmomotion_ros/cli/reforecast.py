"""``molmomotion reforecast``: forecasts re-run offline on a recorded bag with another model, written as a bag beside
the recorded ones, with scores and an overlay video; and ``eval-forecast --bag`` (called from cli/training.py):
every backend scored on a sim recording's ground truth. torch and the models load inside the handlers only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .common import UsageError, check_writable, non_negative_int, positive_int, quiet_model_loading

BACKENDS = ("fm", "ar", "stationary", "constant-velocity", "molmomotion4b")
FRAME_HELP = ("which frames to forecast: recorded (the frame of every recorded forecast/trajectory, with the "
              "instruction then in force: the requests the forecaster served), instructions (the first frame after "
              "each instruction, the node's on_instruction rule: for bags without forecasts) or auto (recorded when "
              "the bag has forecasts; default)")


def pose7(text: str) -> np.ndarray:
    """``x,y,z,qx,qy,qz,qw`` → T_world_cam (4x4)."""
    from molmomotion_ros.geometry import quat_to_matrix

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 7 or not all(math.isfinite(v) for v in values) or np.linalg.norm(values[3:]) < 1e-6:
        raise argparse.ArgumentTypeError(f"expected x,y,z,qx,qy,qz,qw (metres, a non-zero quaternion), got {text!r}")
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(np.array(values[3:]) / np.linalg.norm(values[3:]))
    T[:3, 3] = values[:3]
    return T


def add_recording_arguments(parser: argparse.ArgumentParser, sampling: bool = True) -> None:
    """The options both commands read a recording with (``sampling``: also --samples and --no-progress, which
    eval-forecast has of its own)."""
    parser.add_argument("--frames", choices=("auto", "recorded", "instructions"), default="auto", help=FRAME_HELP)
    parser.add_argument("--namespace", default="", metavar="NS",
                        help="the namespace the recorded graph ran in (its topics are NS/camera/..., NS/instruction)")
    parser.add_argument("--world-frame", default="world", metavar="FRAME",
                        help="the world frame for TF extrinsics when the bag has no camera/pose (default: %(default)s)")
    parser.add_argument("--extrinsics", type=pose7, metavar="X,Y,Z,QX,QY,QZ,QW",
                        help="a fixed camera pose (optical frame in the world frame) for bags with neither "
                        "camera/pose nor TF")
    parser.add_argument("--horizon", type=positive_int, default=32, metavar="F",
                        help="forecast steps (default: %(default)s, the forecaster node's)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                        help="sampler and query-point seed (default: %(default)s, the node's); with the recording's "
                        "checkpoint and seed the recorded forecasts come out again")
    parser.add_argument("--fm-steps", type=positive_int, default=6, metavar="N",
                        help="Euler steps of the fm sampler (default: %(default)s, the node's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the networks run (default: %(default)s)")
    if sampling:
        parser.add_argument("--samples", type=positive_int, default=8, metavar="K",
                            help="hypotheses per fm forecast (default: %(default)s, the node's num_hypotheses)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def add_parser(commands) -> None:
    """Add ``reforecast`` to the ``molmomotion`` subcommands."""
    parser = commands.add_parser(
        "reforecast", help="re-run the forecaster offline on a recorded bag and write the new forecasts beside the "
        "recorded ones",
        description="Read a rosbag2 MCAP bag (from `molmomotion record`, `--record` or `ros2 bag record`), forecast "
        "every request in it with --model exactly as forecaster_node does (same frame reading, same noise per frame "
        "stamp), and write --out: a copy of the bag with the new forecasts on /reforecast/{trajectory,hypotheses,"
        "scores,markers}, reforecast.json (per request: the new forecast's scores against a sim recording's ground "
        "truth, the recorded forecast's, their largest difference) and an overlay video of the colour frames with "
        "the recorded (orange), new (cyan) and true (green) tracks.",
    )
    parser.add_argument("bag", type=Path, metavar="BAG", help="the recorded bag (folder or .mcap file)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the new bag folder (must not exist "
                        "or be empty)")
    parser.add_argument("--model", default="fm", metavar="BACKEND|PT",
                        help=f"a backend ({', '.join(BACKENDS)}) or an fm/ar checkpoint file (default: %(default)s)")
    parser.add_argument("--checkpoint", type=Path, metavar="PT",
                        help="fm/ar weights for --model fm|ar, or molmomotion4b's weights folder")
    parser.add_argument("--video", type=Path, metavar="MP4",
                        help="the overlay video (default: DIR/overlay.mp4)")
    parser.add_argument("--no-video", action="store_true", help="write no overlay video")
    parser.add_argument("--no-instruction-parser", action="store_true",
                        help="give the model the raw instruction (the node's instruction_parser:=false)")
    parser.add_argument("--output-namespace", default="/reforecast", metavar="NS",
                        help="where the new forecasts go in the new bag (default: %(default)s)")
    parser.add_argument("--compression", choices=("zstd", "none"), default="zstd",
                        help="chunk compression of the new bag (default: %(default)s)")
    add_recording_arguments(parser)
    parser.set_defaults(handler=_reforecast)


def _model(args: argparse.Namespace) -> tuple[str, Path | None]:
    """(backend, checkpoint) from --model/--checkpoint."""
    model, checkpoint = args.model, args.checkpoint
    if model in BACKENDS:
        if checkpoint is not None and model not in ("fm", "ar", "molmomotion4b"):
            raise UsageError(f"--checkpoint applies to fm, ar and molmomotion4b, not {model!r}")
        return model, checkpoint
    path = Path(model)
    if path.suffix != ".pt":
        raise UsageError(f"--model {model!r}: choose a backend ({', '.join(BACKENDS)}) or give a .pt checkpoint")
    if not path.is_file():
        raise UsageError(f"--model: no checkpoint file {str(path)!r}")
    import torch

    try:
        head = torch.load(path, map_location="cpu", weights_only=False)["config"]["head"]
    except Exception as err:  # not a torch file, or not ours
        raise UsageError(f"--model {str(path)!r} is not a molmomotion_ros forecaster checkpoint: {err}") from None
    if head not in ("fm", "ar"):
        raise UsageError(f"--model {str(path)!r} is a {head!r} checkpoint; reforecast needs an fm or ar one")
    return head, path


def _pipeline(backend: str, checkpoint: Path | None, args: argparse.Namespace):
    from molmomotion_ros.forecasting.pipeline import ForecastPipeline

    return ForecastPipeline(backend, device=args.device, num_samples=args.samples, horizon=args.horizon,
                            seed=args.seed, checkpoint=checkpoint, fm_steps=args.fm_steps)


def bag_paths(path: Path) -> list[Path]:
    """The bags at ``path``: itself (a bag folder or an .mcap file), or the bag folders inside it (one per episode,
    as sim_eval's --record writes them), in name order."""
    if not path.exists():
        raise UsageError(f"no bag at {str(path)!r}")
    if path.is_file() or (path / "metadata.yaml").is_file() or any(path.glob("*.mcap")):
        return [path]
    inner = sorted(p for p in path.iterdir() if p.is_dir() and ((p / "metadata.yaml").is_file() or
                                                                   any(p.glob("*.mcap"))))
    if not inner:
        raise UsageError(f"{str(path)!r} is neither a bag nor a folder of bags")
    return inner


def _read(args: argparse.Namespace, bag: Path):
    from molmomotion_ros.reforecast import RecordingTopics, read_requests

    return read_requests(bag, RecordingTopics.under(args.namespace), frames=args.frames,
                         world_frame=args.world_frame, T_world_cam=args.extrinsics)


def read_recordings(args: argparse.Namespace, bags: list[Path]) -> list:
    """The recordings of ``bags``; in a folder of bags, one without requests (the start-up before the first
    episode, say) is left out with a note, and only none at all is an error."""
    from molmomotion_ros.reforecast import ReforecastError

    recordings, skipped = [], []
    for bag in bags:
        try:
            recordings.append(_read(args, bag))
        except ReforecastError as err:
            if len(bags) == 1:
                raise
            skipped.append(f"{bag.name}: {err}")
    for note in skipped:
        print(f"note: skipped {note}", file=sys.stderr)
    if not recordings:
        raise UsageError(f"no bag in {str(args.bag)!r} holds a forecast request ({len(skipped)} skipped)")
    return recordings


def _instruction_reader(enabled: bool):
    if not enabled:
        return None
    from molmomotion_ros.language import default_fallback, instruction_for_model

    reader = default_fallback()  # the node's reader for words the lexicon lacks
    return lambda text: instruction_for_model(text, fallback=reader)


def _reforecast(args: argparse.Namespace) -> int:
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"--out {str(args.out)!r} exists and is not an empty folder")
    bags = bag_paths(args.bag)
    if args.video is not None and len(bags) > 1:
        raise UsageError("--video names one file: with a folder of bags, each gets DIR/<bag>/overlay.mp4")
    quiet_model_loading()
    backend, checkpoint = _model(args)
    from molmomotion_ros import reforecast

    recordings = read_recordings(args, bags)  # every bad bag is found before the model loads
    pipeline = _pipeline(backend, checkpoint, args)
    label = backend if checkpoint is None else f"{backend} ({checkpoint.name})"
    reader = _instruction_reader(not args.no_instruction_parser)
    topics = reforecast.RecordingTopics.under(args.namespace)
    start = time.perf_counter()
    every, per_bag = [], []
    for recording in recordings:
        bag = recording.path
        out = args.out if len(bags) == 1 else args.out / bag.name
        for note in recording.notes:
            print(f"note: {bag.name}: {note}", file=sys.stderr)
        outcomes = reforecast.forecast_requests(recording, pipeline, reader, progress=not args.no_progress)
        try:
            written = reforecast.write_bag(bag, out, outcomes, frame_id=args.world_frame,
                                           namespace=args.output_namespace, compression=args.compression)
        except reforecast.ReforecastError as err:
            raise UsageError(str(err)) from None
        video = None if args.no_video else (args.video or out / "overlay.mp4")
        frames = 0
        if video is not None:
            check_writable(video.parent, what="video folder")
            frames = reforecast.render_video(bag, video, outcomes, topics, new_label=label,
                                             progress=not args.no_progress)
        every.extend(outcomes)
        per_bag.append({"bag": str(bag), "out": str(out), "frames": recording.mode, "notes": recording.notes,
                        "messages": written.message_count, "video": str(video) if frames else None,
                        "video_frames": frames, "summary": reforecast.summarize_outcomes(outcomes),
                        "requests": reforecast.outcome_rows(outcomes)})
    summary = reforecast.summarize_outcomes(every)
    report = {"bag": str(args.bag), "out": str(args.out), "model": label, "backend": backend,
              "checkpoint": None if checkpoint is None else str(checkpoint),
              "model_id": pipeline.forecaster.backend.model_id, "seed": args.seed, "samples": args.samples,
              "horizon": args.horizon, "fm_steps": args.fm_steps,
              "instruction_parser": not args.no_instruction_parser, "summary": summary, "bags": per_bag,
              "wall_time_s": round(time.perf_counter() - start, 2)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reforecast.json").write_text(json.dumps(report, indent=1, default=_jsonable))
    print(reforecast.format_outcomes(every, summary, label))
    videos = [b["video"] for b in per_bag if b["video"]]
    print(f"{len(recordings)} bag(s) re-forecast into {args.out}; report: {args.out / 'reforecast.json'}"
          + (f"; video: {videos[0]}" if len(videos) == 1 else f"; {len(videos)} videos" if videos else ""))
    return 0


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def eval_forecast_bag(args: argparse.Namespace) -> int:
    """``eval-forecast --bag``: every backend of --models on the recording's requests, scored on its ground truth
    with eval-forecast's metrics; K=1 is each forecast's best hypothesis (what the node publishes)."""
    out = args.out or Path("results") / f"forecast-bag-{args.bag.resolve().name}"
    check_writable(out, what="output folder")
    quiet_model_loading()
    from molmomotion_ros import reforecast
    from molmomotion_ros.forecasting.evaluation import format_table

    recordings = read_recordings(args, bag_paths(args.bag))
    if not any(r.ground_truth is not None for recording in recordings for r in recording.requests):
        raise UsageError(f"the bag {str(args.bag)!r} has no sim/ground_truth before any request: only sim "
                         "recordings (sim_node publish_ground_truth, `--record`) can be scored")
    # one recording of every bag's requests, each request still carrying its own episode and ground truth
    recording = reforecast.Recording(args.bag, [r for rec in recordings for r in rec.requests],
                                     "+".join(sorted({rec.mode for rec in recordings})),
                                     [f"{rec.path.name}: {note}" for rec in recordings for note in rec.notes])
    reader = _instruction_reader(args.instruction_parser)
    summary, per_family, model_ids, refusals = {}, {}, {}, []
    for name in args.models:
        pipeline = _pipeline(name, None, args)
        model_ids[name] = pipeline.forecaster.backend.model_id
        outcomes = reforecast.forecast_requests(recording, pipeline, reader, progress=not args.no_progress,
                                                label=f"eval-forecast {name}")
        s = reforecast.summarize_outcomes(outcomes)
        summary[name] = {"k1": s["k1"], f"k{args.samples}": s["kK"], "latency_ms_p50": s["latency_ms_p50"],
                         "requests": s["requests"], "scored": s["scored"], "refused": s["refused"]}
        families = sorted({(o.request.episode or {}).get("family", "?") for o in outcomes})
        per_family[name] = {f: reforecast.summarize_outcomes(
            o for o in outcomes if (o.request.episode or {}).get("family", "?") == f)["k1"] for f in families}
        if not refusals:
            refusals = [{"stamp_s": o.request.stamp_ns / 1e9, "instruction": o.request.instruction,
                         "reason": o.refused} for o in outcomes if o.refused]
    report = {"bag": str(args.bag), "bags": len(recordings), "episodes": len(recording.requests),
              "num_samples": args.samples, "horizon": args.horizon, "stride": 2, "frames": recording.mode,
              "summary": summary, "per_family_k1": per_family, "grounding_accuracy": None, "model_ids": model_ids,
              "phrasings": {"name": "recorded", "applied": "as recorded in the bag"},
              "instruction_parser": bool(args.instruction_parser), "refusals": refusals, "notes": recording.notes}
    out.mkdir(parents=True, exist_ok=True)
    (out / "forecast-eval.json").write_text(json.dumps(report, indent=1, default=_jsonable))
    print(format_table(report))
    print(f"results: {out}")
    return 0

