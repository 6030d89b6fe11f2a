"""Behaviour cloning of a policy variant on cached demonstrations: deterministic, resumable, checkpointed.

``finetune="none"``: the encoder is frozen, so each frame is encoded once per encoder (cached next to
the run) and the head trains on those encodings: one torch thread runs hundreds of steps per second.
``finetune="post_trunk"``: the CNN trunk is frozen and its outputs are cached once per frame (float16
feature maps, keyed by the trunk's weights, so A, B and C share one cache); each step runs the
post-trunk layers on the batch's frames with gradients (learning rate ``encoder_lr``) and, without
gradients, on each frame's episode's first frame for ``encoding_t0`` (the head reads only its grounded
target and goal), so the t0 encoding always comes from the encoder as it is at that step.
A run writes ``step-NNNNNN.pt`` at every requested step, ``state.pt`` (head, encoder, optimiser,
sampler state, history) for resuming, and ``history.json`` with the validation action-error curve.
Asking a finished (or part-run) run for a step it has already passed replays it from step 0 for that
checkpoint: training is deterministic per seed, so the replay writes the weights the run had there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .demos import Demos
from .model import (
    ENCODING_DIM,
    ENCODING_LAYOUT,
    FEATURE_DIM,
    FOOTPRINT_DIM,
    PROTOCOL_ENCODERS,
    TRUNK,
    GoalConditionedPolicy,
    PolicyConfig,
    PolicyHead,
    TrunkOutput,
    chunk_loss,
    encoder_sha256,
    encoder_trunk,
    make_image_input,
    post_trunk_parameters,
    target_footprint,
)
from .observation import POSITION_SCALE_M, PolicyError, proprioception

log = logging.getLogger(__name__)


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base learning rates at ``step`` (0-based) of a ``total``-step run."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    return 1.0


@dataclass(frozen=True)
class TrainConfig:
    steps: tuple[int, ...] = (250, 500, 1000, 2000, 4000)  # checkpoints; the run ends at the last
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float = 1e-4  # the post-trunk encoder layers' learning rate when fine-tuning
    weight_decay: float = 1e-4
    eval_every: int = 250  # validation (and the resumable state) every this many steps
    seed: int = 0  # head init and batch order (and a scratch encoder's init)
    lr_schedule: str = "constant"  # constant | cosine (to 0 at the last step of the grid)
    state_noise_m: float = 0.0  # > 0: each training frame's grasp target moved by N(0, this) per axis...
    state_noise_rad: float = 0.0  # ...and its yaw by N(0, this), the chunk's labels corrected to match

    def __post_init__(self) -> None:
        if not self.steps or any(s <= 0 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise PolicyError(f"steps must be positive and increasing, got {self.steps}")
        if self.batch_size <= 0 or self.eval_every <= 0:
            raise PolicyError("batch_size and eval_every must be positive")
        if not (self.state_noise_m >= 0 and self.state_noise_rad >= 0):  # also refuses NaN
            raise PolicyError(f"state noise must be >= 0, got {self.state_noise_m} m and {self.state_noise_rad} rad")
        if self.lr_schedule not in LR_SCHEDULES:
            raise PolicyError(f"unknown lr_schedule {self.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")


@dataclass
class TrainRun:
    out_dir: Path
    checkpoints: dict[int, Path]  # step → policy checkpoint
    history: list[dict] = field(default_factory=list)  # {"step", "val_pos_err_cm", ...}
    steps_per_s: float = 0.0
    device: str = "cpu"  # where it trained


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

    def to(self, device: torch.device) -> "BatchTensors":
        """On ``device`` (the same tensors when they are there already)."""
        return BatchTensors(*(getattr(self, k).to(device) for k in self.__dataclass_fields__))

    def forecast_kwargs(self) -> dict:
        return {"forecast_world_m": self.forecast_world_m, "forecast_valid": self.forecast_valid,
                "forecast_points_t0_world_m": self.forecast_points_t0_world_m}


ENCODE_BATCH = 64  # frames per encoder pass (a shard of the frames starts at a multiple of it: the same passes)


def encode_demos(model: GoalConditionedPolicy, demos: Demos, batch_size: int = ENCODE_BATCH, progress: bool = True,
                 rows: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame (or the frames ``rows`` = (start, stop), start a multiple of ``batch_size``) through the frozen
    encoder → (M, ENCODING_DIM) float32. A frame's encoding comes from the same batch of frames either way, so
    shards concatenated are the whole, bit for bit."""
    from tqdm import tqdm

    from molmomotion_ros.forecasting.text import default_text_encoder

    first, stop = rows if rows is not None else (0, len(demos))
    if first % batch_size:
        raise PolicyError(f"a shard of the frames starts at a multiple of {batch_size}, not at {first}")
    tokens, masks = default_text_encoder().encode(list(demos.instructions))
    out = []
    for start in tqdm(range(first, stop, batch_size), desc=f"encode ({model.cfg.encoder_init})", unit="batch",
                      disable=not progress, dynamic_ncols=True):
        rows = slice(start, min(start + batch_size, stop))
        ep = demos.episode[rows]
        instr = demos.instruction[ep]
        out.append(model.encode(
            torch.from_numpy(demos.rgb[rows]), torch.from_numpy(demos.xyz_cam_m[rows].astype(np.float32)),
            torch.from_numpy(tokens[instr]), torch.from_numpy(masks[instr]),
            torch.from_numpy(demos.T_world_cam[ep]), torch.from_numpy(demos.ee_uv_model[rows]),
        ).numpy())
    return np.concatenate(out).astype(np.float32)


