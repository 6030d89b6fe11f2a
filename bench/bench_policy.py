"""Policy costs on this machine (1 torch thread): demonstration recording, head training, closed-loop control.

    .venv/bin/python bench/bench_policy.py --checkpoint policies/checkpoints/A.pt

Records 1 demonstration per family (episodes/s, frames/s), trains a head for --steps steps on them
(steps/s at batch 64), and runs the agent on one test episode per family (ms per chunk: render +
encoder + head; s per episode). Writes results/bench-policy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="policy checkpoint for the closed-loop part")
    parser.add_argument("--steps", type=int, default=500, help="head training steps to time (default: 500)")
    parser.add_argument("--out", type=Path, default=Path("results/bench-policy.json"), help="results JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)

    from molmomotion_policies.agent import PolicyAgent
    from molmomotion_policies.demos import DemoConfig, record_demos
    from molmomotion_policies.model import PolicyConfig
    from molmomotion_policies.train import TrainConfig, train_policy
    from molmomotion_sim.episode import run_episode
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    start = time.perf_counter()
    demos = record_demos(DemoConfig("train", 1, forecast=False), progress=False)
    record_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        run = train_policy(PolicyConfig.for_variant("A"), demos, demos, Path(tmp) / "A",
                           TrainConfig(steps=(args.steps,), eval_every=args.steps), progress=False)

    agent = PolicyAgent(args.checkpoint)
    chunk_ms, episode_s = [], []
    original = agent.controller._predict  # the policy's forward pass (render and IK excluded)

    def timed_predict(*a, **kw):
        t = time.perf_counter()
        out = original(*a, **kw)
        chunk_ms.append((time.perf_counter() - t) * 1000)
        return out

    agent.controller._predict = timed_predict
    with World() as world:
        for family in sorted(TASKS):
            t = time.perf_counter()
            run_episode(TASKS[family](world), 110_000, agent)
            episode_s.append(time.perf_counter() - t)
    result = {
        "demo_episodes_per_s": demos.num_episodes / record_s, "demo_frames_per_s": len(demos) / record_s,
        "train_steps_per_s_batch64": run.steps_per_s,
        "chunk_predict_ms_p50": float(np.percentile(chunk_ms, 50)),
        "chunk_predict_ms_p95": float(np.percentile(chunk_ms, 95)),
        "episode_s_mean": float(np.mean(episode_s)), "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
