"""``molmomotion forecast``: the 3D trajectories of query points on one RGB-D frame, written as JSON and an overlay.

Also holds what only this command needs: the ``--points`` type, the image readers and the JSON layout.
torch and the models load inside the handler only, after the cheap input checks.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from .common import (
    UsageError,
    check_writable,
    non_negative_int,
    positive_int,
    quiet_model_loading,
)

DEPTH_PNG_MODES = ("I;16", "I;16B", "I;16L", "I")  # 16-bit (or 32-bit integer) millimetre PNGs


def pixel_list(text: str) -> list[tuple[float, float]]:
    """``"u,v;u,v;..."`` → [(u, v), ...] pixels."""
    points = []
    for item in text.split(";"):
        if not item.strip():
            continue
        parts = item.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            u, v = float(parts[0]), float(parts[1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected pixels as 'u,v;u,v;...', got {item.strip()!r}") from None
        if not (math.isfinite(u) and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"pixel coordinates must be finite, got {item.strip()!r}")
        points.append((u, v))
    if not points:
        raise argparse.ArgumentTypeError("expected at least one pixel as 'u,v'")
    return points


def add_parser(commands) -> None:
    """Add ``forecast`` to the ``molmomotion`` subcommands."""
    forecast = commands.add_parser(
        "forecast", help="forecast the 3D trajectories of query points on one RGB-D frame",
        description="Load an RGB image, a depth image and a camera config, choose query points on the "
        "instruction's target (or take --points), forecast their trajectories, and write a JSON and an overlay PNG.",
    )
    forecast.add_argument("--rgb", type=Path, required=True, metavar="IMAGE", help="colour image (PNG/JPEG, 8-bit)")
    forecast.add_argument("--depth", type=Path, required=True, metavar="DEPTH",
                          help="depth image: a 16-bit PNG of millimetres (0 = no return) or a .npy of float metres "
                          "(NaN or <= 0 = no return), the size of --rgb")
    forecast.add_argument("--camera", type=Path, metavar="YAML",
                          help="camera config (intrinsics, image size, pose) in the layout of config/camera.yaml "
                          "(default: the package's config/camera.yaml)")
    forecast.add_argument("--instruction", required=True, metavar="TEXT",
                          help='what should happen, e.g. "put the red block in the blue bowl"')
    forecast.add_argument("--points", type=pixel_list, metavar="U,V;U,V",
                          help="query pixels (u right, v down, origin at the top-left pixel centre); "
                          "default: chosen on the instruction's target by --grounding")
    forecast.add_argument("--model", default="fm", metavar="BACKEND",
                          help="forecaster backend: fm, ar, stationary, constant-velocity or molmomotion4b "
                          "(default: %(default)s)")
    forecast.add_argument("--checkpoint", type=Path, metavar="PT",
                          help="fm/ar weights (default: the shipped molmomotion_ros/checkpoints/<model>.pt), or "
                          "molmomotion4b's weights folder")
    forecast.add_argument("--samples", type=positive_int, default=8, metavar="K",
                          help="hypotheses to forecast (default: %(default)s)")
    forecast.add_argument("--horizon", type=positive_int, default=32, metavar="F",
                          help="future steps to forecast (default: %(default)s)")
    forecast.add_argument("--grounding", choices=("encoder", "open3d"), default="encoder",
                          help="how query points are chosen without --points: region growing on the base "
                          "encoder's heat-map, or plane removal + clustering scored by it (default: %(default)s)")
    forecast.add_argument("--grounding-checkpoint", type=Path, metavar="PT",
                          help="base checkpoint for grounding (default: the shipped molmomotion_ros/checkpoints/"
                          "base.pt)")
    forecast.add_argument("--num-points", type=positive_int, default=8, metavar="P",
                          help="query points to choose without --points (default: %(default)s)")
    forecast.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                          help="seed of the point sampling and of the fm/ar sampler (default: %(default)s)")
    forecast.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="where the networks run (default: %(default)s: cuda when available)")
    forecast.add_argument("--out", type=Path, default=Path("results") / "forecast", metavar="PATH",
                          help="output path without suffix: writes PATH.json and PATH.png (default: %(default)s)")
    forecast.set_defaults(handler=_forecast)


def _forecast(args: argparse.Namespace) -> int:
    from molmomotion_ros.camera import PinholeCamera
    from molmomotion_ros.paths import config_path

    instruction = " ".join(args.instruction.split())
    if not instruction:
        raise UsageError("--instruction is empty")
    camera = PinholeCamera.from_yaml(args.camera or config_path("camera.yaml"))
    rgb = _read_rgb(args.rgb)
    depth_m = _read_depth(args.depth)
    h, w = rgb.shape[:2]
    if (w, h) != (camera.width, camera.height):
        raise UsageError(f"--rgb is {w}x{h} but the camera config says {camera.width}x{camera.height}")
    if depth_m.shape != (h, w):
        raise UsageError(f"--depth is {depth_m.shape[1]}x{depth_m.shape[0]} but --rgb is {w}x{h}")
    if args.points is not None:
        for u, v in args.points:
            if not (-0.5 <= u <= w - 0.5 and -0.5 <= v <= h - 0.5):
                raise UsageError(f"--points: pixel ({u:g}, {v:g}) lies outside the {w}x{h} image")
    out = args.out.with_suffix("") if args.out.suffix in (".json", ".png") else args.out
    if out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a path without suffix, e.g. {str(out / 'forecast')!r}")

    quiet_model_loading()
    # The forecaster node's own pipeline, so this command forecasts exactly what the node would publish.
    from molmomotion_ros.forecasting.pipeline import NEURAL_BACKENDS, ForecastPipeline
    from molmomotion_ros.forecasting.visualize import save_overlay

    if args.checkpoint is not None and args.model not in (*NEURAL_BACKENDS, "molmomotion4b"):
        raise UsageError(f"--checkpoint applies to the {', '.join(NEURAL_BACKENDS)} and molmomotion4b models, "
                         f"not {args.model!r}")
    check_writable(out.parent, what="output folder")

    start = time.perf_counter()
    grounding = _load_grounding_model(args) if args.points is None else None
    # grounding_encoder "base": query points come from the base checkpoint (--grounding-checkpoint), as documented.
    pipeline = ForecastPipeline(backend=args.model, device=args.device, horizon=args.horizon,
                                grounding=args.grounding, num_points=args.num_points, seed=args.seed,
                                checkpoint=args.checkpoint, grounding_encoder="base", grounding_model=grounding)
    # The node publishes one hypothesis for ar and the baselines; this command forecasts --samples for every backend.
    pipeline.num_samples = args.samples
    result = pipeline.run(rgb, depth_m, camera, instruction, points_2d=args.points)
    wall_time_s = time.perf_counter() - start

    forecast, points_2d = result.forecast, result.points_2d
    if result.query is None:
        query = {"source": "user", "score": None}
        points_cam = camera.world_to_cam(result.points_world_t0_m)
    else:
        query = {"source": result.query.method, "score": round(result.query.score, 6)}
        points_cam = result.query.points_cam_m
    document = {
        "instruction": instruction,
        "backend": forecast.backend,
        "model_id": forecast.model_id,
        "num_samples": forecast.num_samples,
        "horizon": forecast.horizon,
        "timestamps_s": _rounded(forecast.timestamps_s),
        "scores": _rounded(forecast.scores),
        "points_cam_m": _rounded(forecast.points_cam_m),  # (K, P, F, 3), best hypothesis first
        "points_world_m": _rounded(forecast.points_world_m),
        "query_points": {**query, "seed": args.seed, "points_2d": _rounded(points_2d),
                         "points_cam_m": _rounded(points_cam)},
        "camera": camera.to_dict(),
        "inputs": {"rgb": str(args.rgb), "depth": str(args.depth), "camera": str(args.camera or "default")},
        "meta": forecast.meta,
        "wall_time_s": round(wall_time_s, 3),
    }
    json_path, png_path = out.with_name(out.name + ".json"), out.with_name(out.name + ".png")
    json_path.write_text(_json_one_key_per_line(document))
    save_overlay(png_path, rgb, camera.K, forecast.points_cam_m, None, points_2d,
                 f"{forecast.backend}: {instruction}")
    k, p, f = forecast.points_cam_m.shape[:3]
    print(f"{forecast.backend}: {k} hypotheses x {p} points x {f} steps ({forecast.timestamps_s[-1]:.2f} s ahead), "
          f"query points from {query['source']}, {wall_time_s:.2f} s")
    print(f"forecast: {json_path}")
    print(f"overlay: {png_path}")
    return 0


def _load_grounding_model(args: argparse.Namespace):
    """The base encoder that chooses the query points; a missing shipped checkpoint is a usage error with a hint."""
    from molmomotion_ros.forecasting.checkpoint import CheckpointError
    from molmomotion_ros.forecasting.predictor import GroundingModel

    try:
        return GroundingModel(args.grounding_checkpoint, device=args.device)
    except CheckpointError as err:
        if args.grounding_checkpoint is not None:
            raise
        raise UsageError(f"{err} (choosing query points needs the base checkpoint: give --points or "
                         "--grounding-checkpoint)") from None


def _read_rgb(path: Path):
    import numpy as np

    image = _open_image(path, "--rgb")
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        raise UsageError(f"--rgb {str(path)!r} must be an 8-bit colour image, got mode {image.mode}")
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)


def _read_depth(path: Path):
    """float32 metres as stored; the pipeline turns the no-returns (0, NaN, <= 0) into NaN (grounding.clean_depth)."""
    import numpy as np

    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise UsageError(f"--depth: no such file {str(path)!r}")
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UsageError(f"--depth {str(path)!r} is not a readable .npy array: {err}") from None
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise UsageError(f"--depth {str(path)!r} must be a 2-D float array of metres, got {depth.shape} "
                             f"{depth.dtype}")
        return depth.astype(np.float32)
    image = _open_image(path, "--depth")
    if image.mode not in DEPTH_PNG_MODES:
        raise UsageError(f"--depth {str(path)!r} must be a 16-bit PNG of millimetres, got mode {image.mode}")
    return np.array(image, dtype=np.float32) / 1000.0


def _open_image(path: Path, flag: str):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UsageError(f"{flag}: no such file {str(path)!r}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise UsageError(f"{flag} {str(path)!r} is not a readable image: {err}") from None
    return image


def _rounded(array, decimals: int = 6) -> list:
    import numpy as np

    return np.round(np.asarray(array, dtype=float), decimals).tolist()


def _json_one_key_per_line(document: dict) -> str:
    """JSON with one top-level key per line and compact values (the arrays stay one line each)."""

    def default(value):
        if hasattr(value, "tolist"):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    lines = [f" {json.dumps(key)}: {json.dumps(value, default=default)}" for key, value in document.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"