def encoding_paths(cfg: PolicyConfig, demos_key: str, cache_dir: str | Path) -> tuple[Path, Path]:
    """Where :func:`cached_encoding` keeps the encodings of the demonstrations ``demos_key`` by ``cfg``'s encoder,
    and where a layout-1 cache of them (before the footprint) would be."""
    seed = f"-s{cfg.encoder_seed}" if cfg.encoder_init == "scratch" else ""
    source = cfg.encoder_init
    if source in PROTOCOL_ENCODERS.values():  # a file that may be made again: its bytes name the cache
        source = f"{source}-{encoder_sha256(source, cfg.encoders_dir)[:12]}"
    stem = f"enc-{demos_key}-{source}{seed}"
    return Path(cache_dir) / f"{stem}-l{ENCODING_LAYOUT}.npy", Path(cache_dir) / f"{stem}.npy"


def cached_encoding(model: GoalConditionedPolicy, demos: Demos, cache_dir: Path, progress: bool = True) -> np.ndarray:
    """Encodings of ``demos`` by ``model``'s encoder, cached per (demonstrations, encoder source, seed)."""
    path, layout_1 = encoding_paths(model.cfg, demos.config.get("key", "nokey"), cache_dir)
    if path.is_file():
        encoding = np.load(path)
        if encoding.shape == (len(demos), ENCODING_DIM):
            return encoding
    # layout_1: written before the footprint existed: the same features
    if layout_1.is_file() and np.load(layout_1, mmap_mode="r").shape == (len(demos), ENCODING_DIM - FOOTPRINT_DIM):
        encoding = upgrade_layout_1(np.load(layout_1), demos)
    else:
        encoding = encode_demos(model, demos, progress=progress)
    save_npy(path, encoding)
    return encoding


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file, so a reader (or a run killed mid-write) never sees half an array:
    runs of the experiment's graph on other workers read these caches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def upgrade_layout_1(encoding: np.ndarray, demos: Demos, batch_size: int = 1024) -> np.ndarray:
    """A layout-1 encoding (no footprint) → layout 2: the footprint is a function of each frame's depth and the
    grounded target the encoding already holds, so ten minutes of encoder passes become seconds."""
    target = torch.from_numpy(encoding[:, -6:-3].copy())
    footprint = np.concatenate([target_footprint(
        torch.from_numpy(demos.xyz_cam_m[s:s + batch_size].astype(np.float32)),
        torch.from_numpy(demos.T_world_cam[demos.episode[s:s + batch_size]]), target[s:s + batch_size]).numpy()
        for s in range(0, len(encoding), batch_size)])
    return np.concatenate([encoding[:, :FEATURE_DIM], footprint, encoding[:, FEATURE_DIM:]], 1).astype(np.float32)


