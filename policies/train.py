"""Behaviour cloning of a policy variant on cached demonstrations: deterministic, resumable, checkpointed.

The encoder is frozen, so each frame is encoded once per encoder (cached next to the run) and the
head trains on those encodings: one torch thread runs hundreds of steps per second, which is what
lets a CPU sweep the issue's step grid. A run writes ``step-NNNNNN.pt`` at every requested step,
``state.pt`` (head, optimiser, sampler state, history) for resuming, and ``history.json`` with the
validation action-error curve.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .demos import Demos
from .model import GoalConditionedPolicy, PolicyConfig, PolicyHead, chunk_loss
from .observation import PolicyError, proprioception

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: tuple[int, ...] = (250, 500, 1000, 2000, 4000)  # checkpoints; the run ends at the last
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    eval_every: int = 250  # validation (and the resumable state) every this many steps
    seed: int = 0  # head init and batch order (and a scratch encoder's init)

    def __post_init__(self) -> None:
        if not self.steps or any(s <= 0 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise PolicyError(f"steps must be positive and increasing, got {self.steps}")
        if self.batch_size <= 0 or self.eval_every <= 0:
            raise PolicyError("batch_size and eval_every must be positive")


@dataclass
class TrainRun:
    out_dir: Path
    checkpoints: dict[int, Path]  # step → policy checkpoint
    history: list[dict] = field(default_factory=list)  # {"step", "val_pos_err_cm", ...}
    steps_per_s: float = 0.0


@dataclass
class BatchTensors:
    """Everything the head needs per frame, as tensors (M rows), plus per-frame episode ids."""

    encoding: torch.Tensor  # (M, ENCODING_DIM)
    encoding_t0: torch.Tensor  # (M, ENCODING_DIM) of the frame's episode's first frame
    proprio: torch.Tensor  # (M, PROPRIO_DIM)
    pos_m: torch.Tensor  # (M, C, 3)
    yaw_rad: torch.Tensor  # (M, C)
    gripper_closed: torch.Tensor  # (M, C) bool
    forecast_world_m: torch.Tensor  # (M, P, F, 3)
    forecast_points_t0_world_m: torch.Tensor  # (M, P, 3)
    forecast_valid: torch.Tensor  # (M,) bool

    def rows(self, idx: torch.Tensor | slice) -> "BatchTensors":
        return BatchTensors(*(getattr(self, k)[idx] for k in self.__dataclass_fields__))

    def forecast_kwargs(self) -> dict:
        return {"forecast_world_m": self.forecast_world_m, "forecast_valid": self.forecast_valid,
                "forecast_points_t0_world_m": self.forecast_points_t0_world_m}


def encode_demos(model: GoalConditionedPolicy, demos: Demos, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Every frame through the frozen encoder → (M, ENCODING_DIM) float32."""
    from tqdm import tqdm

    from molmomotion_ros.forecasting.text import default_text_encoder

    tokens, masks = default_text_encoder().encode(list(demos.instructions))
    out = []
    for start in tqdm(range(0, len(demos), batch_size), desc=f"encode ({model.cfg.encoder_init})", unit="batch",
                      disable=not progress, dynamic_ncols=True):
        rows = slice(start, start + batch_size)
        ep = demos.episode[rows]
        instr = demos.instruction[ep]
        out.append(model.encode(
            torch.from_numpy(demos.rgb[rows]), torch.from_numpy(demos.xyz_cam_m[rows].astype(np.float32)),
            torch.from_numpy(tokens[instr]), torch.from_numpy(masks[instr]),
            torch.from_numpy(demos.T_world_cam[ep]), torch.from_numpy(demos.ee_uv_model[rows]),
        ).numpy())
    return np.concatenate(out).astype(np.float32)


def cached_encoding(model: GoalConditionedPolicy, demos: Demos, cache_dir: Path, progress: bool = True) -> np.ndarray:
    """Encodings of ``demos`` by ``model``'s encoder, cached per (demonstrations, encoder source, seed)."""
    cfg = model.cfg
    seed = f"-s{cfg.encoder_seed}" if cfg.encoder_init == "scratch" else ""
    path = Path(cache_dir) / f"enc-{demos.config.get('key', 'nokey')}-{cfg.encoder_init}{seed}.npy"
    if path.is_file():
        encoding = np.load(path)
        if encoding.shape[0] == len(demos):
            return encoding
    encoding = encode_demos(model, demos, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, encoding)
    return encoding


def to_tensors(demos: Demos, encoding: np.ndarray) -> BatchTensors:
    ep = demos.episode
    first_row = np.full(demos.num_episodes, -1)
    first_row[ep[demos.trace_index == 0]] = np.flatnonzero(demos.trace_index == 0)
    if (first_row < 0).any():
        raise PolicyError("every demonstration needs its t0 frame")
    return BatchTensors(
        torch.from_numpy(encoding), torch.from_numpy(encoding[first_row[ep]]),
        torch.from_numpy(proprioception(demos.ee_pos_world_m, demos.ee_yaw_rad, demos.gripper_width_m,
                                        demos.gripper_closed, demos.trace_index)),
        torch.from_numpy(demos.action_pos_m), torch.from_numpy(demos.action_yaw_rad),
        torch.from_numpy(demos.action_gripper_closed), torch.from_numpy(demos.forecast_world_m[ep]),
        torch.from_numpy(demos.forecast_points_t0_world_m[ep]), torch.from_numpy(demos.forecast_valid[ep]),
    )


