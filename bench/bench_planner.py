"""Benchmark the motion planner on random reachable pose goals in the tabletop scene.

Scenes are the harness table plus a few random boxes on it (a new scene every ``--goals-per-scene``
goals). Goals are grasp-target poses over the harness workspace, 3 to 30 cm above the table, pointing
down with a random yaw and up to 30 degrees of tilt. A goal counts as reachable when an exhaustive IK
search (the start and 150 random seeds) finds a collision-free solution; unreachable draws are
replaced and counted. Each goal is planned from the home posture (or, with ``--start previous``,
from the previous goal's joints) with the shipped ``config/planner.yaml``; the time reported is the
whole ``plan_to_pose`` call (IK, straight-line check, OMPL when needed, TOPP-RA timing and the final
trajectory check).

Bars (the issue's): success >= 99 % and median planning time <= 100 ms.

Usage::

    .venv/bin/python bench/bench_planner.py                        # 200 goals, seed 0
    .venv/bin/python bench/bench_planner.py --goals 50 --seed 1 --out results/bench-planner-small.json
    .venv/bin/python bench/bench_planner.py --start previous --max-box-half-height 0.15 \
        --out results/bench-planner-towers.json    # table-to-table moves around taller boxes

Writes ``results/bench-planner.json``: the summary, every goal (scene, pose, status, reason, time)
and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from molmomotion_ros.planning.collision import PyBulletSceneChecker
from molmomotion_ros.planning.kinematics import PandaKinematics
from molmomotion_ros.planning.planner import MotionPlanner, PlannerConfig, PlanStatus
from molmomotion_ros.robot import HOME_JOINTS_RAD, TABLE_TOP_Z_M, WORKSPACE_X_M, WORKSPACE_Y_M

SUCCESS_BAR = 0.99
MEDIAN_TIME_BAR_S = 0.100
ORACLE_SEEDS = 150


def random_boxes(checker: PyBulletSceneChecker, rng: np.random.Generator, count: int,
                 max_half_height_m: float) -> list[dict]:
    """``count`` boxes resting on the table inside the workspace (2-6 cm half widths, random yaw)."""
    boxes = []
    for _ in range(count):
        half = rng.uniform(0.02, [0.06, 0.06, max_half_height_m])
        center = [rng.uniform(*WORKSPACE_X_M), rng.uniform(*WORKSPACE_Y_M), TABLE_TOP_Z_M + half[2]]
        yaw = rng.uniform(-np.pi, np.pi)
        checker.add_box(center, half, name="box", quaternion_xyzw=(0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)))
        boxes.append({"center_m": [round(float(v), 4) for v in center],
                      "half_extents_m": [round(float(v), 4) for v in half], "yaw_rad": round(float(yaw), 4)})
    return boxes


def random_goal(rng: np.random.Generator) -> np.ndarray:
    """A grasp-target pose over the workspace, pointing down within 30 degrees, any yaw."""
    from scipy.spatial.transform import Rotation

    tilt_axis = rng.normal(size=2)
    tilt_axis /= np.linalg.norm(tilt_axis)
    tilt = Rotation.from_rotvec(np.r_[tilt_axis, 0.0] * rng.uniform(0.0, np.radians(30)))
    down = Rotation.from_euler("xyz", [np.pi, 0.0, rng.uniform(-np.pi, np.pi)])  # the harness's down_orientation
    T = np.eye(4)
    T[:3, :3] = (tilt * down).as_matrix()
    T[:3, 3] = [rng.uniform(*WORKSPACE_X_M), rng.uniform(*WORKSPACE_Y_M), TABLE_TOP_Z_M + rng.uniform(0.03, 0.30)]
    return T


def reachable(kinematics: PandaKinematics, checker: PyBulletSceneChecker, T: np.ndarray, q_start) -> bool:
    solutions = kinematics.ik_solutions(T, seeds=[q_start], n_random_seeds=ORACLE_SEEDS, max_solutions=1,
                                        accept=checker.is_valid)
    return any(checker.is_valid(q) for q in solutions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=200, help="number of reachable goals (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of scenes and goals (default: 0)")
    parser.add_argument("--boxes", type=int, default=3, help="random boxes per scene (default: 3)")
    parser.add_argument("--goals-per-scene", type=int, default=20, help="goals before a new scene (default: 20)")
    parser.add_argument("--max-box-half-height", type=float, default=0.06,
                        help="largest box half height in m (default: 0.06; 0.15 makes towers to plan around)")
    parser.add_argument("--start", choices=("home", "previous"), default="home",
                        help="plan each goal from the home posture, or from the previous goal's joints "
                             "(table-to-table moves over the boxes) (default: home)")
    parser.add_argument("--config", type=Path, default=None, help="planner YAML (default: config/planner.yaml)")
    parser.add_argument("--out", type=Path, default=Path("results/bench-planner.json"),
                        help="benchmark JSON (default: results/bench-planner.json)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    config = PlannerConfig.from_yaml(args.config)
    kinematics = PandaKinematics()
    checker = PyBulletSceneChecker(scene_margin_m=config.scene_margin_m, self_margin_m=config.self_margin_m)
    planner = MotionPlanner(config, checker=checker, kinematics=kinematics)
    home = np.asarray(HOME_JOINTS_RAD)
    planner.plan_to_joints(home, home + [0.1, 0, 0, 0, 0, 0, 0])  # warm-up: imports (toppra) out of the timings

    rows, scenes, unreachable_draws = [], [], 0
    while len(rows) < args.goals:
        checker.clear()
        checker.add_table()
        boxes = random_boxes(checker, rng, args.boxes, args.max_box_half_height)
        if not checker.is_valid(home):  # a box against the robot: draw the scene again
            continue
        scenes.append(boxes)
        q_start = home
        for _ in range(min(args.goals_per_scene, args.goals - len(rows))):
            T = random_goal(rng)
            while not reachable(kinematics, checker, T, q_start):
                unreachable_draws += 1
                T = random_goal(rng)
            result = planner.plan_to_pose(q_start, T)
            if args.start == "previous" and result.success:
                q_start = result.goal_rad
            rows.append({"scene": len(scenes) - 1, "goal_position_m": [round(float(v), 4) for v in T[:3, 3]],
                         "goal_rotation": np.round(T[:3, :3], 5).tolist(), "status": result.status.value,
                         "reason": result.reason, "planning_time_s": round(result.planning_time_s, 5),
                         "straight_line": result.straight_line,
                         "duration_s": round(result.trajectory.duration_s, 3) if result.trajectory else None})
            print(f"\r{len(rows)}/{args.goals} goals", end="", flush=True)
    print()

    times = np.array([r["planning_time_s"] for r in rows])
    ok = np.array([r["status"] == PlanStatus.SUCCESS.value for r in rows])
    summary = {
        "goals": len(rows),
        "success_rate": round(float(ok.mean()), 4),
        "median_planning_time_s": round(float(np.median(times)), 4),
        "p95_planning_time_s": round(float(np.percentile(times, 95)), 4),
        "max_planning_time_s": round(float(times.max()), 4),
        "median_planning_time_success_s": round(float(np.median(times[ok])), 4) if ok.any() else None,
        "straight_line_fraction": round(float(np.mean([r["straight_line"] for r in rows])), 4),
        "unreachable_draws_replaced": unreachable_draws,
        "failures": {s: int(sum(r["status"] == s for r in rows)) for s in {r["status"] for r in rows if r["status"]
                                                                             != PlanStatus.SUCCESS.value}},
        "meets_success_bar": bool(ok.mean() >= SUCCESS_BAR),
        "meets_time_bar": bool(np.median(times) <= MEDIAN_TIME_BAR_S),
    }
    report = {
        "benchmark": "planner",
        "seed": args.seed,
        "start": args.start,
        "boxes_per_scene": args.boxes,
        "max_box_half_height_m": args.max_box_half_height,
        "bars": {"success_rate": SUCCESS_BAR, "median_planning_time_s": MEDIAN_TIME_BAR_S},
        "config": dataclasses.asdict(config),
        "summary": summary,
        "scenes": scenes,
        "goals": rows,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count()},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{summary['goals']} goals: success {summary['success_rate']:.1%} (bar {SUCCESS_BAR:.0%}), planning time "
          f"median {summary['median_planning_time_s'] * 1e3:.0f} ms (bar {MEDIAN_TIME_BAR_S * 1e3:.0f} ms), "
          f"p95 {summary['p95_planning_time_s'] * 1e3:.0f} ms, straight line {summary['straight_line_fraction']:.0%}; "
          f"{unreachable_draws} unreachable draws replaced; wrote {args.out}")
    for r in rows:
        if r["status"] != PlanStatus.SUCCESS.value:
            print(f"  scene {r['scene']} goal {r['goal_position_m']}: {r['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