def first_rows(demos: Demos) -> np.ndarray:
    """(E,) row of each episode's t0 frame."""
    first_row = np.full(demos.num_episodes, -1)
    first_row[demos.episode[demos.trace_index == 0]] = np.flatnonzero(demos.trace_index == 0)
    if (first_row < 0).any():
        raise PolicyError("every demonstration needs its t0 frame")
    return first_row


def to_tensors(demos: Demos, encoding: np.ndarray) -> BatchTensors:
    ep = demos.episode
    first_row = first_rows(demos)
    return BatchTensors(
        torch.from_numpy(encoding), torch.from_numpy(encoding[first_row[ep]]),
        torch.from_numpy(proprioception(demos.ee_pos_world_m, demos.ee_yaw_rad, demos.gripper_width_m,
                                        demos.gripper_closed, demos.trace_index)),
        torch.from_numpy(demos.action_pos_m), torch.from_numpy(demos.action_yaw_rad),
        torch.from_numpy(demos.action_gripper_closed), torch.from_numpy(demos.forecast_world_m[ep]),
        torch.from_numpy(demos.forecast_points_t0_world_m[ep]), torch.from_numpy(demos.forecast_valid[ep]),
    )


# --- fine-tuning the post-trunk layers: trunk outputs cached per frame ------------------------------
def trunk_key(model: GoalConditionedPolicy) -> str:
    """Hash of the trunk's weights: encoders with the same trunk (fm, base) share one cache."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.encoder.state_dict().items()):
        if name.split(".")[0] in TRUNK:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


@dataclass
class TrunkFrames:
    """Per frame: the trunk's outputs (float16 feature maps, float32 xyz) and what the post-trunk layers and
    :func:`policy_encoding` need besides; ``rows`` gives a float32 batch."""

    s1: np.ndarray  # (M, 48, 30, 40) float16
    s2: np.ndarray  # (M, 96, 15, 20) float16
    xyz_half: np.ndarray  # (M, 3, 30, 40) float32
    xyz_cam: np.ndarray  # (M, 3, 60, 80) float16, the demonstrations' own (for the footprint)
    text_tokens: torch.Tensor  # (M, L, 384) per frame (its episode's instruction)
    text_mask: torch.Tensor  # (M, L)
    T_world_cam: torch.Tensor  # (M, 4, 4)
    ee_uv_model: torch.Tensor  # (M, 2)
    first_row: torch.Tensor  # (M,) row of the frame's episode's t0 frame

    def rows(self, idx: torch.Tensor, device: torch.device | None = None
             ) -> tuple[TrunkOutput, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frames ``idx`` (a CPU index), on ``device`` (default: the CPU)."""
        i = idx.numpy()
        arrays = (self.s1[i].astype(np.float32), self.s2[i].astype(np.float32), self.xyz_half[i],
                  self.xyz_cam[i].astype(np.float32))
        rest = (self.text_tokens[idx], self.text_mask[idx], self.T_world_cam[idx], self.ee_uv_model[idx])
        device = device or torch.device("cpu")
        trunk = TrunkOutput(*(torch.from_numpy(a).to(device) for a in arrays))
        return (trunk, *(t.to(device) for t in rest))


