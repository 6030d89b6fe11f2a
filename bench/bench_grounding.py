"""Which query-point selection lands on the instruction's target more often: ``encoder`` or ``open3d``?

For every episode of a generated dataset (``molmomotion generate-data``), both methods of
``molmomotion_ros.forecasting.grounding.select_query_points`` choose 8 points from the t0 frame and
the instruction; a point is a hit when the rendered segmentation there is the target's body id.
Reports per method and per family the fraction of episodes with at least 6 of 8 points on the
target, the mean number of hits, the fraction of episodes whose heat-map argmax lies on the target,
and the milliseconds per call (heat-map model included, warm, torch on ``--threads`` threads; the
instruction's text embedding is computed before the timing, as the encoder caches it per instruction).

Usage::

    .venv/bin/python bench/bench_grounding.py                          # data/test, shipped base.pt
    .venv/bin/python bench/bench_grounding.py --data data/validation --episodes 25
    .venv/bin/python bench/bench_grounding.py --oracle-heatmap         # ground-truth heat-maps: the region step alone

Writes ``results/bench-grounding.json`` (summary, per family, per episode, checkpoint provenance).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HIT_POINTS = 6  # of 8: an episode counts as grounded when at least this many points are on the target


class OracleHeatmaps:
    """The training target of the grounding head (the target mask on the feature grid), upsampled like the model's."""

    def __init__(self) -> None:
        self.target_mask: np.ndarray | None = None

    def heatmaps(self, rgb, depth_m, K, instruction) -> np.ndarray:
        import torch

        from molmomotion_ros.forecasting.models import EncoderConfig
        from molmomotion_ros.forecasting.preprocess import grounding_targets

        enc = EncoderConfig()
        h, w = depth_m.shape
        grid = (enc.input_width // 2, enc.input_height // 2)  # the grounding head's feature map
        small = torch.from_numpy(grounding_targets(self.target_mask, None, grid))[None]
        up = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
        return (up / up.flatten(1).sum(-1).clamp_min(1e-12)[:, None, None]).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/test"), help="dataset folder (default: data/test)")
    parser.add_argument("--episodes", type=int, help="episodes per family (default: all)")
    parser.add_argument("--checkpoint", type=Path, help="base checkpoint (default: the shipped base.pt)")
    parser.add_argument("--methods", default="encoder,open3d", help="comma-separated methods (default: both)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--oracle-heatmap", action="store_true",
                        help="use the ground-truth target heat-map instead of the model (an upper bound)")
    parser.add_argument("--out", type=Path, default=Path("results/bench-grounding.json"),
                        help="benchmark JSON (default: results/bench-grounding.json)")
    args = parser.parse_args(argv)

    import torch

    from molmomotion_ros.forecasting.grounding import GroundingError, select_query_points
    from molmomotion_ros.forecasting.predictor import GroundingModel, shipped_checkpoint
    from molmomotion_ros.forecasting.text import default_text_encoder
    from molmomotion_ros.motion_data import MotionDataset, load_manifest

    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    manifest = load_manifest(args.data)
    data = MotionDataset(args.data, only_success=False)
    indices, taken = [], {}
    for i, meta in enumerate(data.meta):
        if args.episodes is None or taken.get(meta["family"], 0) < args.episodes:
            taken[meta["family"]] = taken.get(meta["family"], 0) + 1
            indices.append(i)
    if args.oracle_heatmap:
        grounding, checkpoint = OracleHeatmaps(), {"path": "oracle heat-map (ground-truth target mask)"}
    else:
        path = args.checkpoint or shipped_checkpoint("base")
        grounding = GroundingModel(path, device="cpu")
        checkpoint = {"path": str(path), **{k: grounding.meta.get(k) for k in ("code_revision", "created", "steps",
                                                                             "train_dir", "dataset_manifest_hash")}}

    def frame(i: int):
        ep = data.episode(i)
        if isinstance(grounding, OracleHeatmaps):
            grounding.target_mask = ep["target_mask"]
        return ep, (ep["rgb"][-1], ep["depth_m"][-1], ep["K"], ep["meta"]["instruction"])

    _, warm = frame(indices[0])
    for method in methods:  # loads the text encoder and open3d outside the timings
        select_query_points(*warm, method=method, grounding=grounding)

    rows = []
    start_all = time.perf_counter()
    for n, i in enumerate(indices):
        ep, inputs = frame(i)
        default_text_encoder().encode([inputs[3]])  # embed the instruction outside the timings (it is cached)
        target = ep["segmentation"] == int(ep["target_body_id"])
        for method in methods:
            start = time.perf_counter()
            try:
                points = select_query_points(*inputs, method=method, grounding=grounding, seed=int(ep["meta"]["seed"]))
                error = None
            except GroundingError as err:
                points, error = None, str(err)
            ms = (time.perf_counter() - start) * 1000.0
            row = {"family": ep["meta"]["family"], "seed": int(ep["meta"]["seed"]), "method": method, "ms": ms,
                   "error": error, "hits": 0, "argmax_on_target": None, "region_precision": None}
            if points is not None:
                uv = points.points_2d.astype(int)
                row["hits"] = int(target[uv[:, 1], uv[:, 0]].sum())
                v, u = np.unravel_index(int(np.argmax(points.heatmap)), points.heatmap.shape)
                row["argmax_on_target"] = bool(target[v, u])
                row["region_precision"] = float(target[points.target_mask].mean())
                row["score"] = points.score
            rows.append(row)
        if (n + 1) % 50 == 0:
            print(f"{n + 1}/{len(indices)} episodes", file=sys.stderr, flush=True)
    wall_time_s = time.perf_counter() - start_all

    families = sorted({r["family"] for r in rows})
    summary = {m: _summarize([r for r in rows if r["method"] == m]) for m in methods}
    per_family = {m: {f: _summarize([r for r in rows if r["method"] == m and r["family"] == f]) for f in families}
                  for m in methods}
    report = {
        "benchmark": "grounding", "data": str(args.data), "dataset_manifest_hash": manifest["config_hash"],
        "episodes": len(indices), "hit_points": HIT_POINTS, "checkpoint": checkpoint, "torch_threads": args.threads,
        "summary": summary, "per_family": per_family, "wall_time_s": round(wall_time_s, 2),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "episodes_detail": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(_table(summary, per_family, len(indices)))
    print(f"results: {args.out}")
    return 0


def _summarize(rows: list[dict]) -> dict:
    hits = np.array([r["hits"] for r in rows])
    argmax = [r["argmax_on_target"] for r in rows if r["argmax_on_target"] is not None]
    precision = [r["region_precision"] for r in rows if r["region_precision"] is not None]
    ms = np.array([r["ms"] for r in rows])
    return {
        "episodes": len(rows),
        "grounded_fraction": float(np.mean(hits >= HIT_POINTS)) if len(rows) else None,
        "mean_hits": float(hits.mean()) if len(rows) else None,
        "argmax_on_target_fraction": float(np.mean(argmax)) if argmax else None,
        "region_precision": float(np.mean(precision)) if precision else None,
        "errors": sum(r["error"] is not None for r in rows),
        "ms_median": float(np.median(ms)) if len(rows) else None,
        "ms_mean": float(ms.mean()) if len(rows) else None,
    }


def _table(summary: dict, per_family: dict, episodes: int) -> str:
    lines = [f"{'method':<9} {'family':<20} {'n':>4} {'>=6/8':>6} {'hits':>5} {'argmax':>7} {'prec':>5} {'err':>4} "
             f"{'ms p50':>7}"]
    for method, s in summary.items():
        for family, f in [*per_family[method].items(), ("all", s)]:
            lines.append(f"{method:<9} {family:<20} {f['episodes']:>4} {f['grounded_fraction']:>6.3f} "
                         f"{f['mean_hits']:>5.2f} {_fmt(f['argmax_on_target_fraction']):>7} "
                         f"{_fmt(f['region_precision']):>5} {f['errors']:>4} {f['ms_median']:>7.1f}")
    lines.append(f"{episodes} episodes; >=6/8: share with at least 6 of 8 points on the target; argmax: heat-map peak "
                 "on the target; prec: share of the region on the target")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