@torch.no_grad()
def validation_metrics(head: PolicyHead, data: BatchTensors) -> dict:
    """Action error on held-out frames: mean L2 of the chunk's position offsets (cm), at its last step (cm),
    yaw error (deg), gripper accuracy, loss."""
    head.eval()
    pred = head(data.encoding, data.proprio, data.encoding_t0, **data.forecast_kwargs())
    head.train()
    loss, _ = chunk_loss(pred, data.pos_m, data.yaw_rad, data.gripper_closed)
    err = (pred.pos_m - data.pos_m).norm(dim=-1)  # (M, C)
    return {
        "val_loss": float(loss), "val_pos_err_cm": float(err.mean() * 100),
        "val_final_pos_err_cm": float(err[:, -1].mean() * 100),
        "val_yaw_err_deg": float((pred.yaw_rad - data.yaw_rad).abs().mean().rad2deg()),
        "val_gripper_acc": float(((pred.gripper_logits > 0) == data.gripper_closed).float().mean()),
    }


def train_policy(policy_cfg: PolicyConfig, train_demos: Demos, val_demos: Demos, out_dir: str | Path,
                 cfg: TrainConfig = TrainConfig(), progress: bool = True, encoding_cache: str | Path | None = None
                 ) -> TrainRun:
    """Train (or resume) one variant; returns its checkpoints by step and its validation history."""
    import time

    from tqdm import tqdm

    torch.set_num_threads(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A run's identity: everything but the step grid, so a finished run can be extended to more steps.
    run_config = {"policy": asdict(policy_cfg), "train": {k: v for k, v in asdict(cfg).items() if k != "steps"},
                  "train_demos": train_demos.config.get("key"), "val_demos": val_demos.config.get("key")}
    model = GoalConditionedPolicy(policy_cfg)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model.head = PolicyHead(policy_cfg)
    cache = Path(encoding_cache) if encoding_cache else out.parent / "encodings"
    train = to_tensors(train_demos, cached_encoding(model, train_demos, cache, progress))
    val = to_tensors(val_demos, cached_encoding(model, val_demos, cache, progress))
    optimiser = torch.optim.AdamW(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)  # batch order
    dropout_rng = torch.Generator().manual_seed(cfg.seed + 1_000_003).get_state()  # the global RNG, in the loop
    step, history = 0, []
    state_path = out / "state.pt"
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        if state["run_config"] != run_config:
            raise PolicyError(f"{out} holds a run with another config; use another folder")
        model.head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        dropout_rng = state["dropout_rng"]
        step, history = state["step"], state["history"]
        log.info("resuming %s at step %d", out, step)
    (out / "run_config.json").write_text(json.dumps(run_config, indent=2) + "\n")
    checkpoints = {s: out / f"step-{s:06d}.pt" for s in cfg.steps}
    total = cfg.steps[-1]
    model.head.train()
    started, first_step = time.perf_counter(), step
    with torch.random.fork_rng(), tqdm(total=total, initial=step, desc=f"train {policy_cfg.variant} s{cfg.seed}",
                                       unit="step", disable=not progress, dynamic_ncols=True) as bar:
        torch.set_rng_state(dropout_rng)
        while step < total:
            idx = torch.randint(len(train.encoding), (cfg.batch_size,), generator=generator)
            batch = train.rows(idx)
            pred = model.head(batch.encoding, batch.proprio, batch.encoding_t0, **batch.forecast_kwargs())
            loss, _ = chunk_loss(pred, batch.pos_m, batch.yaw_rad, batch.gripper_closed)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            bar.update(1)
            if step % cfg.eval_every == 0 or step in checkpoints:
                metrics = {"step": step, "train_loss": loss.item(), **validation_metrics(model.head, val)}
                history.append(metrics)
                bar.set_postfix(val_cm=f"{metrics['val_pos_err_cm']:.2f}")
                if step in checkpoints:
                    model.save(checkpoints[step], meta={"step": step, "run_config": run_config,
                                                        "validation": metrics})
                torch.save({"run_config": run_config, "head": model.head.state_dict(),
                            "optimiser": optimiser.state_dict(), "generator": generator.get_state(), "step": step,
                            "dropout_rng": torch.get_rng_state(), "history": history}, state_path)
                (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    elapsed = time.perf_counter() - started
    rate = (step - first_step) / elapsed if step > first_step and elapsed > 0 else 0.0
    return TrainRun(out, {s: p for s, p in checkpoints.items() if p.is_file()}, history, rate)