def cached_trunk(model: GoalConditionedPolicy, demos: Demos, cache_dir: Path, progress: bool = True,
                 batch_size: int = 64) -> TrunkFrames:
    """Every frame through the frozen trunk once, cached per (demonstrations, trunk weights)."""
    from tqdm import tqdm

    from molmomotion_ros.forecasting.text import default_text_encoder

    stem = Path(cache_dir) / f"trunk-{demos.config.get('key', 'nokey')}-{trunk_key(model)}"
    paths = {k: stem.with_name(f"{stem.name}-{k}.npy") for k in ("s1", "s2", "xyz_half")}
    arrays = {k: np.load(p) for k, p in paths.items() if p.is_file()}
    if len(arrays) != len(paths) or any(a.shape[0] != len(demos) for a in arrays.values()):
        parts: dict[str, list] = {k: [] for k in paths}
        for start in tqdm(range(0, len(demos), batch_size), desc=f"trunk ({model.cfg.encoder_init})", unit="batch",
                          disable=not progress, dynamic_ncols=True):
            rows = slice(start, start + batch_size)
            image, xyz = make_image_input(torch.from_numpy(demos.rgb[rows]),
                                          torch.from_numpy(demos.xyz_cam_m[rows].astype(np.float32)))
            out = encoder_trunk(model.encoder, image, xyz)
            parts["s1"].append(out.s1.numpy().astype(np.float16))
            parts["s2"].append(out.s2.numpy().astype(np.float16))
            parts["xyz_half"].append(out.xyz_half.numpy().astype(np.float32))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        for k, p in paths.items():
            save_npy(p, arrays[k])
    tokens, masks = default_text_encoder().encode(list(demos.instructions))
    ep = demos.episode
    instr = demos.instruction[ep]
    return TrunkFrames(arrays["s1"], arrays["s2"], arrays["xyz_half"], demos.xyz_cam_m, torch.from_numpy(tokens[instr]),
                       torch.from_numpy(masks[instr]), torch.from_numpy(demos.T_world_cam[ep]).float(),
                       torch.from_numpy(demos.ee_uv_model), torch.from_numpy(first_rows(demos)[ep]))


def finetune_encodings(model: GoalConditionedPolicy, frames: TrunkFrames, idx: torch.Tensor,
                       device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Encodings of frames ``idx`` (differentiable) and of their episodes' t0 frames (no gradient) by the
    encoder as it is now, on ``device``."""
    encoding = model.encode_from_trunk(*frames.rows(idx, device))
    with torch.no_grad():
        encoding_t0 = model.encode_from_trunk(*frames.rows(frames.first_row[idx], device))
    return encoding, encoding_t0


@torch.no_grad()
def finetune_validation_tensors(model: GoalConditionedPolicy, frames: TrunkFrames, data: BatchTensors,
                                batch_size: int = 128) -> BatchTensors:
    """``data`` (on the model's device) with every frame encoded by the encoder as it is now (t0 rows from the
    same pass)."""
    device = data.proprio.device
    encoding = torch.cat([model.encode_from_trunk(*frames.rows(torch.arange(s, min(s + batch_size, len(data.proprio))),
                                                               device))
                          for s in range(0, len(data.proprio), batch_size)])
    return replace(data, encoding=encoding, encoding_t0=encoding[frames.first_row.to(device)])


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


def perturb_state(batch: BatchTensors, noise_m: float, noise_rad: float, generator: torch.Generator) -> BatchTensors:
    """Corrective labels without new demonstrations: the robot is taken to be off its demonstrated pose by a
    random offset, and the chunk is relabelled to reach the same set-points from there (labels are offsets from
    the current pose). Every position input of the head is relative to the grasp target, so the perturbed
    proprioception moves them consistently; only the image still shows the arm where it was."""
    n = len(batch.proprio)
    delta = torch.randn(n, 3, generator=generator) * noise_m
    turn = torch.randn(n, generator=generator) * noise_rad
    proprio = batch.proprio.clone()
    proprio[:, :3] += delta / POSITION_SCALE_M
    yaw = torch.atan2(proprio[:, 3], proprio[:, 4]) + turn
    proprio[:, 3], proprio[:, 4] = torch.sin(yaw), torch.cos(yaw)
    yaw_labels = torch.atan2(torch.sin(batch.yaw_rad - turn[:, None]), torch.cos(batch.yaw_rad - turn[:, None]))
    return replace(batch, proprio=proprio, pos_m=batch.pos_m - delta[:, None], yaw_rad=yaw_labels)


def _fresh_model(policy_cfg: PolicyConfig, seed: int) -> GoalConditionedPolicy:
    model = GoalConditionedPolicy(policy_cfg)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.head = PolicyHead(policy_cfg)
    return model


@dataclass
class _TrainData:
    train: BatchTensors
    val: BatchTensors
    train_frames: object | None  # fine-tuning: cached trunk outputs per frame
    val_frames: object | None


class _Trainer:
    """One training trajectory: model, optimiser and every random stream, from step 0 or a saved state."""

    def __init__(self, model: GoalConditionedPolicy, cfg: TrainConfig, device: torch.device | None = None) -> None:
        device = device or torch.device("cpu")
        self.model, self.cfg, self.device = model.to(device), cfg, device
        self.finetune = model.cfg.finetune != "none"
        groups = [{"params": list(model.head.parameters()), "lr": cfg.lr}]
        if self.finetune:
            groups.append({"params": post_trunk_parameters(model.encoder), "lr": cfg.encoder_lr})
        self.optimiser = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.base_lrs = [group["lr"] for group in groups]  # what the schedule scales (states hold decayed ones)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # batch order
        self.dropout_rng = torch.Generator().manual_seed(cfg.seed + 1_000_003).get_state()  # global RNG in the loop
        self.noise = torch.Generator().manual_seed(cfg.seed + 2_000_003)  # state perturbations (when asked for)
        self.step, self.history = 0, []

    def load_state(self, state: dict) -> None:
        self.model.head.load_state_dict(state["head"])
        if "encoder" in state:
            self.model.encoder.load_state_dict(state["encoder"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])
        self.dropout_rng = state["dropout_rng"]
        if "noise" in state:
            self.noise.set_state(state["noise"])
        self.step, self.history = state["step"], state["history"]

    def run(self, data: _TrainData, until: int, checkpoints: dict[int, Path], run_config: dict,
            state_path: Path | None, desc: str, progress: bool, checkpoint_meta: dict[int, dict] | None = None
            ) -> None:
        """Train to step ``until``, writing ``checkpoints`` on the way (with ``checkpoint_meta[step]`` in their
        meta) and (with a ``state_path``) the resumable state and ``history.json`` at every validation."""
        from tqdm import tqdm

        cfg, model, optimiser, device = self.cfg, self.model, self.optimiser, self.device
        total = cfg.steps[-1]  # the schedule's end, whatever ``until`` is
        val = data.val.to(device)  # batches are drawn on the CPU (the same streams everywhere), then moved
        model.head.train()
        with torch.random.fork_rng(), tqdm(total=until, initial=self.step, desc=desc, unit="step",
                                           disable=not progress, dynamic_ncols=True) as bar:
            torch.set_rng_state(self.dropout_rng)
            while self.step < until:
                factor = lr_factor(cfg.lr_schedule, self.step, total)
                for group, base_lr in zip(optimiser.param_groups, self.base_lrs, strict=True):
                    group["lr"] = base_lr * factor
                idx = torch.randint(len(data.train.encoding), (cfg.batch_size,), generator=self.generator)
                batch = data.train.rows(idx)
                if cfg.state_noise_m or cfg.state_noise_rad:
                    batch = perturb_state(batch, cfg.state_noise_m, cfg.state_noise_rad, self.noise)
                batch = batch.to(device)
                if self.finetune:
                    encoding, encoding_t0 = finetune_encodings(model, data.train_frames, idx, device)
                    batch = replace(batch, encoding=encoding, encoding_t0=encoding_t0)
                pred = model.head(batch.encoding, batch.proprio, batch.encoding_t0, **batch.forecast_kwargs())
                loss, _ = chunk_loss(pred, batch.pos_m, batch.yaw_rad, batch.gripper_closed)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                self.step += 1
                bar.update(1)
                if self.step % cfg.eval_every == 0 or self.step in checkpoints:
                    val_now = (finetune_validation_tensors(model, data.val_frames, val) if self.finetune
                               else val)
                    metrics = {"step": self.step, "train_loss": loss.item(), **validation_metrics(model.head, val_now)}
                    self.history.append(metrics)
                    bar.set_postfix(val_cm=f"{metrics['val_pos_err_cm']:.2f}")
                    if self.step in checkpoints:
                        model.save(checkpoints[self.step], meta={"step": self.step, "run_config": run_config,
                                                                 "validation": metrics,
                                                                 **(checkpoint_meta or {}).get(self.step, {})})
                    if state_path is not None:
                        self.save_state(state_path, run_config)
            self.dropout_rng = torch.get_rng_state()

    def save_state(self, path: Path, run_config: dict) -> None:
        # Through temporary files: a run killed while writing resumes from the previous state, never a torn one.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save({"run_config": run_config, "head": self.model.head.state_dict(),
                    **({"encoder": self.model.encoder.state_dict()} if self.finetune else {}),
                    "optimiser": self.optimiser.state_dict(), "generator": self.generator.get_state(),
                    "step": self.step, "dropout_rng": torch.get_rng_state(), "noise": self.noise.get_state(),
                    "history": self.history}, tmp)
        tmp.replace(path)
        history = path.parent / "history.json"
        tmp = history.with_name(f"{history.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.history, indent=1) + "\n")
        tmp.replace(history)


def run_identity(policy_cfg: PolicyConfig, cfg: TrainConfig, train_key: str | None, val_key: str | None) -> dict:
    """A run's identity (``state.pt`` must match it to resume): everything but the step grid, so a finished run
    can be extended to more steps. ``train_key``/``val_key``: the demonstrations' ``config["key"]``."""
    finetune = policy_cfg.finetune != "none"
    run_config = {"policy": asdict(policy_cfg), "train": {k: v for k, v in asdict(cfg).items() if k != "steps"},
                  "train_demos": train_key, "val_demos": val_key}
    run_config["policy"].pop("encoders_dir")  # where the encoder is read, not what it is:
    if policy_cfg.encoder_init in PROTOCOL_ENCODERS.values():  # a protocol encoder is known by its bytes
        run_config["policy"]["encoder_sha256"] = encoder_sha256(policy_cfg.encoder_init, policy_cfg.encoders_dir)
    if not finetune:  # frozen-encoder runs keep the identity they had before fine-tuning existed
        run_config["policy"].pop("finetune")
        run_config["train"].pop("encoder_lr")
    # Options added later enter a run's identity only when used, so earlier runs still resume.
    for name in ("geometry_skip", "footprint"):
        if not getattr(policy_cfg, name):
            run_config["policy"].pop(name)
    for name in ("state_noise_m", "state_noise_rad"):
        if not getattr(cfg, name):
            run_config["train"].pop(name)
    if cfg.lr_schedule == "constant":
        run_config["train"].pop("lr_schedule")
    else:  # a decaying schedule depends on where it ends: such a run cannot be extended to more steps
        run_config["train"]["schedule_steps"] = cfg.steps[-1]
    return run_config


def training_device(device: str = "cpu") -> torch.device:
    """``"auto"``: the first CUDA GPU when torch sees one, else the CPU; ``"cpu"``/``"cuda[:N]"`` as given (a CUDA
    device torch cannot see is a :class:`PolicyError`)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise PolicyError(f"training device {device!r}: {err}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PolicyError(f"training device {device!r}: torch sees no CUDA GPU here")
    if resolved.type not in ("cpu", "cuda"):
        raise PolicyError(f"training device {device!r}: cpu, cuda[:N] or auto")
    return resolved


def train_policy(policy_cfg: PolicyConfig, train_demos: Demos, val_demos: Demos, out_dir: str | Path,
                 cfg: TrainConfig = TrainConfig(), progress: bool = True, encoding_cache: str | Path | None = None,
                 checkpoint_meta: dict[int, dict] | None = None, device: str = "cpu") -> TrainRun:
    """Train (or resume) one variant; returns its checkpoints by step and its validation history.
    ``checkpoint_meta[step]`` goes into that step's checkpoint meta (the experiment's config hash). ``device``:
    where the head (and fine-tuned encoder layers) train (:func:`training_device`); encodings are made on the CPU
    and cached as before. On the CPU a run is bit-identical whatever the machine; on a GPU it is deterministic in
    its seed only up to CUDA's kernels and dropout stream, so GPU and CPU runs of one seed differ slightly."""
    import time

    torch.set_num_threads(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    finetune = policy_cfg.finetune != "none"
    run_config = run_identity(policy_cfg, cfg, train_demos.config.get("key"), val_demos.config.get("key"))
    model = _fresh_model(policy_cfg, cfg.seed)
    cache = Path(encoding_cache) if encoding_cache else out.parent / "encodings"
    if finetune:
        train_frames = cached_trunk(model, train_demos, cache, progress)
        val_frames = cached_trunk(model, val_demos, cache, progress)
        train = to_tensors(train_demos, np.zeros((len(train_demos), 0), np.float32))  # encodings: per step
        val = to_tensors(val_demos, np.zeros((len(val_demos), 0), np.float32))
    else:
        train_frames = val_frames = None
        train = to_tensors(train_demos, cached_encoding(model, train_demos, cache, progress))
        val = to_tensors(val_demos, cached_encoding(model, val_demos, cache, progress))
    data = _TrainData(train, val, train_frames, val_frames)
    where = training_device(device)
    trainer = _Trainer(model, cfg, where)
    state_path = out / "state.pt"
    if state_path.is_file():
        state = torch.load(state_path, map_location=where, weights_only=False)
        if state["run_config"] != run_config:
            raise PolicyError(f"{out} holds a run with another config; use another folder")
        trainer.load_state(state)
        log.info("resuming %s at step %d", out, trainer.step)
    (out / "run_config.json").write_text(json.dumps(run_config, indent=2) + "\n")
    checkpoints = {s: out / f"step-{s:06d}.pt" for s in cfg.steps}
    # Steps asked for now that the run has already passed: replay it from step 0 (training is deterministic
    # per seed, and a constant learning rate does not depend on where the run ends) and keep those checkpoints.
    passed = {s: checkpoints[s] for s in cfg.steps if s <= trainer.step and not checkpoints[s].is_file()}
    if passed:
        log.info("%s: replaying from step 0 for the checkpoints at %s", out, sorted(passed))
        _Trainer(_fresh_model(policy_cfg, cfg.seed), cfg, where).run(
            data, max(passed), passed, run_config, state_path=None,
            desc=f"replay {policy_cfg.variant} s{cfg.seed}", progress=progress, checkpoint_meta=checkpoint_meta)
    started, first_step = time.perf_counter(), trainer.step
    trainer.run(data, cfg.steps[-1], checkpoints, run_config, state_path=state_path,
                desc=f"train {policy_cfg.variant} s{cfg.seed}", progress=progress, checkpoint_meta=checkpoint_meta)
    history, step = trainer.history, trainer.step
    elapsed = time.perf_counter() - started
    rate = (step - first_step) / elapsed if step > first_step and elapsed > 0 else 0.0
    return TrainRun(out, {s: p for s, p in checkpoints.items() if p.is_file()}, history, rate, str(where))
